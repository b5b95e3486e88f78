package l4

// The BPF object and its Go bindings are generated from bpf/ and committed,
// so `go build` needs no clang; `make generate` rebuilds them and a test
// checks they are current.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type svc_key -type svc_value -type backend -type ct_key -type ct_value -type svc_stats -type backend_stats -type pass_reason lb ../../bpf/lb.c -- -I../../bpf/include -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type steer_key steer ../../bpf/steer.c -- -I../../bpf/include -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel sock ../../bpf/sock.c -- -I../../bpf/include -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type deny_key -type deny_stats deny ../../bpf/deny.c -- -I../../bpf/include -I/usr/include/x86_64-linux-gnu
