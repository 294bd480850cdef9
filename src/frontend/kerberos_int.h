/*
 * kerberos_int: the relay's private state, shared by kerberos.c (queries,
 * answers, failover, entry points), krb_udp.c (exchanges over the pool and
 * reply matching) and krb_tcp.c (exchanges over a TCP connection).  Nothing
 * outside those files includes it.
 */
#ifndef BERTH_FRONTEND_KERBEROS_INT_H
#define BERTH_FRONTEND_KERBEROS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "berth/loop.h"
#include "berth/session.h"
#include "berth/sockpool.h"
#include "berth/wheel.h"
#include "frontend/kerberos.h"

/*
 * Buckets of the (pool socket -> waiting queries) table and of the late
 * table, both hashed by fd.
 */
#define KRB_FD_BUCKETS 256u

struct krb_late; /* a reserved (pool socket, upstream) pair, krb_udp.c */

/* One client request, from arrival to its reply (or its dropping). */
struct krb_query {
	struct fe_krb *k;
	struct krb_query *prev, *next; /* every live query (fe_krb.live) */
	struct krb_query *fd_next;     /* chain of its fd bucket, when waiting */
	struct krb_query *sess_next;   /* FIFO of its TCP session */
	/* The client: a TCP session, or a UDP listener and peer. */
	struct sess *sess;
	struct sess_listener *ul;
	struct sess_udp_peer peer;
	/* The request: a 4-byte length prefix, then the body (reqlen bytes). */
	uint8_t *req;
	size_t reqlen, reqcap;
	size_t up;                     /* index of the upstream being asked */
	bool started;                  /* a queued TCP request waits until true */
	bool last;                     /* the client sent more than the queue
					  takes: close once this is answered */
	/* UDP exchange. */
	bool waiting_udp;
	struct pool_handle h;
	/* TCP exchange. */
	int tfd;
	struct loop_watch w;
	bool connected;
	size_t sent;
	uint8_t *in;
	size_t inlen, incap;
	/* A RESPONSE_TOO_BIG answer being retried over TCP, kept to relay. */
	uint8_t *too_big;
	size_t too_big_len;
	struct wheel_timer timer;
};

/*
 * Could a KDC message of type (FE_KRB_AS_REP, FE_KRB_TGS_REP or
 * FE_KRB_ERROR) answer q's request?  An error answers either; a reply only
 * the request of its kind.
 */
bool krb_reply_fits(const struct krb_query *q, int type);

struct fe_krb {
	struct loop *loop;
	struct pool *pool;
	struct fe_krb_upstream ups[FE_KRB_MAX_UPSTREAMS];
	size_t nups;
	uint64_t timeout_ms;
	size_t max_msg, max_udp_reply;
	fe_krb_clock_fn *wall_clock;
	void *clock_arg;
	struct krb_query *live;        /* every query in flight */
	struct krb_query *free_q;      /* reusable objects, chained by next */
	size_t nfree;
	struct krb_query *fdtab[KRB_FD_BUCKETS];
	struct krb_late *latetab[KRB_FD_BUCKETS];
	bool closing;                  /* fe_krb_free: reserve nothing more */
	struct fe_krb_stats st;
};

/* --- kerberos.c --- */

/* Stop whatever exchange q has with an upstream: timer, pool socket, TCP. */
void krb_end_exchange(struct krb_query *q);

/*
 * q has its answer (or none will come): free it and, on a TCP session, start
 * the next request queued behind it.
 */
void krb_query_finish(struct krb_query *q);

/*
 * Send body (len bytes, no prefix, borrowed) to q's client: a datagram or a
 * frame.  framed, when not NULL, is the same body behind its 4-byte prefix.
 */
void krb_answer(struct krb_query *q, const uint8_t *body, size_t len,
		const uint8_t *framed);

/* The too-big retry over TCP did not work out: relay the upstream's error. */
void krb_relay_too_big(struct krb_query *q);

/* The current upstream failed (refused, reset, garbage): move on. */
void krb_upstream_failed(struct krb_query *q);

/* --- krb_udp.c --- */

/*
 * Send q's request to its current upstream from a pool socket that has
 * neither a query waiting for that upstream nor a reservation for it (see
 * krb_udp_end).  Returns 0, or a negative errno (-EBUSY when every draw was
 * busy) and q is left without an exchange.
 */
int krb_udp_start(struct krb_query *q);

/*
 * End q's UDP exchange without its reply (the upstream timed out, or q is
 * dropped): q leaves the waiting table and its (pool socket, upstream) pair
 * is kept reserved for the upstream timeout, holding the pool handle, so a
 * late reply cannot reach another query.  Without memory for that, or
 * while k is being freed, the handle goes back to the pool at once.
 */
void krb_udp_end(struct krb_query *q);

/* Free every reserved pair of k, returning their pool handles. */
void krb_udp_free_late(struct fe_krb *k);

/* --- krb_tcp.c --- */

/*
 * Open a connection to q's current upstream and send the request on it.
 * Returns 0, or a negative errno and q is left without an exchange.
 */
int krb_tcp_start(struct krb_query *q);

/* Close q's TCP connection to the upstream, if any. */
void krb_tcp_end(struct krb_query *q);

#endif
