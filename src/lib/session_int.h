/*
 * session_int: the session engine's private structures, shared by
 * session_listen.c (listeners, accept, limits), session_conn.c (one TCP
 * session: I/O, deadlines, close), session_udp.c and session_frame.c.
 */
#ifndef BERTH_SESSION_INT_H
#define BERTH_SESSION_INT_H

#include "berth/session.h"

/* An intrusive doubly-linked list link; a list head is a sentinel link. */
struct sess_link {
	struct sess_link *next, *prev;
};

/* Where a session is in its close sequence. */
enum sess_phase {
	SESS_PHASE_OPEN,     /* reading requests, deadlines running */
	SESS_PHASE_CLOSING,  /* reason recorded, close hook pending */
	SESS_PHASE_FLUSHING, /* on_close done, writing the last output */
	SESS_PHASE_LINGER,   /* output done, FIN sent, discarding the input */
	SESS_PHASE_DONE,     /* fd closed, free hook pending */
};

struct sess {
	struct sess_listener *lst; /* NULL once the listener is gone */
	struct loop *loop;
	int fd;
	struct loop_watch watch;
	unsigned interest;         /* what watch is registered for */
	struct wheel_timer timer;  /* the one deadline (or flush bound) */
	struct loop_close close_req;
	struct loop_close resume_req; /* deliver held requests, deferred */
	struct sess_link all;      /* every session of the listener */
	struct sess_link fifo;     /* sessions still new, oldest first */
	bool in_fifo;

	struct sockaddr_storage peer;
	socklen_t peerlen;
	uint64_t accepted_ms;

	enum sess_phase phase;
	enum sess_close_reason why;
	bool completed;            /* a complete request was delivered */
	bool peer_eof;             /* the peer shut its write side */
	bool rst;                  /* close with an RST */
	bool held;                 /* a complete request waits, undelivered */
	bool paused;               /* not reading: backpressure */
	uint64_t delivered, answered;

	uint8_t *in;               /* input bytes [0, in_len) */
	size_t in_len, in_cap;
	uint8_t *out;              /* queued output [out_off, out_len) */
	size_t out_off, out_len, out_cap;

	void *user;
};

struct sess_listener {
	struct loop *loop;
	bool udp;
	int fd;
	int spare_fd;              /* the EMFILE reserve, TCP only */
	struct loop_watch watch;
	struct wheel_timer pause;  /* EMFILE pause */
	struct sess_service svc;
	struct sess_limits lim;
	struct guard *guard;
	struct sess_stats st;

	struct sess_link all;      /* oldest first */
	struct sess_link fifo;     /* new sessions, oldest first */
	uint32_t lingering;        /* sessions in SESS_PHASE_LINGER */

	/* UDP: one recvmmsg batch, allocated once. */
	uint8_t *ubuf;
	size_t ubuf_each;
	struct mmsghdr *umsg;
	struct iovec *uiov;
	struct sockaddr_storage *ufrom;
	union sess_cmsg *uctl;     /* destinations, on a wildcard socket */
	bool ulocal;               /* bound to a wildcard: PKTINFO is on */
	int ufamily;
};

#define sess_of(ptr, member) wheel_container_of(ptr, struct sess, member)

static inline void sess_link_init(struct sess_link *h)
{
	h->next = h->prev = h;
}

static inline void sess_link_add_tail(struct sess_link *h, struct sess_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void sess_link_del(struct sess_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

/* session_conn.c: start a session on accepted fd; NULL when out of memory. */
struct sess *sess_conn_new(struct sess_listener *l, int fd,
			   const struct sockaddr_storage *peer,
			   socklen_t peerlen);

/*
 * session_conn.c: close s at once (listener shutdown): on_close runs if it
 * has not, the fd is closed and s is freed unless a close hook is still
 * queued, in which case the hook frees it later.
 */
void sess_conn_shutdown(struct sess *s);

/* Log one line through the service, or to stderr. */
void sess_log(const struct sess_listener *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* session_udp.c: the UDP listener's read handler and batch setup. */
void sess_udp_on_read(struct loop *loop, struct loop_watch *w,
		      unsigned events);
int sess_udp_setup(struct sess_listener *l);
void sess_udp_free(struct sess_listener *l);

#endif
