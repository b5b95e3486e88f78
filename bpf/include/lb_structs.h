/* Map keys and values shared with Go (bpf2go generates the Go types). */
#pragma once
#include <linux/types.h>

/* A service: VIP (network order), port (network order), IP protocol. */
struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct svc_value {
	__u32 id;    /* index into ea_maglev and ea_svc_stats */
	__u32 flags; /* SVC_F_* */
};

struct backend {
	__u32 ip;   /* network order */
	__u16 port; /* network order */
	__u16 pad;
};

/* The 5-tuple as the packet carries it. */
struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct_value {
	__u32 nat_ip;     /* forward: backend address; reverse: the VIP */
	__u16 nat_port;   /* forward: backend port; reverse: the service port */
	__u8 dir;         /* CT_FORWARD or CT_REVERSE */
	__u8 flags;       /* CT_F_* */
	__u32 svc_id;
	__u32 backend_id; /* 0 when the flow's backend is gone from the set */
	__u64 last_seen;  /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	/* forward: the SNAT source (node address, port); reverse: the client to
	 * restore as destination. 0 in source-preserving mode. */
	__u32 peer_ip;
	__u16 peer_port;
	__u16 pad;
};

struct svc_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

struct backend_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};
