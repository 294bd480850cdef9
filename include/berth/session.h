/*
 * session: berth's session engine: TCP and UDP listeners on the event loop,
 * message framing, and per-session deadlines kept on the loop's timing wheel.
 *
 * Every TCP session has one wheel timer and is in one of these states:
 *
 *   new        accepted, no complete request yet: the new-connection deadline
 *              (accept + new_connection_ms) runs;
 *   idle       every delivered request has been answered: the idle deadline
 *              (last response queued + idle_ms) runs;
 *   in flight  requests delivered minus responses sent > 0: no deadline runs;
 *   closing    sess_close() was called (or a deadline fired): the session is
 *              flushing its output and will be freed by the loop.
 *
 * Partial bytes never move a deadline: only a complete request ends the new
 * state or the idle state, so a trickle of bytes cannot keep a session open.
 * A deadline fires when the wheel reaches it, never earlier: there is no
 * periodic sweep anywhere.
 *
 * The in-flight contract: while a request is in flight the engine enforces no
 * deadline.  The service owns its upstream timeout and must end every request
 * it was handed, by sending a reply (an error reply after an upstream
 * timeout) with sess_send() or by calling sess_close().  When the last
 * in-flight request is answered the idle clock starts from that moment.
 *
 * Closing: sess_close() records the reason (counted in the listener's stats)
 * and defers the rest through loop_defer_close(), so a session is never freed
 * inside one of its own callbacks.  The service's on_close(reason) then runs
 * once, outside the session's callbacks, so it can cancel upstream work; the
 * session pointer is invalid after on_close returns.  Queued output is then
 * flushed (bounded by SESS_FLUSH_MS), the write side is shut down and the fd
 * closed (a FIN).  When the peer sent more than the session read, closing
 * at once would make the kernel answer with an RST (RFC 1122 4.2.2.13), and
 * so would input arriving after the close; the RST discards output the
 * kernel still holds for the peer.  So while such output is queued (not yet
 * sent or acknowledged), the session first lingers: it shuts its write
 * side and reads and discards input until the peer's EOF, at most
 * SESS_LINGER_MS.  Not after a write error or a flush that hit its bound
 * (that output is lost anyway), nor beyond max_sessions lingering sessions
 * per listener, since they are outside the cap.  With reset_on_timeout, a
 * new-connection or idle timeout instead discards the output and closes
 * with SO_LINGER {1, 0} (an RST).
 *
 * Backpressure: a session reads and delivers requests only while fewer than
 * max_in_flight of its own are in flight and less than SESS_OUT_PAUSE of its
 * output waits unread by the peer.  Past either bound it stops reading (the
 * peer's further requests wait in its input buffer and the kernel's, under
 * TCP flow control) and resumes, after the callback that answered, once both
 * are below their bounds.  So one pipelining peer can neither fill the
 * service's table of requests nor grow its output without bound; each pause
 * counts in read_pauses.  Held requests are still requests: a peer's EOF
 * closes the session only after they are delivered and answered.
 *
 * Limits: max_sessions is per listener (a service listening on two addresses
 * has two caps).  At the cap a new connection evicts the oldest session still
 * in the new state (an O(1) FIFO), logging the peer; when no session is new,
 * the connection is refused (accepted and closed at once).  On EMFILE/ENFILE
 * the listener frees a spare fd, accepts and closes the pending connection,
 * re-opens the spare and stops watching for SESS_EMFILE_PAUSE_MS, so it never
 * spins on a connection it cannot accept; on ENOBUFS/ENOMEM it only pauses.
 *
 * Single-threaded, on one struct loop.  Free every listener before its loop.
 */
#ifndef BERTH_SESSION_H
#define BERTH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "berth/guard.h"
#include "berth/loop.h"

/* What a framer found at the start of a buffer. */
enum sess_frame {
	SESS_FRAME_NEED_MORE, /* no complete message yet */
	SESS_FRAME_COMPLETE,  /* *msg_len bytes (prefix included) are one message */
	SESS_FRAME_MALFORMED, /* the bytes cannot start a valid message */
	SESS_FRAME_TOO_BIG,   /* a valid header announcing more than max_msg */
};

/*
 * A framer: look at len bytes of buf (len may be 0) and say whether they
 * start with a complete message.  max_msg bounds the message body (the bytes
 * after the length prefix or BER header).  On SESS_FRAME_COMPLETE, *msg_len
 * is the length of the whole message including its prefix, at most
 * max_msg + SESS_FRAME_MAX_PREFIX.  Pure: no state, no allocation.
 */
