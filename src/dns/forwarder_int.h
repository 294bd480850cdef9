/*
 * dns/forwarder internals shared by forwarder.c (the outstanding-query
 * table, upstream attempts, reply matching) and forwarder_udp.c (listen
 * sockets and client answers).  Not part of the module's interface.
 */
#ifndef BERTH_DNS_FORWARDER_INT_H
#define BERTH_DNS_FORWARDER_INT_H

#include <netinet/in.h>

#include "berth/guard.h"
#include "berth/loop.h"
#include "berth/session.h"
#include "berth/sockpool.h"
#include "dns/forwarder.h"
#include "dns/wire.h"

#define FWD_NIL UINT32_MAX
#define FWD_RX_BATCH 32u     /* datagrams per recvmmsg on a listen socket */
#define FWD_RX_BUF 4096u     /* longer datagrams are refused as oversize */
#define FWD_RX_ROUNDS 8u     /* recvmmsg batches per readiness event */
#define FWD_ID_TRIES 64u     /* random IDs drawn before giving up a socket */
#define FWD_TX_BATCH 32u     /* UDP answers queued for one sendmmsg */
#define FWD_TX_BUF 4096u     /* longer answers are sent at once, unqueued */

/* Upstream TCP (forwarder_upstream_tcp.c). */
#define FWD_UTCP_CONNS 2u          /* pipelining connections per upstream */
#define FWD_UTCP_SOLO_CONNS 4u     /* one-query connections per upstream */
#define FWD_UTCP_SLOTS (FWD_UTCP_CONNS + FWD_UTCP_SOLO_CONNS)
#define FWD_UTCP_SOLO_AFTER 2u     /* losses after which a query goes alone */
#define FWD_UTCP_MAX_INFLIGHT 64u  /* queries pipelined on one connection */
#define FWD_UTCP_IDLE_MS 10000u    /* an unused connection closes after this */
#define FWD_UTCP_WBUF (FWD_UTCP_MAX_INFLIGHT * (DNS_FWD_QUERY_MAX + 2u))
#define FWD_UTCP_RBUF (DNS_MSG_MAX + 2u)
#define FWD_UTCP_NONE UINT8_MAX    /* fwd_query.utcp: not on a connection */
_Static_assert(DNS_FWD_MAX_UPSTREAMS * FWD_UTCP_SLOTS < FWD_UTCP_NONE,
	       "fwd_query.utcp holds the index of any upstream connection");

/* A client address of either family, without the size of sockaddr_storage. */
union fwd_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/*
 * A UDP client: where its answers go, and from where.  A listener bound to
 * a wildcard address learns each query's destination address and answers
 * from it, as the client expects (RFC 2181 4.1); see struct sess_local.
 */
struct fwd_client {
	union fwd_sockaddr addr;
	socklen_t len;
	uint8_t listen_idx;
	struct sess_local local;
};

/*
 * One outstanding query.  Records live in one array allocated at start; a
 * free record is on the free list, a record waiting for an answer is on the
 * chain of its outbound ID (next links either list).
 */
struct fwd_query {
	struct wheel_timer timer;   /* the current attempt's deadline */
	uint64_t sent_at;           /* loop time the current attempt left */
	struct dns_fwd *f;          /* owner, for the timer callback */
	uint32_t next;              /* free list or ID chain link */
	bool in_use;
	bool hashed;                /* on an ID chain, holding a pool socket */
	struct sess *sess;          /* TCP client's session, or NULL for UDP */
	uint8_t attempt;            /* index into order[] */
	uint8_t norder;
	uint8_t order[DNS_FWD_MAX_UPSTREAMS]; /* upstreams to try, in turn */
	struct pool_handle h;       /* the pool socket of the current attempt */
	uint8_t utcp;               /* upstream TCP connection, or FWD_UTCP_NONE */
	uint8_t uslot;              /* its slot on that connection */
	bool sent;                  /* an attempt has left (forwarded counted) */
	bool backlogged;            /* waiting for room on an upstream's TCP */
	uint32_t wprev, wnext;      /* its place in that upstream's backlog */
	uint8_t losses;             /* upstream TCP connections lost under it,
				       on this upstream (fwd_retry_lost) */
	uint16_t client_id;         /* the ID the client chose */
	uint16_t client_limit;      /* largest UDP answer the client takes */
	struct fwd_client client;   /* a UDP client (sess NULL) */
	struct dns_msg qmsg;        /* parse of query[], kept across rewrites */
	uint16_t qlen;
	uint8_t query[DNS_FWD_QUERY_MAX];   /* as sent: our ID, 0x20 case */
	uint8_t client_name[DNS_NAME_MAX];  /* the question name as the client
					       wrote it (0x20 changes query[]) */
};

