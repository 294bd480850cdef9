/*
 * dns/forwarder: the upstream leg over TCP (RFC 7766), for queries that came
 * from TCP clients.  Each upstream has FWD_UTCP_CONNS connection slots; a
 * query goes on the first open connection with room (pipelined behind the
 * others), and a new connection is opened only when none has any.  Replies
 * are matched by ID among the connection's queries in flight and by
 * question, as over UDP; the connection itself stands for the address,
 * port and socket checks.  A connection with nothing in flight closes after
 * FWD_UTCP_IDLE_MS; one that fails or is closed by the upstream hands its
 * queries back to forwarder.c for a retry.
 *
 * Each upstream also has FWD_UTCP_SOLO_CONNS solo connections, each of
 * which carries one query and is never reused: the queries already lost twice
 * (fwd_retry_lost).  Some servers close the connection on a query they
 * refuse to answer; alone, such a query can only take itself down, and the
 * ones that were pipelined with it get their answers.  Several, so that one
 * query the upstream leaves unanswered does not hold the others up until it
 * times out.  Queries waiting for a solo connection have a list of their
 * own, so that they never hold up the pipelined ones.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "berth/rnd.h"
#include "dns/forwarder_int.h"

static void on_io(struct loop *l, struct loop_watch *w, unsigned events);
static void on_idle(struct wheel_timer *t, void *ctx);

void fwd_utcp_init(struct dns_fwd *f)
{
	for (size_t i = 0; i < DNS_FWD_MAX_UPSTREAMS * FWD_UTCP_SLOTS; i++) {
		struct fwd_utcp *c = &f->utcp[i];
		*c = (struct fwd_utcp){
			.f = f,
			.fd = -1,
			.up = (uint8_t)(i / FWD_UTCP_SLOTS),
		};
		wheel_timer_init(&c->idle, on_idle);
		for (size_t k = 0; k < FWD_UTCP_MAX_INFLIGHT; k++)
			c->slot[k] = FWD_NIL;
	}
	for (size_t i = 0; i < DNS_FWD_MAX_UPSTREAMS; i++) {
		f->up[i].wait_head = f->up[i].wait_tail = FWD_NIL;
		f->up[i].solo_head = f->up[i].solo_tail = FWD_NIL;
	}
}

/* Whether r travels alone, on one of its upstream's solo connections. */
static bool wants_solo(const struct fwd_query *r)
{
	return r->losses >= FWD_UTCP_SOLO_AFTER;
}

/* A backlog of upstream u: the solo one, or the pipelined one. */
struct backlog {
	uint32_t *head, *tail;
};

static struct backlog backlog_of(struct fwd_upstream *u, bool solo)
{
	return solo ? (struct backlog){ &u->solo_head, &u->solo_tail }
		    : (struct backlog){ &u->wait_head, &u->wait_tail };
}

/* Append r to its backlog of upstream up.  r's losses choose the list, and
 * they do not change while r waits (it is on no connection to lose). */
static void backlog_push(struct dns_fwd *f, struct fwd_query *r, unsigned up)
{
	struct backlog b = backlog_of(&f->up[up], wants_solo(r));
	uint32_t self = (uint32_t)(r - f->q);
	r->wprev = *b.tail;
	r->wnext = FWD_NIL;
	if (*b.tail != FWD_NIL)
		f->q[*b.tail].wnext = self;
	else
		*b.head = self;
	*b.tail = self;
	r->backlogged = true;
}

/* Take r out of the backlog of the upstream it is waiting for. */
static void backlog_unlink(struct dns_fwd *f, struct fwd_query *r)
{
	struct backlog b = backlog_of(&f->up[r->order[r->attempt]], wants_solo(r));
	if (r->wprev != FWD_NIL)
		f->q[r->wprev].wnext = r->wnext;
	else
		*b.head = r->wnext;
	if (r->wnext != FWD_NIL)
		f->q[r->wnext].wprev = r->wprev;
	else
		*b.tail = r->wprev;
	r->wprev = r->wnext = FWD_NIL;
	r->backlogged = false;
}

