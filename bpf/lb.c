//go:build ignore

/* edge-agent L4 load balancer: a TC program that reads as the packet's path.
 *
 * ingress, client -> VIP:port   : conntrack, or service lookup and Maglev
 *                                 pick, DNAT to the backend
 * ingress, backend -> client    : reverse NAT of the source back to the VIP
 * everything else               : to the stack untouched, counted by reason
 *
 * A service switches between L4 (this program) and L7 (a proxy socket on the
 * node) without breaking established flows: a flow with a conntrack entry
 * keeps its backend after its service is gone, and a mid-stream TCP packet
 * without one that a local socket owns (the proxy's connection from before
 * the service became L4) goes to the stack.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <stddef.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "csum.h"

char __license[] SEC("license") = "GPL";

/* Keeps enum pass_reason in BTF, so bpf2go generates its Go constants. */
const enum pass_reason *unused_pass_reason __attribute__((unused));

static __always_inline int count_pass(__u32 reason, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&ea_pass_stats, &reason);
	if (n)
		*n += 1;
	return verdict;
}

/* flow_hash mixes the 5-tuple (murmur3's finaliser): every node computes the
 * same value, so a flow picks the same backend wherever it lands. */
static __always_inline __u32 flow_hash(const struct ct_key *k)
{
	__u32 h = k->saddr * 0x9E3779B1u;
	h ^= k->daddr + 0x7F4A7C15u + (h << 6) + (h >> 2);
	h ^= (((__u32)k->sport << 16) | k->dport) * 0x85EBCA77u;
	h ^= k->proto;
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	h *= 0xC2B2AE35u;
	h ^= h >> 16;
	return h;
}

static __always_inline void count_svc(__u32 id, __u32 len, int new_flow)
{
	struct svc_stats *s = bpf_map_lookup_elem(&ea_svc_stats, &id);
	if (s) {
		s->packets++;
		s->bytes += len;
		s->new_flows += new_flow;
	}
}

static __always_inline void count_backend(__u32 id, __u32 len, int new_flow)
{
	struct backend_stats *s = bpf_map_lookup_elem(&ea_backend_stats, &id);
	if (s) {
		s->packets++;
		s->bytes += len;
		s->new_flows += new_flow;
	} else if (id) {
		struct backend_stats init = { .packets = 1, .bytes = len, .new_flows = new_flow };
		bpf_map_update_elem(&ea_backend_stats, &id, &init, BPF_NOEXIST);
	}
}

/* pick_backend looks the flow up in the service's Maglev table. */
static __always_inline int pick_backend(__u32 svc_id, const struct ct_key *k, __u32 *id, struct backend *be)
{
	void *table = bpf_map_lookup_elem(&ea_maglev, &svc_id);
	if (!table)
		return -1;
	__u32 slot = flow_hash(k) % MAGLEV_M;
	__u32 *bid = bpf_map_lookup_elem(table, &slot);
	if (!bid || *bid == 0)
		return -1;
	__u32 b = *bid;
	struct backend *found = bpf_map_lookup_elem(&ea_backends, &b);
	if (!found)
		return -1;
	*id = b;
	*be = *found;
	return 0;
}

/* forward sends the rewritten packet straight out of the interface the FIB
 * picks (bpf_redirect_neigh resolves the next hop's MAC), skipping the
 * stack. The stack's forwarding would decrement the TTL: so does this. When
 * the FIB has no answer the stack routes the packet. */
static __always_inline int forward(struct __sk_buff *skb, __u32 src, __u32 dst, __u8 ttl, __u8 proto)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.l4_protocol = proto,
		.tot_len = bpf_ntohs(0), /* no MTU check */
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = src,
		.ipv4_dst = dst,
	};
	int rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_OK;
	if (ttl <= 1)
		return count_pass(PASS_TTL_EXCEEDED, TC_ACT_OK); /* the stack sends the ICMP */
	__u16 old = bpf_htons(((__u16)ttl << 8) | proto);
	__u16 new = bpf_htons(((__u16)(ttl - 1) << 8) | proto);
	__u8 nttl = ttl - 1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, sizeof(new)) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &nttl, 1, 0) < 0)
		return count_pass(DROP_REWRITE_FAILED, TC_ACT_SHOT);
	return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
}

