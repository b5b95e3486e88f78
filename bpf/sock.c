//go:build ignore

/* edge-agent socket-level load balancing for clients on the node: a
 * connect() (or an unconnected UDP sendmsg) to an L4 service VIP goes
 * straight to a backend, chosen by the same Maglev tables as lb.c, with no
 * per-packet NAT; getpeername and recvmsg still show the VIP. The maps are
 * lb.c's, shared through their pins. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"

char __license[] SEC("license") = "GPL";

/* socket cookie -> the VIP it asked for, for getpeername and recvmsg. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CONNTRACK);
	__type(key, __u64);
	__type(value, struct svc_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_sock_orig SEC(".maps");

static __always_inline __u32 mix64(__u64 v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdULL;
	v ^= v >> 33;
	return (__u32)v;
}

/* to_backend rewrites the destination of a socket operation aimed at a
 * service to one of its backends. */
static __always_inline int to_backend(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	struct svc_key sk = { .vip = ctx->user_ip4, .port = (__u16)ctx->user_port, .proto = ctx->protocol };
	struct svc_value *svc = bpf_map_lookup_elem(&ea_services, &sk);
	if (!svc)
		return 1;
	__u32 id = svc->id;
	void *table = bpf_map_lookup_elem(&ea_maglev, &id);
	if (!table)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 slot = mix64(cookie) % MAGLEV_M;
	__u32 *bid = bpf_map_lookup_elem(table, &slot);
	if (!bid || *bid == 0)
		return 1;
	__u32 b = *bid;
	struct backend *be = bpf_map_lookup_elem(&ea_backends, &b);
	if (!be)
		return 1;
	ctx->user_ip4 = be->ip;
	ctx->user_port = be->port;
	bpf_map_update_elem(&ea_sock_orig, &cookie, &sk, BPF_ANY);
	return 1;
}

/* to_vip shows the VIP where the socket would otherwise reveal the backend. */
static __always_inline int to_vip(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct svc_key *orig = bpf_map_lookup_elem(&ea_sock_orig, &cookie);
	if (orig) {
		ctx->user_ip4 = orig->vip;
		ctx->user_port = orig->port;
	}
	return 1;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx) { return to_backend(ctx); }

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx) { return to_backend(ctx); }

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx) { return to_vip(ctx); }

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx) { return to_vip(ctx); }
