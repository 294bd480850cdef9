/*
 * kerberos: berth's Kerberos front end.  It relays KDC requests (AS-REQ,
 * TGS-REQ) from clients to upstream KDCs and the replies back.
 *
 * UDP: each request datagram goes out through the socket pool.  A Kerberos
 * message carries nothing a relay can use to match a reply (the nonce is
 * inside the encrypted part), so a reply is matched by the pool socket it
 * arrives on and the exact upstream address and port it comes from.  The
 * relay therefore keeps at most one outstanding query per (pool socket,
 * upstream): when the randomly drawn socket already waits for that upstream
 * it draws again, up to FE_KRB_ACQUIRE_TRIES times; when every draw is busy
 * (or the pool has no socket at all) that upstream counts as failed for the
 * request, which moves on to the next upstream at once.
 *
 * Late replies: when a UDP exchange ends without its reply (the upstream
 * timed out, or the query was dropped), its (pool socket, upstream) pair
 * stays reserved for upstream_timeout_ms more: the relay keeps the pool
 * socket and sends no other query to that upstream from it, so a reply
 * that comes late cannot be taken for another client's.  A datagram on a
 * reserved pair is claimed, dropped and counted in late_replies, and ends
 * the reservation.  (Without memory for a reservation the pair is free at
 * once.)  Any other datagram from a configured upstream with no query
 * waiting for it on that socket is claimed, dropped and counted as
 * unmatched; datagrams from any other address are left to other services.
 *
 * If an upstream answers a UDP request with KRB-ERROR KRB_ERR_RESPONSE_TOO_BIG
 * (52), the relay asks the same upstream again over TCP and gives the client
 * that answer in one datagram when it fits in max_udp_reply bytes, else it
 * relays the RESPONSE_TOO_BIG error so the client retries over TCP itself.
 *
 * TCP: each complete request (RFC 4120 7.2.2 framing) is relayed over a
 * fresh TCP connection to the upstream, and the framed reply is written back
 * with sess_send().  Requests pipelined on one session are answered in order,
 * one upstream exchange at a time.
 *
 * Failover: an upstream that does not answer within upstream_timeout_ms (on
 * the loop's wheel), refuses the connection or sends garbage is given up and
 * the next one is tried, in configured order.  When all have failed the
 * client gets a KRB-ERROR KDC_ERR_SVC_UNAVAILABLE (29) carrying the realm and
 * sname of its request (an empty realm and name when they cannot be read),
 * and the session's idle clock runs.
 *
 * Requests that do not start with the AS-REQ or TGS-REQ application tag are
 * never relayed: a datagram is dropped, a TCP session closed, both counted.
 *
 * Single-threaded, on one struct loop.
 */
#ifndef BERTH_FRONTEND_KERBEROS_H
#define BERTH_FRONTEND_KERBEROS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "berth/loop.h"
#include "berth/session.h"
#include "berth/sockpool.h"

/* Kerberos error codes the relay reads or writes (RFC 4120 7.5.9). */
#define FE_KRB_ERR_SVC_UNAVAILABLE 29
#define FE_KRB_ERR_RESPONSE_TOO_BIG 52
#define FE_KRB_ERR_FIELD_TOOLONG 61

/* Message types (the APPLICATION tag numbers of RFC 4120 5.10). */
#define FE_KRB_AS_REQ 10
#define FE_KRB_AS_REP 11
#define FE_KRB_TGS_REQ 12
#define FE_KRB_TGS_REP 13
#define FE_KRB_ERROR 30

#define FE_KRB_MAX_UPSTREAMS 16u
#define FE_KRB_ACQUIRE_TRIES 8u           /* pool draws per request and upstream */
#define FE_KRB_DEFAULT_TIMEOUT_MS 2000u
#define FE_KRB_DEFAULT_MAX_MSG 65536u     /* largest request or reply body */
#define FE_KRB_DEFAULT_MAX_UDP_REPLY 65507u /* largest datagram sent to a client */
/* After a UDP request gives an upstream up, its (pool socket, upstream)
 * pair stays reserved this long at least (upstream_timeout when longer), so
 * a slow KDC's late reply reaches no other client. */