/* snat_source finds the node's address on the interface that leads to the
 * backend: the source the backend will reply to. */
static __always_inline int snat_source(struct __sk_buff *skb, __u32 src, __u32 dst, __u8 proto, __u32 *out)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET, .l4_protocol = proto,
		.ifindex = skb->ingress_ifindex, .ipv4_src = src, .ipv4_dst = dst,
	};
	int rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	__u32 ifindex = fib.ifindex;
	__u32 *addr = bpf_map_lookup_elem(&ea_ifaddrs, &ifindex);
	if (!addr)
		return -1;
	*out = *addr;
	return 0;
}

/* snat_port picks a source port whose reply tuple is free in conntrack. */
static __always_inline int snat_port(struct ct_key *rkey, __u32 hash)
{
	for (int i = 0; i < SNAT_PORT_TRIES; i++) {
		__u16 p = SNAT_PORT_MIN + (hash + i * 7919) % SNAT_PORT_RANGE;
		rkey->dport = bpf_htons(p);
		if (!bpf_map_lookup_elem(&ea_conntrack, rkey))
			return 0;
	}
	return -1;
}

/* reply_nat rewrites a backend's reply: source back to the VIP, and the
 * destination back to the client after SNAT. */
static __always_inline int reply_nat(struct __sk_buff *skb, const struct iphdr *ip, __u32 l4,
				     const __u16 *ports, const struct ct_value *ct)
{
	if (rewrite_port(skb, l4, l4, ip->protocol, ports[0], ct->nat_port) < 0 ||
	    rewrite_addr(skb, ETH_HLEN + offsetof(struct iphdr, saddr), l4, ip->protocol, ip->saddr, ct->nat_ip) < 0)
		return -1;
	if (ct->peer_ip) {
		if (rewrite_port(skb, l4 + 2, l4, ip->protocol, ports[1], ct->peer_port) < 0 ||
		    rewrite_addr(skb, ETH_HLEN + offsetof(struct iphdr, daddr), l4, ip->protocol, ip->daddr, ct->peer_ip) < 0)
			return -1;
	}
	return 0;
}

/* service_exists says whether (VIP, port, protocol) is an L4 service. */
static __always_inline int service_exists(const struct ct_key *k)
{
	struct svc_key sk = { .vip = k->daddr, .port = k->dport, .proto = k->proto };
	return bpf_map_lookup_elem(&ea_services, &sk) != NULL;
}

/* local_flow says whether a TCP socket of this network namespace owns the
 * flow: an established (or handshaking, or TIME_WAIT) connection, not just a
 * listener, whose 4-tuple is the packet's. */
static __always_inline int local_flow(struct __sk_buff *skb, const struct ct_key *k)
{
	struct bpf_sock_tuple t = {};
	t.ipv4.saddr = k->saddr;
	t.ipv4.daddr = k->daddr;
	t.ipv4.sport = k->sport;
	t.ipv4.dport = k->dport;
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	int owned = sk->state != BPF_TCP_LISTEN;
	bpf_sk_release(sk);
	return owned;
}

/* parse_l4 reads the IPv4 header and the ports, counting what it skips.
 * It returns -1 when the packet is not for the balancer (it then goes to
 * the stack untouched). */
static __always_inline int parse_l4(struct __sk_buff *skb, struct iphdr *ip, __u32 *l4, __u16 *ports)
{
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		count_pass(PASS_NOT_IPV4, 0);
		return -1;
	}
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(*ip)) < 0) {
		count_pass(PASS_TRUNCATED, 0);
		return -1;
	}
	if (ip->version != 4 || ip->ihl < 5) {
		count_pass(PASS_MALFORMED, 0);
		return -1;
	}
	/* Only the first fragment has ports, and later ones cannot follow it to
	 * the same backend: leave fragments to the stack. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		count_pass(PASS_FRAGMENT, 0);
		return -1;
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) {
		count_pass(PASS_NOT_TCP_UDP, 0);
		return -1;
	}
	/* IP options are skipped by length: the rewrite touches only the
	 * addresses and ports. */
	*l4 = ETH_HLEN + ip->ihl * 4;
	if (bpf_skb_load_bytes(skb, *l4, ports, 2 * sizeof(__u16)) < 0) {
		count_pass(PASS_TRUNCATED, 0);
		return -1;
	}
	return 0;
}

