/*
 * dns/forwarder: berth's DNS forwarder (protocol = dns).
 *
 * Clients' queries arrive on UDP listen sockets the forwarder owns.  Names the
 * hosts table knows are answered locally; every other query leaves from a
 * socket of the pool chosen at random (pool_acquire) with a fresh random ID
 * that no other outstanding query on that socket uses, optionally with
 * random 0x20 case in its name.
 *
 * The forwarder never watches pool sockets: whoever owns the pool's watch
 * (berthd) reads each datagram and offers it with dns_fwd_take_answer, then
 * dns_fwd_on_upstream_reply.
 * A reply is accepted only when it matches an outstanding query on every
 * point RFC 5452 section 9.1 lists: the upstream address and port the query
 * went to, the pool socket it left from, its ID, and its question (name
 * case-insensitive, or octet-exact with 0x20; type; class).  Anything else is
 * dropped and counted by reason.
 *
 * An upstream that has not answered after upstream_timeout_ms (a timer on the
 * loop's wheel, one per query) is given up for the next one, with a new
 * socket and ID; when every upstream has failed the client gets SERVFAIL.
 * Upstreams failing DNS_FWD_SICK_AFTER times in a row are tried last until
 * one of their answers comes back.  A timeout is a failure of the upstream
 * only when it answered nothing at all since the attempt left; one it
 * answered other queries meanwhile is counted as timeouts_alive instead
 * (it still moves the query on).  A TCP connection that cannot be had, or
 * dies twice under a query, is always a failure.
 *
 * Outstanding queries live in a table allocated once (max_outstanding
 * records with a free list, indexed by ID), so no memory is allocated per
 * query.  When it is full, a new query is counted (table_full) and its
 * client gets SERVFAIL at once.
 *
 * A query from a TCP client goes upstream over TCP instead (a TC answer
 * would be no use to it): each upstream has up to FWD_UTCP_CONNS connections
 * kept open and reused, queries pipelined on them with random IDs unique per
 * connection, replies matched by ID and question.  A connection that dies
 * has its queries retried on a new connection to the same upstream, then
 * each of those lost again alone on a connection of its own, and only a
 * query lost even alone moves to the next upstream (see fwd_retry_lost); a
 * connection that cannot be opened moves its queries on at once.  Idle
 * connections close after FWD_UTCP_IDLE_MS.
 *
 * Everything runs on one loop; the forwarder takes its time from it.
 */
#ifndef BERTH_DNS_FORWARDER_H
#define BERTH_DNS_FORWARDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "berth/portset.h"

struct loop;
struct pool;
struct dns_hosts;

#define DNS_FWD_MAX_UPSTREAMS 8u
#define DNS_FWD_MAX_LISTEN 8u
#define DNS_FWD_DEFAULT_TIMEOUT_MS 2000u
#define DNS_FWD_DEFAULT_MAX_OUTSTANDING 65536u
/* Consecutive failures (timeouts with no answer from the upstream to any
 * query meanwhile, lost TCP connections) after which it is tried last. */
#define DNS_FWD_SICK_AFTER 3u
/*
 * The EDNS payload size the forwarder promises both ways: to upstreams (the
 * most it wants to receive from them) and to clients (in the OPT of the
 * answers it relays).  1232 keeps datagrams unfragmented on any path
 * (DNS flag day 2020); larger answers come truncated and go over TCP.
 */
#define DNS_FWD_EDNS_SIZE 1232u
/* Longest query the forwarder relays (a query is a header, one question
 * and an OPT; anything longer is refused). */
#define DNS_FWD_QUERY_MAX 512u

/* One upstream: a numeric socket address with its port set. */
struct dns_fwd_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Zero fields take the defaults given. */
struct dns_fwd_config {
	const struct dns_fwd_addr *upstreams; /* borrowed for the call (copied) */
	size_t nupstream;                     /* 0..DNS_FWD_MAX_UPSTREAMS */
	uint64_t upstream_timeout_ms;         /* 0: DNS_FWD_DEFAULT_TIMEOUT_MS */
	bool use_0x20;                        /* random case, verified exactly */
	const struct portset *blocked_source_ports; /* borrowed (copied); NULL: none */
	uint32_t max_outstanding;             /* 0: DNS_FWD_DEFAULT_MAX_OUTSTANDING */
	const struct dns_hosts *hosts;        /* borrowed, must outlive the
						 forwarder; NULL: none */
};

