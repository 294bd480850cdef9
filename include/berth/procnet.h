/*
 * procnet: which local sockets hold which ports, read from /proc the way
 * `ss -tuanp` does it, without netlink.
 *
 * Sockets come from <proc_root>/net/{tcp,tcp6,udp,udp6}; their owners come
 * from one scan of the <proc_root>/PID/fd/ symlinks ("socket:[INODE]") and
 * <proc_root>/PID/comm.  Everything is plain file parsing, so tests point
 * proc_root at a fixture tree.
 *
 * What "holds" means.  A socket holds its local port when it is in the
 * kernel's bind table for that port: every UDP socket listed (bound or
 * connected) and every TCP socket listed except TIME_WAIT ones.  TIME_WAIT
 * entries have no owning socket (inode 0), vanish on their own within a
 * minute and do not stop a bind() with SO_REUSEADDR, which every berth
 * listener sets; counting them would make ports look taken that a service can
 * in fact use.  A TCP socket that is bound but neither listening nor
 * connected is not listed in /proc/net/tcp at all, so it is invisible here.
 *
 * /proc/net shows the network namespace of the reading process.
 * Ports are host byte order throughout.
 */
#ifndef BERTH_PROCNET_H
#define BERTH_PROCNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "berth/portset.h"

/* Bits of the proto_mask argument of procnet_list(). */
enum {
	PROCNET_TCP = 1u << 0,
	PROCNET_UDP = 1u << 1,
};

/* TCP states as the kernel prints them in the "st" column (include/net/tcp_states.h). */
enum procnet_tcp_state {
	PROCNET_ESTABLISHED = 0x01,
	PROCNET_SYN_SENT = 0x02,
	PROCNET_SYN_RECV = 0x03,
	PROCNET_FIN_WAIT1 = 0x04,
	PROCNET_FIN_WAIT2 = 0x05,
	PROCNET_TIME_WAIT = 0x06,
	PROCNET_CLOSE = 0x07,
	PROCNET_CLOSE_WAIT = 0x08,
	PROCNET_LAST_ACK = 0x09,
	PROCNET_LISTEN = 0x0A,
	PROCNET_CLOSING = 0x0B,
	PROCNET_NEW_SYN_RECV = 0x0C,
};

/* Longest program name the kernel keeps (TASK_COMM_LEN), NUL included. */
#define PROCNET_COMM_LEN 16

/* Room for any local address text, IPv6 included (INET6_ADDRSTRLEN). */
#define PROCNET_ADDR_LEN 46

/* One local socket. */
struct procnet_sock {
	int proto;                   /* IPPROTO_TCP or IPPROTO_UDP */
	int family;                  /* AF_INET or AF_INET6 */
	char addr[PROCNET_ADDR_LEN]; /* local address, e.g. "127.0.0.1", "::" */
	uint16_t port;               /* local port, host order */
	uint8_t state;               /* the "st" column: enum procnet_tcp_state;
					for UDP 0x07 means bound, 0x01 connected */
	uint64_t inode;              /* socket inode; 0 for TIME_WAIT entries */
	pid_t pid;                   /* owner, or -1 when unknown */
	char comm[PROCNET_COMM_LEN]; /* owner's program name, "" when unknown */
};

/* What the parsers had to pass over; every field only ever grows. */
struct procnet_stats {
	size_t malformed;     /* lines of net/{tcp,udp}{,6} that did not parse */
	size_t missing_files; /* net files that do not exist (no IPv6, say) */
	size_t hidden_procs;  /* PID/fd directories that could not be read */
	size_t unowned;       /* sockets with an inode that procnet_owners()
				 left with pid -1 */
};

/*
 * List the local sockets of the protocols in proto_mask (PROCNET_TCP |
 * PROCNET_UDP), IPv4 and IPv6, in file order, with pid -1 and comm "" (fill
 * them with procnet_owners()).  Every listed socket is returned, TIME_WAIT
 * included; use procnet_holds() to keep the ones that hold their port.
 *
 * proc_root: "/proc" or a fixture tree (borrowed).  *out receives an array
 * of *n sockets that the caller frees with free(); it is NULL when *n is 0.
 * stats: may be NULL; malformed lines and missing files are added to it.
 *
 * A missing file is skipped (IPv6 may be disabled).  Returns 0, -ENOENT when
 * none of the requested files exists, -EINVAL for an empty proto_mask, or
 * another -errno when a file cannot be read or memory runs out (then *out is
 * NULL and *n is 0).
 */
int procnet_list(const char *proc_root, unsigned proto_mask,
		 struct procnet_sock **out, size_t *n,
		 struct procnet_stats *stats);

/*
 * Fill pid and comm of socks[0..n-1] with one scan of proc_root's process
 * directories, however many sockets are asked about.  When several processes
 * share a socket (after fork), the lowest pid wins so the answer does not
 * depend on directory order.  Sockets whose owner is not found get pid -1
 * and, unless their inode is 0 (TIME_WAIT: no owner exists), count in
 * stats->unowned; processes whose fd directory cannot be read
 * (other users' processes when not root) are skipped and count in
 * stats->hidden_procs.  A process whose comm cannot be read gets comm "?".
 *
 * proc_root: borrowed.  socks: borrowed, updated in place.  stats: may be
 * NULL.  Returns 0, or -errno when proc_root itself cannot be listed or
 * memory runs out (socks are then left as they were).
 */
int procnet_owners(const char *proc_root, struct procnet_sock *socks, size_t n,
		   struct procnet_stats *stats);

/*
 * True when s holds its local port against a bind(): every UDP socket, and
 * every TCP socket except TIME_WAIT (see the top of this header for why).
 */
bool procnet_holds(const struct procnet_sock *s);

/*
 * Clear out, then add every port that some local socket of protocol proto
 * (IPPROTO_TCP or IPPROTO_UDP), IPv4 or IPv6, holds in the sense of
 * procnet_holds().  Allocates nothing.
 *
 * proc_root: borrowed.  out: caller's set.  stats: may be NULL.  Returns 0,
 * -EINVAL for another proto, -ENOENT when neither file of the protocol
 * exists, or -errno when one cannot be read (out then holds what was read).
 */
int procnet_ports_in_use(const char *proc_root, int proto, struct portset *out,
			 struct procnet_stats *stats);

/*
 * The state of s for people: "bound" or "connected" for UDP; "listen",
 * "established", "time-wait", "close-wait", ... for TCP; "unknown" for a
 * state number the kernel does not define.  Returns a static string.
 */
const char *procnet_state_name(const struct procnet_sock *s);

/* "tcp" or "udp" for s->proto.  Returns a static string. */
const char *procnet_proto_name(const struct procnet_sock *s);

/*
 * qsort() order for struct procnet_sock: tcp before udp, IPv4 before IPv6,
 * then by address and pid, so listings do not depend on the order of /proc.
 */
int procnet_sock_cmp(const void *a, const void *b);

#endif