typedef enum sess_frame sess_frame_fn(const uint8_t *buf, size_t len,
				      size_t max_msg, size_t *msg_len);

/* The longest prefix a shipped framer uses (BER: tag, 0x84, 4 octets). */
#define SESS_FRAME_MAX_PREFIX 6u

/*
 * DNS over TCP (RFC 1035 4.2.2): a 2-byte big-endian length, then the
 * message.  A length of 0 is malformed.
 */
enum sess_frame sess_frame_len16(const uint8_t *buf, size_t len,
				 size_t max_msg, size_t *msg_len);

/*
 * Kerberos over TCP (RFC 4120 7.2.2): a 4-byte big-endian length, then the
 * message.  The high bit of the length is reserved; RFC 4120 has the KDC
 * answer KRB_ERR_FIELD_TOOLONG, but the engine just reports it malformed
 * (the session is closed and counted).  A length of 0 is malformed.
 */
enum sess_frame sess_frame_len32(const uint8_t *buf, size_t len,
				 size_t max_msg, size_t *msg_len);

/*
 * LDAP (BER): a SEQUENCE (tag 0x30) with a definite length in short form or
 * long form of 1 to 4 octets.  Another tag, the indefinite form (0x80) or a
 * length of more than 4 octets is malformed.
 */
enum sess_frame sess_frame_ber(const uint8_t *buf, size_t len, size_t max_msg,
			       size_t *msg_len);

/* Why a session was closed; every close counts one reason. */
enum sess_close_reason {
	SESS_CLOSE_NEW_TIMEOUT,  /* no complete request before the deadline */
	SESS_CLOSE_IDLE_TIMEOUT, /* no next request before the deadline */
	SESS_CLOSE_PEER_CLOSED,  /* the peer closed (EOF) */
	SESS_CLOSE_MALFORMED,    /* the framer rejected the input */
	SESS_CLOSE_TOO_BIG,      /* a message longer than max_msg */
	SESS_CLOSE_EVICTED,      /* made room for a new connection at the cap */
	SESS_CLOSE_GUARD,        /* the peer's source port is blocked */
	SESS_CLOSE_IO_ERROR,     /* read/write failed, or output overflowed */
	SESS_CLOSE_SERVICE,      /* the service asked (sess_close) */
	SESS_CLOSE_SHUTDOWN,     /* the listener was freed */
	SESS_CLOSE_REASONS       /* the number of reasons */
};

/* A session's state, as introspection reports it. */
enum sess_state {
	SESS_STATE_NEW,
	SESS_STATE_IDLE,
	SESS_STATE_IN_FLIGHT,
	SESS_STATE_CLOSING,
};

struct sess;          /* one TCP session, owned by its listener */
struct sess_listener; /* a TCP or UDP listener, owned by its creator */

/*
 * The address a datagram was sent to, on a UDP socket bound to a wildcard
 * address (0.0.0.0 or ::), where it is one of several: a reply must leave
 * from it, since clients drop answers from any other (RFC 2181 4.1 for
 * DNS; MIT Kerberos clients connect their UDP sockets).  set is false on a
 * socket bound to one address, whose replies leave from it anyway.
 */
struct sess_local {
	bool set;
	union {
		struct in_pktinfo in;   /* ipi_spec_dst: the local address */
		struct in6_pktinfo in6; /* ipi6_addr: where it was sent */
	} u;
};

/* A UDP peer: its address, and the local one its datagram was sent to. */
struct sess_udp_peer {
	struct sockaddr_storage addr;
	socklen_t len;
	struct sess_local local;
};

/* Room for the control message of one sess_local. */
union sess_cmsg {
	struct cmsghdr h;
	uint8_t buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
};

/*
 * On the UDP socket fd, bound to addr: when addr is a wildcard address,
 * ask the kernel for each datagram's destination (IP_PKTINFO,
 * IPV6_RECVPKTINFO).  Returns 1 when it did, 0 for a socket bound to one
 * address, or -errno.
 */
int sess_local_enable(int fd, const struct sockaddr *addr);

/* The destination of a datagram received with msghdr h on a socket of
 * family, into *out (out->set false when h carries none). */
void sess_local_take(const struct msghdr *h, int family, struct sess_local *out);

/*
 * Point h's control at ctl, holding the message that sends from local
 * (nothing when local->set is false; the interface is left to routing, as
 * for any reply).
 */
void sess_local_put(const struct sess_local *local, int family,
		    union sess_cmsg *ctl, struct msghdr *h);

