/* Address and port rewrites with incremental checksum updates. The helpers
 * work on linear and non-linear skbs alike and handle UDP's "no checksum"
 * zero (BPF_F_MARK_MANGLED_0). */
#pragma once
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/if_ether.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

static __always_inline __u32 l4_csum_off(__u32 l4, __u8 proto)
{
	return proto == IPPROTO_TCP ? l4 + 16 : l4 + 6;
}

static __always_inline __u64 l4_flags(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* rewrite_addr replaces the 4-byte address at addr_off (saddr or daddr)
 * and fixes the IP and the L4 (pseudo-header) checksums. */
static __always_inline int rewrite_addr(struct __sk_buff *skb, __u32 addr_off, __u32 l4, __u8 proto,
					__u32 old_addr, __u32 new_addr)
{
	if (bpf_l4_csum_replace(skb, l4_csum_off(l4, proto), old_addr, new_addr,
				BPF_F_PSEUDO_HDR | sizeof(new_addr) | l4_flags(proto)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0);
}

/* rewrite_port replaces the 2-byte port at port_off and fixes the L4 checksum. */
static __always_inline int rewrite_port(struct __sk_buff *skb, __u32 port_off, __u32 l4, __u8 proto,
					__u16 old_port, __u16 new_port)
{
	if (old_port == new_port)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(l4, proto), old_port, new_port,
				sizeof(new_port) | l4_flags(proto)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0);
}