#define FE_KRB_LATE_MIN_MS 10000u
#define FE_KRB_MAX_QUEUED 8u              /* requests waiting on one TCP session,
					     behind the one in flight */

/* A wall clock in microseconds since the epoch, for the error's stime. */
typedef uint64_t fe_krb_clock_fn(void *arg);

/* One upstream KDC address (AF_INET or AF_INET6, port set). */
struct fe_krb_upstream {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Zero-initialised fields take the defaults named. */
struct fe_krb_config {
	const char *name;                 /* service name in logs; borrowed */
	const struct fe_krb_upstream *upstreams; /* copied; 1..FE_KRB_MAX_UPSTREAMS */
	size_t nupstreams;
	uint64_t upstream_timeout_ms;     /* 0: FE_KRB_DEFAULT_TIMEOUT_MS */
	size_t max_msg;                   /* 0: FE_KRB_DEFAULT_MAX_MSG */
	size_t max_udp_reply;             /* 0: FE_KRB_DEFAULT_MAX_UDP_REPLY */
	fe_krb_clock_fn *wall_clock;      /* NULL: CLOCK_REALTIME */
	void *clock_arg;
};

/* Counters for `berthctl status`. */
struct fe_krb_stats {
	uint64_t requests_udp;
	uint64_t requests_tcp;
	uint64_t replies;            /* upstream answers relayed to clients */
	uint64_t upstream_timeouts;
	uint64_t upstream_failures;  /* refused, reset, garbage, no pool socket */
	uint64_t failovers;          /* moves to the next upstream */
	uint64_t too_big_retries;    /* UDP requests retried over TCP */
	uint64_t too_big_relayed;    /* TCP answer too long: error relayed */
	uint64_t errors_sent;        /* KRB-ERRORs berth made: SVC_UNAVAILABLE,
					and FIELD_TOOLONG to a bad TCP length */
	uint64_t unmatched;          /* upstream datagrams nobody waited for,
					including replies of the wrong type for
					the request waiting (an AS-REP to a
					TGS-REQ) */
	uint64_t late_replies;       /* replies after their query gave up, dropped */
	uint64_t malformed;          /* requests not relayed, replies dropped */
	uint64_t pool_busy;          /* no free (socket, upstream) pair */
	uint64_t dropped;            /* could not answer at all */
	uint64_t outstanding;        /* queries in flight now */
};

struct fe_krb;

/*
 * A relay on loop, sending UDP queries through pool (may be NULL: UDP
 * requests then fail over to the end and get the error reply).  cfg is
 * copied; loop and pool are borrowed and must outlive the relay.  Returns
 * NULL on bad config (no upstream, too many) or no memory.  The caller owns
 * the relay (fe_krb_free).
 */
struct fe_krb *fe_krb_new(struct loop *loop, struct pool *pool,
			  const struct fe_krb_config *cfg);

/*
 * The longest one UDP exchange with an upstream keeps its pool socket, for
 * a relay whose upstream timeout is upstream_timeout_ms (0: the default):
 * the wait for the reply, then the late-reply reservation.  A pool that
 * retires a socket (rotation, release) must keep it open this long, or
 * the reservation ends early and a late reply could reach a new socket
 * drawn on the same port.
 */
uint64_t fe_krb_pool_hold_ms(uint64_t upstream_timeout_ms);

/*
 * Drop every query in flight (pool handles returned, connections closed, no
 * replies sent) and every late reservation (its pool handle returned), and
 * free k.  Free the TCP listeners first: their sessions' on_close runs into
 * k.  Accepts NULL.
 */
void fe_krb_free(struct fe_krb *k);

/*
 * Fill *out with the session service that feeds k: the len32 framer, k's
 * max_msg and callbacks that call fe_krb_tcp_request / fe_krb_sess_closed /
 * fe_krb_udp_request with k as arg.  name is borrowed (the listener's copy
 * of *out points at it).
 */
void fe_krb_service(struct fe_krb *k, const char *name, struct sess_service *out);

/*
 * A request datagram (msg, len bytes, borrowed for the call) from peer
 * (copied) on UDP listener l (borrowed; must outlive the query or k).
 */
void fe_krb_udp_request(struct fe_krb *k, struct sess_listener *l,
			const struct sess_udp_peer *peer, const uint8_t *msg,
			size_t len);

/* A complete framed request (4-byte prefix included) on TCP session s. */
void fe_krb_tcp_request(struct fe_krb *k, struct sess *s, const uint8_t *msg,
			size_t len);

/* Session s is closing: forget its queries. */
void fe_krb_sess_closed(struct fe_krb *k, struct sess *s);

/*
 * A datagram on pool socket fd from from.  Returns true when k claims it: the
 * answer to k's query on fd from exactly that upstream, or any other
 * datagram from one of k's upstreams (dropped and counted in late_replies
 * or unmatched).  msg is borrowed.
 */
bool fe_krb_pool_reply(struct fe_krb *k, int fd, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len);

/*
 * Like fe_krb_pool_reply, but only when a request of k waits on pool socket
 * fd for a reply from exactly from (no other Kerberos service may share a
 * KDC, see krb_check, so that pair is k's alone); false, counting nothing,
 * for any other datagram.
 */
bool fe_krb_take_reply(struct fe_krb *k, int fd, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len);

/* Copy k's counters into *out. */
void fe_krb_get_stats(const struct fe_krb *k, struct fe_krb_stats *out);

/*
 * True when a query of k waits on pool socket fd for a reply from upstream
 * (exact address and port).  For tests and diagnostics.
 */
bool fe_krb_waiting(const struct fe_krb *k, int fd, const struct sockaddr *upstream);

/* --- message helpers (krb_msg.c) --- */

/*
 * The APPLICATION tag number of the Kerberos message in buf (len bytes), or
 * -1 when buf does not start with a constructed APPLICATION tag whose length
 * fits in len.
 */
int fe_krb_msg_type(const uint8_t *buf, size_t len);

/*
 * When buf (len bytes) is a KRB-ERROR, store its error-code in *code and
 * return true.  False for anything else, truncated or malformed.
 */
bool fe_krb_error_code(const uint8_t *buf, size_t len, int32_t *code);

/*
 * True when buf (len bytes, all of it) is an AS-REQ or TGS-REQ a KDC can
 * answer: pvno 5, a msg-type that agrees with its tag, and a req-body with
 * every field that is not OPTIONAL.  The relay sends nothing else
 * upstream: a KDC answers a well-formed request (an error at worst),
 * which frees the request's (pool socket, KDC) pair at once, where
 * garbage it ignores would hold that pair for the timeout and the
 * late-reply guard after it.
 */
bool fe_krb_req_valid(const uint8_t *buf, size_t len);

/*
 * The realm and sname of a KDC request (AS-REQ or TGS-REQ), as the DER of
 * the GeneralString and of the PrincipalName, pointing into the request.
 */
struct fe_krb_req_names {
	const uint8_t *realm;  /* GeneralString TLV, or NULL */
	size_t realm_len;
	const uint8_t *sname;  /* PrincipalName TLV, or NULL */
	size_t sname_len;
};

/*
 * Find realm and sname in the req-body of the KDC request buf (len bytes;
 * *out points into it).  Returns true when buf is an AS-REQ or TGS-REQ whose
 * body could be walked (either name may still be NULL when absent or
 * malformed), false otherwise.
 */
bool fe_krb_req_names(const uint8_t *buf, size_t len,
		      struct fe_krb_req_names *out);

/*
 * Encode a KRB-ERROR with error_code, stime/susec from now_us (microseconds
 * since the epoch) and the realm and sname of names (NULL, or a NULL field:
 * an empty realm, resp. an empty principal name) into out (cap bytes), with
 * an e-text saying why berth sent it (a length field too long, or no
 * upstream answering: every other code).
 * Returns the length written, or 0 when it does not fit.
 */
size_t fe_krb_error_encode(int32_t error_code, uint64_t now_us,
			   const struct fe_krb_req_names *names, uint8_t *out,
			   size_t cap);

#endif