/*
 * A service: how a listener frames input and whom it hands requests to.
 * The listener copies the struct; name and arg stay the caller's and must
 * outlive the listener.
 */
struct sess_service {
	const char *name;      /* e.g. "dns"; shown by introspection */
	sess_frame_fn *frame;  /* TCP only */
	size_t max_msg;        /* largest message body accepted (TCP and UDP) */
	/*
	 * A complete request: msg (len bytes, prefix included) is valid only
	 * during the call.  The service answers with sess_send() now or later,
	 * or calls sess_close().
	 */
	void (*on_request)(struct sess *s, const uint8_t *msg, size_t len,
			   void *arg);
	/* The session is closing for why; s is invalid after this returns. */
	void (*on_close)(struct sess *s, enum sess_close_reason why, void *arg);
	/* The framer refused the input (why: SESS_CLOSE_TOO_BIG or
	 * SESS_CLOSE_MALFORMED): a last answer may go out with sess_send()
	 * before the session closes (and flushes it).  NULL: close at once. */
	void (*on_frame_error)(struct sess *s, enum sess_close_reason why,
			       void *arg);
	/* A datagram from peer (valid only during the call: copy it to reply
	 * later); UDP only. */
	void (*on_datagram)(struct sess_listener *l,
			    const struct sess_udp_peer *peer, const uint8_t *msg,
			    size_t len, void *arg);
	/* One log line (no newline); NULL: written to stderr. */
	void (*log)(const char *line, void *arg);
	void *arg;             /* passed to every callback */
};

/* Per-listener limits.  A zero timeout disables that deadline. */
struct sess_limits {
	uint64_t new_connection_ms; /* accept until the first complete request */
	uint64_t idle_ms;           /* last response until the next request */
	bool reset_on_timeout;      /* timeouts close with RST instead of FIN */
	uint32_t max_sessions;      /* 0: SESS_DEFAULT_MAX_SESSIONS */
	uint32_t accept_per_iter;   /* 0: SESS_DEFAULT_ACCEPT_PER_ITER */
	size_t max_output;          /* queued output bound; 0: SESS_DEFAULT_MAX_OUTPUT */
	uint32_t max_in_flight;     /* per session; 0: SESS_DEFAULT_MAX_IN_FLIGHT */
};

#define SESS_DEFAULT_MAX_SESSIONS 10000u
#define SESS_DEFAULT_ACCEPT_PER_ITER 64u
#define SESS_DEFAULT_MAX_OUTPUT (1u << 20)
#define SESS_DEFAULT_MAX_IN_FLIGHT 64u
#define SESS_OUT_PAUSE (64u << 10) /* queued output that pauses reading */
#define SESS_EMFILE_PAUSE_MS 100u
#define SESS_FLUSH_MS 5000u   /* longest a closing session flushes output */
#define SESS_LINGER_MS 2000u  /* longest it then discards unread input */
#define SESS_UDP_BATCH 16u    /* datagrams per recvmmsg */

/* Per-listener counters. */
struct sess_stats {
	uint64_t accepted;     /* connections that became sessions */
	uint64_t active;       /* sessions open now (not closing) */
	uint64_t closes[SESS_CLOSE_REASONS];
	uint64_t evictions;
	uint64_t refusals;     /* accepted and closed at the cap */
	uint64_t emfile_pauses;
	uint64_t nomem_pauses; /* accept failed with ENOBUFS or ENOMEM */
	uint64_t read_pauses;  /* a session stopped reading: backpressure */
	uint64_t guard_drops;  /* connections and datagrams */
	uint64_t datagrams_in;
	uint64_t datagrams_out;
	uint64_t datagrams_dropped; /* guard, truncated or not handled */
};

/* One session as `berthctl sessions` shows it. */
struct sess_info {
	char peer[64];         /* "192.0.2.1:5353" or "[2001:db8::1]:5353" */
	const char *service;   /* the service's name (the listener's copy) */
	enum sess_state state;
	uint64_t age_ms;       /* since accept */
	bool has_deadline;     /* false while in flight or closing */
	uint64_t deadline_in_ms; /* ms until the deadline, when has_deadline */
};

/*
 * A TCP listener on addr (caller-owned, AF_INET or AF_INET6, addrlen bytes)
 * with SO_REUSEADDR, watched on loop.  service and limits are copied; guard
 * (may be NULL: nothing blocked) stays the caller's and must outlive the
 * listener.  On failure returns NULL and writes a reason naming the address
 * into err (errlen > 0).  The caller owns the listener (sess_listener_free).
 */