/* Close c's socket; its queries must already be off it. */
static void conn_close(struct dns_fwd *f, struct fwd_utcp *c)
{
	if (c->fd < 0)
		return;
	loop_timer_stop(f->loop, &c->idle);
	loop_watch_stop(f->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	c->connecting = false;
	c->used = false;
	c->wlen = 0;
	c->rlen = 0;
	f->st.upstream_tcp_closed++;
}

/*
 * c failed or was closed by its upstream: close it, then retry each query it
 * carried.  The queries are taken off first, so that a retry never lands on
 * this connection again.  A connection that never opened (refused, say) is
 * one failure of its upstream, however many queries waited on it.
 */
static void conn_lost(struct dns_fwd *f, struct fwd_utcp *c)
{
	bool unreachable = c->connecting;
	uint32_t lost[FWD_UTCP_MAX_INFLIGHT];
	uint32_t n = 0;
	for (uint32_t k = 0; k < FWD_UTCP_MAX_INFLIGHT; k++) {
		if (c->slot[k] == FWD_NIL)
			continue;
		lost[n++] = c->slot[k];
		f->q[c->slot[k]].utcp = FWD_UTCP_NONE;
		c->slot[k] = FWD_NIL;
	}
	c->nflight = 0;
	if (n > 0)
		f->st.upstream_tcp_lost++;
	if (n > 0 && unreachable)
		f->up[c->up].failures++;
	conn_close(f, c);
	for (uint32_t i = 0; i < n; i++)
		fwd_retry_lost(f, &f->q[lost[i]], unreachable);
}

static void on_idle(struct wheel_timer *t, void *ctx)
{
	(void)ctx;
	struct fwd_utcp *c = wheel_container_of(t, struct fwd_utcp, idle);
	if (c->nflight == 0)
		conn_close(c->f, c);
}

/* Start a nonblocking connect on c.  Returns 0 or -errno. */
static int conn_open(struct dns_fwd *f, struct fwd_utcp *c)
{
	const struct fwd_upstream *u = &f->up[c->up];
	if (!c->wbuf)
		c->wbuf = malloc(FWD_UTCP_WBUF);
	if (!c->rbuf)
		c->rbuf = malloc(FWD_UTCP_RBUF);
	if (!c->wbuf || !c->rbuf)
		return -ENOMEM;
	/* The source port comes from the plan, like the UDP leg's. */
	int fd = pool_connect_tcp(f->pool, &u->addr.sa, u->len, NULL);
	if (fd < 0) {
		f->st.send_errors++;
		return fd;
	}
	/* Queries are small and pipelined: send each at once. */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	loop_watch_init(&c->w, fd, on_io);
	int rc = loop_watch_set(f->loop, &c->w, LOOP_READ | LOOP_WRITE);
	if (rc < 0) {
		close(fd);
		f->st.send_errors++;
		return rc;
	}
	c->fd = fd;
	c->connecting = true;
	c->used = false;
	c->wlen = 0;
	c->rlen = 0;
	f->st.upstream_tcp_opened++;
	return 0;
}

/*
 * Write what c has queued.  Returns 0 (all written, or the rest waits for
 * the socket) or -errno when the connection is broken.
 */
static int conn_flush(struct dns_fwd *f, struct fwd_utcp *c)
{
	while (c->wlen > 0) {
		ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c->wlen -= (size_t)n;
		memmove(c->wbuf, c->wbuf + n, c->wlen);
	}
	return loop_watch_set(f->loop, &c->w,
			      LOOP_READ | (c->wlen ? LOOP_WRITE : 0u));
}

/* The query in flight on c with outbound ID id, or NULL. */
static struct fwd_query *conn_find(struct dns_fwd *f, const struct fwd_utcp *c,
				   uint16_t id)
{
	if (c->nflight == 0)
		return NULL;
	for (uint32_t k = 0; k < FWD_UTCP_MAX_INFLIGHT; k++)
		if (c->slot[k] != FWD_NIL &&
		    dns_get_id(f->q[c->slot[k]].query) == id)
			return &f->q[c->slot[k]];
	return NULL;
}

/* One framed reply (msg, len octets after the prefix) read from c. */
static void on_reply(struct dns_fwd *f, struct fwd_utcp *c, const uint8_t *msg,
		     size_t len)
{
	if (len < DNS_HEADER_LEN) {
		f->st.garbage++;
		return;
	}
	struct fwd_query *r = conn_find(f, c, dns_get_id(msg));
	if (!r) {
		f->st.mismatch_id++;
		return;
	}
	struct dns_msg resp;
	if (dns_parse(&resp, msg, len) != DNS_OK ||
	    !(resp.hdr.flags & DNS_FLAG_QR)) {
		f->st.garbage++;
		return;
	}
	if (!dns_question_matches(&r->qmsg, &resp, f->use_0x20)) {
		f->st.mismatch_question++;
		return;
	}
	fwd_accept(f, r, &resp, msg, len);
}

/*
 * Read what c has and handle every whole reply in it.  Returns 0, or -errno
 * (-ECONNRESET for EOF, -EPROTO for a frame that cannot be DNS) when c must
 * be given up.
 */
static int conn_read(struct dns_fwd *f, struct fwd_utcp *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->rbuf + c->rlen, FWD_UTCP_RBUF - c->rlen);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c->rlen += (size_t)n;
		size_t off = 0, mlen;
		for (;;) {
			enum sess_frame fr = sess_frame_len16(c->rbuf + off,
							      c->rlen - off,
							      DNS_MSG_MAX, &mlen);
			if (fr == SESS_FRAME_NEED_MORE)
				break;
			if (fr != SESS_FRAME_COMPLETE) {
				f->st.garbage++;
				return -EPROTO;
			}
			on_reply(f, c, c->rbuf + off + 2, mlen - 2);
			off += mlen;
		}
		c->rlen -= off;
		memmove(c->rbuf, c->rbuf + off, c->rlen);
	}
}

