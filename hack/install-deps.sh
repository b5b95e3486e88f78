#!/usr/bin/env bash
# Installs the Debian packages tests and benchmarks need, if missing. Safe to
# run repeatedly; CI runs it on a fresh machine.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
# eBPF: clang/llvm build bpf/ (the generate test compares with the committed
# object), bpftool reads pinned maps, iperf3 for the L4 benchmark.
command -v clang >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
command -v bpftool >/dev/null || need+=(bpftool)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
command -v iperf3 >/dev/null || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install as root: apt-get install -y ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# h2spec (HTTP/2 conformance; pkg/l7/proxy's TestH2Spec), from the Go module proxy.
if ! command -v h2spec >/dev/null && [ ! -x "$(go env GOPATH)/bin/h2spec" ]; then
  GOFLAGS=-mod=mod go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
fi
# Google's grpc-web client runtime on Node.js (pkg/l7/proxy's
# TestGRPCWebWithGoogleClient), pinned by hack/grpcweb-node/package-lock.json.
GRPCWEB_NODE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/grpcweb-node"
if [ ! -d "$GRPCWEB_NODE/node_modules/grpc-web" ] || [ ! -d "$GRPCWEB_NODE/node_modules/xhr2" ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" != 0 ]; then echo "install as root: apt-get install -y nodejs npm" >&2; exit 1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  (cd "$GRPCWEB_NODE" && npm ci --no-audit --no-fund --silent)
fi