struct fwd_upstream {
	union fwd_sockaddr addr;
	socklen_t len;
	unsigned failures;          /* consecutive failures (see on_timeout) */
	bool answered;              /* last_answer is set */
	uint64_t last_answer;       /* loop time of its last accepted answer */
	/* Queries for TCP while every connection to it is full, oldest first;
	 * they leave as slots free (fwd_utcp_drain), their timer running.
	 * The solo list waits for a solo connection in the same way. */
	uint32_t wait_head, wait_tail;
	uint32_t solo_head, solo_tail;
};

/*
 * One upstream TCP connection.  The buffers are allocated when the slot is
 * first opened and kept for its reconnections, so queries cost no memory.
 */
struct fwd_utcp {
	struct loop_watch w;
	struct wheel_timer idle;    /* FWD_UTCP_IDLE_MS after the last answer */
	struct dns_fwd *f;
	int fd;                     /* -1 when closed */
	uint8_t up;                 /* index of its upstream */
	bool connecting;            /* nonblocking connect not finished */
	bool used;                  /* has carried a query since it opened */
	uint32_t nflight;
	uint32_t slot[FWD_UTCP_MAX_INFLIGHT]; /* records in flight, or FWD_NIL */
	uint8_t *wbuf;              /* framed queries not yet written */
	size_t wlen;
	uint8_t *rbuf;              /* reply octets not yet a whole frame */
	size_t rlen;
};

struct fwd_listen {
	struct loop_watch w;
	struct dns_fwd *f;
	int fd;
	uint16_t port;
	bool wildcard;              /* bound to 0.0.0.0 or ::: PKTINFO on */
};

/*
 * UDP answers queued for the end of the loop iteration, sent with one
 * sendmmsg per run of answers from the same listener.
 */
struct fwd_txq {
	unsigned n;
	uint8_t idx[FWD_TX_BATCH];          /* listener of each answer */
	uint16_t rcode[FWD_TX_BATCH];       /* its RCODE, counted once sent */
	union fwd_sockaddr to[FWD_TX_BATCH];
	union sess_cmsg ctl[FWD_TX_BATCH];  /* source address, when chosen */
	struct iovec iov[FWD_TX_BATCH];
	struct mmsghdr mm[FWD_TX_BATCH];
	uint8_t buf[FWD_TX_BATCH][FWD_TX_BUF];
};

struct dns_fwd {
	struct loop *loop;
	struct pool *pool;
	const struct dns_hosts *hosts;
	struct guard *guard;
	uint64_t timeout_ms;
	bool use_0x20;
	struct fwd_upstream up[DNS_FWD_MAX_UPSTREAMS];
	size_t nup;
	struct fwd_listen listen[DNS_FWD_MAX_LISTEN];
	size_t nlisten;
	struct sess_listener *tcp[DNS_FWD_MAX_LISTEN];
	size_t ntcp;

	struct fwd_query *q;        /* cap records */
	uint32_t cap;
	uint32_t free_head;         /* recycled records */
	uint32_t fresh;             /* records [fresh, cap) never used yet */
	uint32_t *id_head;          /* 65536 chain heads, by outbound ID */

	struct fwd_utcp utcp[DNS_FWD_MAX_UPSTREAMS * FWD_UTCP_SLOTS];

	struct dns_fwd_stats st;
	uint8_t tx[DNS_MSG_MAX];    /* one answer being built */
	uint8_t txtcp[DNS_MSG_MAX + 2]; /* the same, framed for TCP */
	uint8_t rx[FWD_RX_BATCH][FWD_RX_BUF];
	struct fwd_txq txq;
};

/*
 * Send len octets of msg, whose full RCODE (OPT bits included) is rcode, to
 * the UDP client c: queued (msg and c are copied) and sent by
 * fwd_udp_flush() at the end of the loop iteration, or at once when the
 * queue is full or msg too long to queue.
 */
void fwd_udp_send(struct dns_fwd *f, const struct fwd_client *c,
		  const uint8_t *msg, size_t len, unsigned rcode);