static void on_io(struct loop *l, struct loop_watch *w, unsigned events)
{
	(void)l;
	struct fwd_utcp *c = wheel_container_of(w, struct fwd_utcp, w);
	struct dns_fwd *f = c->f;
	int rc = 0;
	if (c->connecting && (events & (LOOP_WRITE | LOOP_HUP))) {
		int soerr = 0;
		socklen_t slen = sizeof(soerr);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
			soerr = errno;
		if (soerr)
			rc = -soerr;
		else
			c->connecting = false;
	}
	if (rc == 0 && !c->connecting && (events & LOOP_WRITE))
		rc = conn_flush(f, c);
	if (rc == 0 && !c->connecting && (events & (LOOP_READ | LOOP_HUP)))
		rc = conn_read(f, c);
	if (rc < 0)
		conn_lost(f, c);
}

/* A random ID no other query in flight on c uses, or -1. */
static int32_t conn_fresh_id(struct dns_fwd *f, const struct fwd_utcp *c)
{
	for (unsigned t = 0; t < FWD_ID_TRIES; t++) {
		uint16_t id = (uint16_t)rnd_uniform(65536);
		if (!conn_find(f, c, id))
			return id;
	}
	return -1;
}

static bool conn_has_room(const struct fwd_utcp *c, size_t need)
{
	return c->fd >= 0 && c->nflight < FWD_UTCP_MAX_INFLIGHT &&
	       c->wlen + need <= FWD_UTCP_WBUF;
}

/*
 * A connection to upstream up with room for need more octets, opening one
 * when none has room: 0 with *out set; -EAGAIN when every connection that
 * is open is full (a closed one that could not be opened does not matter
 * then: the query waits for room); -EBUSY when none is open and none could
 * be opened.
 */
static int pick_conn(struct dns_fwd *f, unsigned up, size_t need,
		     struct fwd_utcp **out)
{
	struct fwd_utcp *set = &f->utcp[up * FWD_UTCP_SLOTS];
	bool any_open = false;
	for (unsigned k = 0; k < FWD_UTCP_CONNS; k++) {
		if (conn_has_room(&set[k], need)) {
			*out = &set[k];
			return 0;
		}
		any_open |= set[k].fd >= 0;
	}
	for (unsigned k = 0; k < FWD_UTCP_CONNS; k++) {
		if (set[k].fd >= 0)
			continue;
		if (conn_open(f, &set[k]) == 0) {
			*out = &set[k];
			return 0;
		}
	}
	return any_open ? -EAGAIN : -EBUSY;
}

/*
 * A fresh solo connection to upstream up: 0 with *out set; -EAGAIN while
 * every one carries a query; -EBUSY when none does and none can be opened.
 */
static int pick_solo(struct dns_fwd *f, unsigned up, struct fwd_utcp **out)
{
	struct fwd_utcp *set = &f->utcp[up * FWD_UTCP_SLOTS + FWD_UTCP_CONNS];
	struct fwd_utcp *c = NULL;
	bool any_busy = false;
	for (unsigned k = 0; k < FWD_UTCP_SOLO_CONNS; k++) {
		if (set[k].fd >= 0 && set[k].nflight > 0)
			any_busy = true;
		else if (!c)
			c = &set[k];
	}
	if (!c)
		return -EAGAIN;
	/* Never reused: its last query may have left it unanswered (timed
	 * out), and must not stand in front of the next. */
	conn_close(f, c);
	if (conn_open(f, c) < 0)
		return any_busy ? -EAGAIN : -EBUSY;
	*out = c;
	return 0;
}