/* Every counter the forwarder keeps, for `berthctl status` and metrics. */
struct dns_fwd_stats {
	uint64_t queries_udp;      /* queries read on UDP listen sockets */
	uint64_t queries_tcp;      /* queries read on TCP connections */
	uint64_t answers;          /* responses sent to clients, all kinds */
	uint64_t rcode[16];        /* responses sent, by RCODE (0 to 15) */
	uint64_t rcode_badvers;    /* extended RCODEs, carried by an OPT */
	uint64_t rcode_badcookie;
	uint64_t rcode_other;      /* any other RCODE above 15 */
	uint64_t local_answers;    /* answered from the hosts table */
	uint64_t forwarded;        /* queries sent upstream (first tries) */
	uint64_t upstream_answers; /* replies accepted from upstreams */
	uint64_t truncated;        /* answers cut to header+question, TC=1 */
	uint64_t mismatch_address; /* replies from a wrong address or port
				      (from a non-upstream: left unclaimed
				      for the pool's other services) */
	uint64_t mismatch_socket;  /* right ID, but on another pool socket */
	uint64_t mismatch_id;      /* no outstanding query with that ID */
	uint64_t mismatch_question;/* right ID, wrong name/type/class/case */
	uint64_t garbage;          /* unparseable datagrams (queries or replies) */
	uint64_t formerr;          /* malformed queries answered FORMERR */
	uint64_t responses_on_listen; /* QR=1 messages on a listen socket */
	uint64_t guard_drops;      /* queries from blocked source ports */
	uint64_t timeouts;         /* upstream attempts that timed out */
	uint64_t timeouts_alive;   /* of those, on an upstream that answered
				      other queries meanwhile (not counted
				      as its failures) */
	uint64_t retries;          /* attempts after the first */
	uint64_t servfails;        /* SERVFAILs berthd made: every upstream
				      failed, no upstream, or table_full */
	uint64_t table_full;       /* queries answered SERVFAIL at once:
				      the outstanding table was full */
	uint64_t pool_empty;       /* attempts with no pool socket */
	uint64_t send_errors;      /* sendto failures (either direction) */
	uint64_t refused;          /* queries over DNS_FWD_QUERY_MAX */
	uint64_t badvers;          /* EDNS version above 0 answered BADVERS
				      by berthd (also in rcode_badvers) */
	uint64_t zone_transfers;   /* AXFR and IXFR queries: NOTIMP */
	uint64_t upstream_tcp_queries; /* attempts sent upstream over TCP */
	uint64_t upstream_tcp_opened;  /* upstream TCP connections opened */
	uint64_t upstream_tcp_reused;  /* queries sent on a connection that
					  had carried one before */
	uint64_t upstream_tcp_closed;  /* upstream TCP connections closed */
	uint64_t upstream_tcp_lost;    /* closed by EOF/error with queries in
					  flight (those are retried) */
	uint64_t upstream_tcp_backlogged; /* queries that waited for a slot
					     on a full upstream connection */
	uint32_t outstanding;      /* queries in flight now */
};

struct dns_fwd;

/*
 * A forwarder on loop l with pool p (both borrowed, must outlive it; p may be
 * NULL when there are no upstreams).  cfg is borrowed for the call.  Returns
 * the forwarder (owned by the caller, dns_fwd_free) or NULL with the reason
 * in err: too many upstreams, upstreams without a pool, out of memory.
 */
struct dns_fwd *dns_fwd_new(struct loop *l, struct pool *p,
			    const struct dns_fwd_config *cfg, char *err,
			    size_t errlen);

/*
 * Drop every outstanding query (returning its pool socket with pool_done,
 * without answering), close the listen sockets and free f.  Accepts NULL.
 */
void dns_fwd_free(struct dns_fwd *f);