struct sess_listener *sess_listen_tcp(struct loop *loop,
				      const struct sockaddr *addr,
				      socklen_t addrlen,
				      const struct sess_service *service,
				      const struct sess_limits *limits,
				      struct guard *guard, char *err,
				      size_t errlen);

/*
 * sess_listen_tcp() on an already bound and listening socket fd; the
 * listener takes fd over (closes it when freed, and on failure).
 */
struct sess_listener *sess_listen_tcp_fd(struct loop *loop, int fd,
					 const struct sess_service *service,
					 const struct sess_limits *limits,
					 struct guard *guard, char *err,
					 size_t errlen);

/*
 * A UDP listener on addr: datagrams are read in batches with recvmmsg,
 * checked against guard and handed to service->on_datagram.  Ownership as
 * for sess_listen_tcp(); limits may be NULL.
 */
struct sess_listener *sess_listen_udp(struct loop *loop,
				      const struct sockaddr *addr,
				      socklen_t addrlen,
				      const struct sess_service *service,
				      const struct sess_limits *limits,
				      struct guard *guard, char *err,
				      size_t errlen);

/* sess_listen_udp() on an already bound UDP socket fd, taken over. */
struct sess_listener *sess_listen_udp_fd(struct loop *loop, int fd,
					 const struct sess_service *service,
					 const struct sess_limits *limits,
					 struct guard *guard, char *err,
					 size_t errlen);

/*
 * Close every session of l with SESS_CLOSE_SHUTDOWN (their on_close runs
 * now), close the socket and free l.  Must not be called from a callback of
 * one of l's sessions.  Accepts NULL.
 */
void sess_listener_free(struct sess_listener *l);

/* The listening socket (for tests and for getsockname). */
int sess_listener_fd(const struct sess_listener *l);

/* Copy l's counters into *out. */
void sess_listener_stats(const struct sess_listener *l, struct sess_stats *out);

/*
 * Queue one complete framed response (data, len bytes, copied) and write what
 * the socket takes now.  When a request is in flight it counts as that
 * request's response; when none is left in flight the idle deadline starts.
 * Returns 0, -EPIPE when s is closing, or -ENOBUFS when the output bound
 * would be exceeded (s is then closed with SESS_CLOSE_IO_ERROR).
 */
int sess_send(struct sess *s, const uint8_t *data, size_t len);

/*
 * Close s for why (SESS_CLOSE_SERVICE from a service).  Safe from any
 * callback, including s's own; a second call is ignored.
 */
void sess_close(struct sess *s, enum sess_close_reason why);

/* Attach / read the service's pointer for s (not owned by the engine). */
void sess_set_user(struct sess *s, void *user);
void *sess_user(const struct sess *s);

/* s's peer address (owned by s) and its length in *len (may be NULL). */
const struct sockaddr *sess_peer(const struct sess *s, socklen_t *len);

/* s's socket (for tests and diagnostics; -1 once closed).  Owned by s. */
int sess_fd(const struct sess *s);

/* Requests delivered to the service and not yet answered. */
uint64_t sess_in_flight(const struct sess *s);

/* The listener s belongs to. */
struct sess_listener *sess_listener_of(const struct sess *s);

/*
 * Iterate l's sessions (closing ones included), oldest first:
 * for (s = sess_first(l); s; s = sess_next(s)).  Do not close sessions
 * while iterating.
 */
struct sess *sess_first(struct sess_listener *l);
struct sess *sess_next(const struct sess *s);

/* Describe s at loop_now() into *out. */
void sess_get_info(const struct sess *s, struct sess_info *out);

/*
 * Send one datagram (data, len bytes) from UDP listener l to peer (as
 * on_datagram gave it, or a copy), from the address its datagram was sent
 * to.  Nonblocking.  Returns 0 or -errno (-EAGAIN when the socket buffer is
 * full: the reply is dropped, as UDP allows).
 */
int sess_udp_send(struct sess_listener *l, const struct sess_udp_peer *peer,
		  const uint8_t *data, size_t len);

/* Static names: "idle_timeout", "in-flight", ... */
const char *sess_close_reason_name(enum sess_close_reason why);
const char *sess_state_name(enum sess_state st);

/*
 * Write addr as "a.b.c.d:port" or "[v6]:port" into buf (len bytes, NUL
 * terminated).  Returns buf.
 */
char *sess_addr_text(const struct sockaddr *addr, char *buf, size_t len);

#endif