/* pick_conn() or pick_solo(), as r needs. */
static int pick_for(struct dns_fwd *f, const struct fwd_query *r, unsigned up,
		    struct fwd_utcp **out)
{
	return wants_solo(r) ? pick_solo(f, up, out)
			     : pick_conn(f, up, (size_t)r->qlen + 2, out);
}

/* Put r on connection c (which has room) with a fresh ID and write it. */
static int send_on(struct dns_fwd *f, struct fwd_query *r, struct fwd_utcp *c)
{
	size_t need = (size_t)r->qlen + 2;
	int32_t id = conn_fresh_id(f, c);
	if (id < 0) {
		/* A connection just opened for r must not stay open forever. */
		if (c->nflight == 0)
			loop_timer_start_in(f->loop, &c->idle, FWD_UTCP_IDLE_MS);
		return -EBUSY;
	}
	dns_set_id(r->query, (uint16_t)id);
	uint32_t k = 0;
	while (c->slot[k] != FWD_NIL)
		k++;
	c->slot[k] = (uint32_t)(r - f->q);
	c->nflight++;
	r->utcp = (uint8_t)(c - f->utcp);
	r->uslot = (uint8_t)k;
	if (c->used)
		f->st.upstream_tcp_reused++;
	c->used = true;
	loop_timer_stop(f->loop, &c->idle);
	c->wbuf[c->wlen] = (uint8_t)(r->qlen >> 8);
	c->wbuf[c->wlen + 1] = (uint8_t)r->qlen;
	memcpy(c->wbuf + c->wlen + 2, r->query, r->qlen);
	c->wlen += need;
	f->st.upstream_tcp_queries++;
	/* Write now when the connection is up.  A broken connection is only
	 * noticed here: the write event reports it, outside this call, so that
	 * its queries (this one included) are retried from the loop and never
	 * from inside a send attempt. */
	if (!c->connecting && conn_flush(f, c) < 0)
		(void)loop_watch_set(f->loop, &c->w, LOOP_READ | LOOP_WRITE);
	return 0;
}

int fwd_utcp_send(struct dns_fwd *f, struct fwd_query *r, unsigned up)
{
	struct fwd_utcp *c;
	int rc = pick_for(f, r, up, &c);
	if (rc == -EAGAIN) {
		backlog_push(f, r, up);
		f->st.upstream_tcp_backlogged++;
	}
	return rc < 0 ? rc : send_on(f, r, c);
}

void fwd_utcp_detach(struct dns_fwd *f, struct fwd_query *r)
{
	if (r->backlogged)
		backlog_unlink(f, r);
	if (r->utcp == FWD_UTCP_NONE)
		return;
	struct fwd_utcp *c = &f->utcp[r->utcp];
	c->slot[r->uslot] = FWD_NIL;
	c->nflight--;
	r->utcp = FWD_UTCP_NONE;
	if (c->nflight == 0 && c->fd >= 0)
		loop_timer_start_in(f->loop, &c->idle, FWD_UTCP_IDLE_MS);
}

/* Send what one backlog of upstream up holds while there is room. */
static void drain_one(struct dns_fwd *f, unsigned up, bool solo)
{
	struct backlog b = backlog_of(&f->up[up], solo);
	while (*b.head != FWD_NIL) {
		struct fwd_query *r = &f->q[*b.head];
		struct fwd_utcp *c;
		int rc = pick_for(f, r, up, &c);
		if (rc == -EAGAIN)
			break;
		backlog_unlink(f, r);
		if (rc == 0)
			rc = send_on(f, r, c);
		if (rc < 0)
			fwd_backlog_failed(f, r);
	}
}

void fwd_utcp_drain(struct dns_fwd *f)
{
	for (unsigned up = 0; up < f->nup; up++) {
		drain_one(f, up, false);
		drain_one(f, up, true);
	}
}

void fwd_utcp_close_all(struct dns_fwd *f)
{
	for (size_t i = 0; i < DNS_FWD_MAX_UPSTREAMS * FWD_UTCP_SLOTS; i++) {
		struct fwd_utcp *c = &f->utcp[i];
		/* Slots never prepared (a forwarder that failed half-built)
		 * hold no socket. */
		if (!c->f)
			continue;
		conn_close(f, c);
		free(c->wbuf);
		free(c->rbuf);
		c->wbuf = NULL;
		c->rbuf = NULL;
	}
}
