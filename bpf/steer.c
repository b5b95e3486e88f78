//go:build ignore

/* edge-agent L7 steering: an sk_lookup program on the node's network
 * namespace. A new connection (or UDP datagram) to an (IP, port) the
 * config marks as L7 goes to the proxy's one listening socket, held in a
 * pinned SOCKMAP, whatever its destination: no iptables, no TPROXY, no
 * socket per service port. The proxy reads the original destination with
 * getsockname. Everything else is left to the normal socket lookup. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lb_consts.h"

char __license[] SEC("license") = "GPL";

#define MAX_STEER 16384

/* What to steer: an address (network order; 0 = any address) and a port
 * (host order, as bpf_sk_lookup carries it) for a protocol. */
struct steer_key {
	__u32 ip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_STEER);
	__type(key, struct steer_key);
	__type(value, __u32); /* reserved: listener selection */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_steer SEC(".maps");

/* Slot 0: the proxy's current listening socket. A restarted agent puts its
 * own socket here; new connections go to it at once. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_proxy_sock SEC(".maps");

/* Counters: [0] steered, [1] marked but no proxy socket, [2] assign failed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_steer_stats SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&ea_steer_stats, &i);
	if (n)
		*n += 1;
}

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	if (ctx->family != AF_INET)
		return SK_PASS;
	struct steer_key k = { .ip = ctx->local_ip4, .port = ctx->local_port, .proto = ctx->protocol };
	if (!bpf_map_lookup_elem(&ea_steer, &k)) {
		k.ip = 0; /* a port steered on every address */
		if (!bpf_map_lookup_elem(&ea_steer, &k))
			return SK_PASS;
	}
	__u32 zero = 0;
	struct bpf_sock *sk = bpf_map_lookup_elem(&ea_proxy_sock, &zero);
	if (!sk) {
		count(1);
		return SK_PASS;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	count(err ? 2 : 0);
	return SK_PASS;
}