/* Count one answer sent to a client, with its full RCODE. */
void fwd_count_answer(struct dns_fwd *f, unsigned rcode);

/*
 * The RCODE for a query whose parse failed but whose header q read: NOTIMP
 * for an opcode other than QUERY (whatever its body: DSO messages, RFC 8490,
 * carry no question), else FORMERR (counted as formerr).
 */
unsigned fwd_malformed(struct dns_fwd *f, const struct dns_msg *q);

/* Send every queued UDP answer. */
void fwd_udp_flush(struct dns_fwd *f);

/*
 * What every valid client query, over UDP or TCP, must pass before the hosts
 * table and the upstreams see it.  Returns 0 to go on, or the RCODE of the
 * error answer it gets at once (counted): NOTIMP for an opcode other than
 * QUERY and for zone transfers, BADVERS for an EDNS version above 0.
 */
unsigned fwd_screen(struct dns_fwd *f, const struct dns_msg *q);

/* Send an error response with rcode to the query q (parsed, maybe broken). */
void fwd_udp_error(struct dns_fwd *f, const struct fwd_client *c,
		   const struct dns_msg *q, unsigned rcode);

/*
 * Start forwarding the valid query q from a client: the UDP client c when
 * sess is NULL, else TCP session sess (c NULL).  Returns false, counting
 * table_full, when no record is free.
 */
bool fwd_start(struct dns_fwd *f, const struct fwd_client *c,
	       const struct dns_msg *q, struct sess *sess);

/* Close every listen socket. */
void fwd_udp_close_all(struct dns_fwd *f);

/* TCP counterparts of fwd_udp_send / fwd_udp_error (forwarder_tcp.c). */
void fwd_tcp_send(struct dns_fwd *f, struct sess *s, const uint8_t *msg,
		  size_t len, unsigned rcode);
void fwd_tcp_error(struct dns_fwd *f, struct sess *s, const struct dns_msg *q,
		   unsigned rcode);

/* Drop the outstanding queries of a closing session (forwarder.c). */
void fwd_cancel_session(struct dns_fwd *f, struct sess *s);

/* Free every TCP listener, closing its sessions. */
void fwd_tcp_close_all(struct dns_fwd *f);

/*
 * Accept the reply resp (parsed from msg, len octets, borrowed) for r: relay
 * it to the client with its ID restored and free r (forwarder.c).
 */
void fwd_accept(struct dns_fwd *f, struct fwd_query *r, struct dns_msg *resp,
		const uint8_t *msg, size_t len);

/*
 * r's upstream TCP connection died under it (r is already off it): send it
 * again (forwarder.c).  After a connection that never opened (unreachable
 * true), to the next upstream at once.  Otherwise to the same upstream: the
 * first time pipelined as before, the second time alone on one of the
 * upstream's solo connections (so that a query the upstream closes connections on
 * cannot take the queries pipelined with it down too), and after a loss
 * even alone, to the next upstream.  SERVFAIL when none is left.
 */
void fwd_retry_lost(struct dns_fwd *f, struct fwd_query *r, bool unreachable);

/* Prepare the connection slots (forwarder_upstream_tcp.c). */
void fwd_utcp_init(struct dns_fwd *f);

/*
 * Send r (its query[] ready but for the ID) to upstream up over TCP: on a
 * connection with room, opening one when none has any, with a random ID no
 * other query on that connection uses.  Returns 0; -EAGAIN when every
 * connection is open and full (r then joins the upstream's backlog and
 * leaves when a slot frees: a busy upstream is not a failed one); or
 * another -errno when no connection can be had (r is then on none).
 */
int fwd_utcp_send(struct dns_fwd *f, struct fwd_query *r, unsigned up);

/* Take r off its connection or out of the backlog (no-op when on neither). */
void fwd_utcp_detach(struct dns_fwd *f, struct fwd_query *r);

/*
 * Send what the upstream backlogs hold while their connections have room
 * (run at the end of each loop iteration).  A query that can no longer be
 * sent to its upstream moves on through fwd_backlog_failed().
 */
void fwd_utcp_drain(struct dns_fwd *f);

/* A backlogged query's upstream cannot take it after all: next upstream
 * (forwarder.c). */
void fwd_backlog_failed(struct dns_fwd *f, struct fwd_query *r);

/* Close every upstream connection and free its buffers, retrying nothing. */
void fwd_utcp_close_all(struct dns_fwd *f);

#endif