/*
 * Open a UDP listen socket on addr (borrowed, addrlen octets) and serve
 * queries on it.  Port 0 binds a kernel-chosen port (tests); the port bound
 * can be read with dns_fwd_udp_port.  Returns the listener's index (>= 0)
 * or -errno (-ENOSPC after DNS_FWD_MAX_LISTEN), with "ADDR: reason" in err.
 */
int dns_fwd_listen_udp(struct dns_fwd *f, const struct sockaddr *addr,
		       socklen_t addrlen, char *err, size_t errlen);

/* Deadlines and limits of TCP listeners (see include/berth/session.h). */
struct dns_fwd_tcp_limits {
	uint64_t new_connection_ms; /* until the first complete query */
	uint64_t idle_ms;           /* after the last answer */
	bool reset_on_timeout;      /* close timed-out sessions with RST */
	uint32_t max_sessions;      /* 0: the engine's default */
	uint32_t max_in_flight;     /* queries per session; 0: the engine's */
};

/*
 * Open a TCP listener on addr (borrowed) serving DNS over TCP with 2-byte
 * framing on the session engine; queries pipelined on one connection are
 * answered as their answers come.  lim (borrowed, may be NULL: no deadlines)
 * gives the deadlines.  Returns the listener's index or -errno, with the
 * reason naming the address in err.
 */
int dns_fwd_listen_tcp(struct dns_fwd *f, const struct sockaddr *addr,
		       socklen_t addrlen, const struct dns_fwd_tcp_limits *lim,
		       char *err, size_t errlen);

/* The local port (host order) of TCP listener idx, or 0. */
uint16_t dns_fwd_tcp_port(const struct dns_fwd *f, int idx);

/*
 * The idx-th TCP listener (borrowed, owned by f), or NULL past the last one:
 * for listing its sessions.
 */
struct sess_listener *dns_fwd_tcp_listener(const struct dns_fwd *f, size_t idx);

/* The local port (host order) of UDP listener idx, or 0. */
uint16_t dns_fwd_udp_port(const struct dns_fwd *f, int idx);

/*
 * Offer a datagram that arrived on pool socket fd (local port local_port,
 * host order) from from (fromlen octets).  msg (len octets) is borrowed for
 * the call.  Returns true when the datagram is the forwarder's: it came from
 * one of its upstreams or carries an ID it has outstanding on that port;
 * it is then either accepted and relayed to the client, or dropped and
 * counted.  Returns false, counting nothing, for datagrams that are no
 * concern of the forwarder, so the next service can look.
 */
bool dns_fwd_on_upstream_reply(struct dns_fwd *f, int fd, uint16_t local_port,
			       const struct sockaddr *from, socklen_t fromlen,
			       const uint8_t *msg, size_t len);

/*
 * Like dns_fwd_on_upstream_reply, but take the datagram only when it is the
 * answer to one of f's queries, passing every check; return false, counting
 * nothing, for anything else.  Several services share the pool's sockets,
 * and may share an upstream: berthd offers each datagram this way to every
 * service first, and only then as dns_fwd_on_upstream_reply, so that one
 * service never drops as a mismatch the answer another one waits for.
 */
bool dns_fwd_take_answer(struct dns_fwd *f, int fd, uint16_t local_port,
			 const struct sockaddr *from, socklen_t fromlen,
			 const uint8_t *msg, size_t len);

/*
 * Handle one query datagram msg (len octets, borrowed) received on UDP
 * listener idx from from: what the listen socket's read handler does for
 * each datagram; exported so that tests and other front ends can feed
 * queries directly.
 */
void dns_fwd_udp_query(struct dns_fwd *f, int idx, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len);

/* Copy the counters into *out (caller-owned). */
void dns_fwd_stats(const struct dns_fwd *f, struct dns_fwd_stats *out);

/* Consecutive failures of upstream i (0 when it answered last). */
unsigned dns_fwd_upstream_failures(const struct dns_fwd *f, size_t i);

/* Write the counters as "  key: value" lines to out. */
void dns_fwd_status(const struct dns_fwd *f, FILE *out);

#endif
