//go:build ignore

/* edge-agent node-wide deny list: an XDP program on the node's interfaces
 * that drops IPv4 packets whose source is in a denied CIDR before the
 * kernel stack (and the TC balancer) sees them.
 *
 * eth -> optional single VLAN tag -> IPv4: source lookup in an LPM trie
 *   hit   : count packets and bytes for the rule, XDP_DROP
 *   miss  : XDP_PASS
 * IPv6, ARP, anything not IPv4, and frames too short to parse: XDP_PASS
 * (the stack drops malformed frames itself).
 *
 * The trie's value is the rule's index, its position in the config list;
 * the agent keeps the trie in step with the config by diffing, and reads the
 * per-rule counters from ea_deny_stats. Both maps are pinned by name. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

/* Keep in step with MaxDenyRules in pkg/l4/deny.go. */
#define MAX_DENY_RULES 16384

/* An LPM trie key: prefixlen bits of addr (network order) are compared. */
struct deny_key {
	__u32 prefixlen;
	__u32 addr;
};

/* Per rule, per CPU. */
struct deny_stats {
	__u64 packets;
	__u64 bytes;
};

/* 802.1Q / 802.1ad tag after the MAC addresses (not in the uapi headers). */
struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_DENY_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct deny_key);
	__type(value, __u32); /* rule index */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_deny_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_DENY_RULES);
	__type(key, __u32); /* rule index */
	__type(value, struct deny_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ea_deny_stats SEC(".maps");

SEC("xdp")
int ea_deny(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_tag *tag = l3;
		if ((void *)(tag + 1) > data_end)
			return XDP_PASS;
		proto = tag->encapsulated_proto;
		l3 = tag + 1;
	}
	if (proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return XDP_PASS;

	struct deny_key key = { .prefixlen = 32, .addr = ip->saddr };
	__u32 *rule = bpf_map_lookup_elem(&ea_deny_cidrs, &key);
	if (!rule)
		return XDP_PASS;
	/* Copy to the stack before use (clang 14 may hoist the address of a
	 * map value's field above its NULL check). */
	__u32 idx = *rule;
	struct deny_stats *st = bpf_map_lookup_elem(&ea_deny_stats, &idx);
	if (st) {
		st->packets += 1;
		st->bytes += data_end - data;
	}
	return XDP_DROP;
}
