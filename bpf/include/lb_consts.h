/* Every constant of the L4 balancer in one place. Keep in step with pkg/l4. */
#pragma once

#define MAX_SERVICES 1024
#define MAX_BACKENDS 65536
#define MAX_CONNTRACK 262144
#define MAX_IFADDRS 256
/* Maglev table size per service: prime, M > 100 * N for N <= 163 backends. */
#define MAGLEV_M 16381

/* conntrack entry directions */
#define CT_FORWARD 0 /* client -> VIP: rewrite the destination to the backend */
#define CT_REVERSE 1 /* backend -> client: rewrite the source back to the VIP */

/* service flags */
#define SVC_F_SNAT 1 /* rewrite the source to the node: replies come back on any topology */

/* SNAT source ports: the IANA dynamic range. A collision with one of the
 * node's own connections to the same backend is avoided by checking
 * conntrack, not the socket table. */
#define SNAT_PORT_MIN 49152
#define SNAT_PORT_RANGE 16384
#define SNAT_PORT_TRIES 16

/* conntrack flags */
#define CT_F_CLOSING 1 /* a FIN or RST was seen: the agent expires it sooner */

/* TCP header flags (byte 13 of the header) */
#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04
#define TCP_F_ACK 0x10

/* Why a packet went to the stack untouched (or was dropped): the index of
 * ea_pass_stats. */
enum pass_reason {
	PASS_NOT_IPV4 = 0,
	PASS_TRUNCATED,
	PASS_MALFORMED,
	PASS_FRAGMENT,
	PASS_NOT_TCP_UDP,
	PASS_NO_SERVICE,
	DROP_NO_BACKEND,
	DROP_REWRITE_FAILED,
	DROP_NO_SNAT_ADDR,
	DROP_SNAT_PORTS_EXHAUSTED,
	PASS_TTL_EXCEEDED,
	/* mid-stream TCP to a service, no conntrack entry, owned by a socket
	 * of the node (a proxy connection from before the service went L4) */
	PASS_LOCAL_SOCKET,
	PASS_REASON_MAX,
};

/* ea_pass_stats' size, with room for reasons to come. */
#define PASS_STATS_SLOTS 32

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define AF_INET 2