SEC("tc")
int lb_ingress(struct __sk_buff *skb)
{
	struct iphdr ip;
	__u32 l4;
	__u16 ports[2];
	if (parse_l4(skb, &ip, &l4, ports) < 0)
		return TC_ACT_OK;
	__u8 tcp_flags = 0;
	if (ip.protocol == IPPROTO_TCP && bpf_skb_load_bytes(skb, l4 + 13, &tcp_flags, 1) < 0)
		return count_pass(PASS_TRUNCATED, TC_ACT_OK);
	/* FIN or RST: the flow is ending. */
	__u8 closing = (tcp_flags & (TCP_F_FIN | TCP_F_RST)) ? CT_F_CLOSING : 0;
	/* SYN without ACK: a new connection (always 0 for UDP). */
	int syn = (tcp_flags & (TCP_F_SYN | TCP_F_ACK)) == TCP_F_SYN;

	struct ct_key key = {
		.saddr = ip.saddr, .daddr = ip.daddr,
		.sport = ports[0], .dport = ports[1], .proto = ip.protocol,
	};
	__u64 now = bpf_ktime_get_ns();
	struct ct_value ct = {};
	struct ct_value *found = bpf_map_lookup_elem(&ea_conntrack, &key);
	if (found) {
		found->last_seen = now;
		found->flags |= closing;
		ct = *found;
	}

	/* A reply from a backend: the VIP becomes its source again and, after
	 * SNAT, the client its destination. */
	if (found && ct.dir == CT_REVERSE) {
		int rc = reply_nat(skb, &ip, l4, ports, &ct);
		if (rc < 0)
			return count_pass(DROP_REWRITE_FAILED, TC_ACT_SHOT);
		return forward(skb, ct.nat_ip, ct.peer_ip ? ct.peer_ip : ip.daddr, ip.ttl, ip.protocol);
	}

	struct backend be = {};
	__u32 svc_id = 0;
	__u32 backend_id = 0;
	__u32 snat_ip = 0;
	__u16 snat_p = 0;
	int new_flow = 0;
	/* The reply's conntrack key: backend -> client, or backend -> node. */
	struct ct_key rkey = { .dport = ports[0], .proto = ip.protocol };
	if (found && ct.dir == CT_FORWARD) {
		/* An established flow keeps its backend, even one that has left
		 * the set since, and even when its service has left the balancer
		 * (switched to L7): its connection finishes where it started. So
		 * the service is not looked up on this path. */
		be.ip = ct.nat_ip;
		be.port = ct.nat_port;
		svc_id = ct.svc_id;
		backend_id = ct.backend_id;
		snat_ip = ct.peer_ip;
		snat_p = ct.peer_port;
		rkey.saddr = be.ip;
		rkey.sport = be.port;
		rkey.daddr = snat_ip ? snat_ip : ip.saddr;
		rkey.dport = snat_ip ? snat_p : ports[0];
		/* Except a new connection that reuses the 5-tuple of a flow whose
		 * service is gone: it belongs to the new mode. Its stale entries
		 * go (or the rest of its handshake would follow them to the old
		 * backend) and the stack gets it. */
		if (syn && !service_exists(&key)) {
			bpf_map_delete_elem(&ea_conntrack, &key);
			bpf_map_delete_elem(&ea_conntrack, &rkey);
			return count_pass(PASS_NO_SERVICE, TC_ACT_OK);
		}
	} else {
		struct svc_key sk = { .vip = ip.daddr, .port = ports[1], .proto = ip.protocol };
		struct svc_value *svcp = bpf_map_lookup_elem(&ea_services, &sk);
		if (!svcp)
			return count_pass(PASS_NO_SERVICE, TC_ACT_OK);
		svc_id = svcp->id;
		__u32 svc_flags = svcp->flags;
		/* Mid-stream TCP without a conntrack entry: either a flow whose
		 * entry was evicted (it rehashes to the same backend below), or a
		 * connection the node's proxy accepted before the service became
		 * L4. The proxy's connection stays with the proxy. */
		if (ip.protocol == IPPROTO_TCP && !syn && local_flow(skb, &key))
			return count_pass(PASS_LOCAL_SOCKET, TC_ACT_OK);
		if (pick_backend(svc_id, &key, &backend_id, &be) < 0) {
			count_svc(svc_id, skb->len, 0);
			return count_pass(DROP_NO_BACKEND, TC_ACT_SHOT);
		}
		new_flow = 1;
		rkey.saddr = be.ip;
		rkey.sport = be.port;
		rkey.daddr = ip.saddr;
		if (svc_flags & SVC_F_SNAT) {
			if (snat_source(skb, ip.saddr, be.ip, ip.protocol, &snat_ip) < 0)
				return count_pass(DROP_NO_SNAT_ADDR, TC_ACT_SHOT);
			rkey.daddr = snat_ip;
			if (snat_port(&rkey, flow_hash(&key)) < 0)
				return count_pass(DROP_SNAT_PORTS_EXHAUSTED, TC_ACT_SHOT);
			snat_p = rkey.dport;
		}
		struct ct_value fwd = {
			.nat_ip = be.ip, .nat_port = be.port, .dir = CT_FORWARD, .flags = closing,
			.svc_id = svc_id, .backend_id = backend_id, .last_seen = now,
			.peer_ip = snat_ip, .peer_port = snat_p,
		};
		bpf_map_update_elem(&ea_conntrack, &key, &fwd, BPF_ANY);
	}

	/* The reverse entry may have been evicted (LRU) while the forward one
	 * lives on: recreate it, or replies would leak the backend's address. */
	struct ct_value *rev = bpf_map_lookup_elem(&ea_conntrack, &rkey);
	if (rev) {
		rev->flags |= closing;
	} else {
		struct ct_value r = {
			.nat_ip = ip.daddr, .nat_port = ports[1], .dir = CT_REVERSE, .flags = closing,
			.svc_id = svc_id, .backend_id = backend_id, .last_seen = now,
		};
		if (snat_ip) {
			r.peer_ip = ip.saddr;
			r.peer_port = ports[0];
		}
		bpf_map_update_elem(&ea_conntrack, &rkey, &r, BPF_ANY);
	}

	count_svc(svc_id, skb->len, new_flow);
	count_backend(backend_id, skb->len, new_flow);

	if (rewrite_port(skb, l4 + 2, l4, ip.protocol, ports[1], be.port) < 0 ||
	    rewrite_addr(skb, ETH_HLEN + offsetof(struct iphdr, daddr), l4, ip.protocol, ip.daddr, be.ip) < 0)
		return count_pass(DROP_REWRITE_FAILED, TC_ACT_SHOT);
	__u32 src = ip.saddr;
	if (snat_ip) {
		if (rewrite_port(skb, l4, l4, ip.protocol, ports[0], snat_p) < 0 ||
		    rewrite_addr(skb, ETH_HLEN + offsetof(struct iphdr, saddr), l4, ip.protocol, ip.saddr, snat_ip) < 0)
			return count_pass(DROP_REWRITE_FAILED, TC_ACT_SHOT);
		src = snat_ip;
	}
	return forward(skb, src, be.ip, ip.ttl, ip.protocol);
}

/* lb_egress handles replies that the stack routed out of an interface
 * (source-preserving mode, when the backend-facing interfaces carry no
 * program): the same reverse NAT, then the packet goes on its way. */
SEC("tc")
int lb_egress(struct __sk_buff *skb)
{
	struct iphdr ip;
	__u32 l4;
	__u16 ports[2];
	if (parse_l4(skb, &ip, &l4, ports) < 0)
		return TC_ACT_OK;
	struct ct_key key = {
		.saddr = ip.saddr, .daddr = ip.daddr,
		.sport = ports[0], .dport = ports[1], .proto = ip.protocol,
	};
	struct ct_value *found = bpf_map_lookup_elem(&ea_conntrack, &key);
	if (!found)
		return TC_ACT_OK;
	struct ct_value ct = *found;
	if (ct.dir != CT_REVERSE)
		return TC_ACT_OK;
	found->last_seen = bpf_ktime_get_ns();
	if (reply_nat(skb, &ip, l4, ports, &ct) < 0)
		return count_pass(DROP_REWRITE_FAILED, TC_ACT_SHOT);
	return TC_ACT_OK;
}
