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
	PASS_REASON_MAX,
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define AF_INET 2
