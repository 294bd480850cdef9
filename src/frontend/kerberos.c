/*
 * kerberos: the relay between Kerberos clients and upstream KDCs: queries,
 * their upstream exchanges over the pool (UDP) or a TCP connection, reply
 * matching, failover and the error reply.  See kerberos.h.
 */
#include "frontend/kerberos.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "berth/wheel.h"

/* Buckets of the (pool socket -> waiting queries) table, hashed by fd. */
#define FD_BUCKETS 256u
/* Query objects kept for reuse instead of being freed. */
#define FREE_KEEP 256u
/* First size of the buffer a TCP reply is read into. */
#define TCP_IN_FIRST 4096u

/* One client request, from arrival to its reply (or its dropping). */
struct krb_query {
	struct fe_krb *k;
	struct krb_query *prev, *next; /* every live query (fe_krb.live) */
	struct krb_query *fd_next;     /* chain of its fd bucket, when waiting */
	struct krb_query *sess_next;   /* FIFO of its TCP session */
	/* The client: a TCP session, or a UDP listener and peer. */
	struct sess *sess;
	struct sess_listener *ul;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	/* The request: a 4-byte length prefix, then the body (reqlen bytes). */
	uint8_t *req;
	size_t reqlen, reqcap;
	size_t up;                     /* index of the upstream being asked */
	bool started;                  /* a queued TCP request waits until true */
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
	struct krb_query *fdtab[FD_BUCKETS];
	struct fe_krb_stats st;
};

static void try_upstream(struct krb_query *q);
static void on_timeout(struct wheel_timer *t, void *ctx);

static uint64_t clock_realtime_us(void *arg)
{
	struct timespec ts;
	(void)arg;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Same family, address and port. */
static bool sa_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

static const struct sockaddr *up_addr(const struct krb_query *q)
{
	return (const struct sockaddr *)&q->k->ups[q->up].sa;
}

/* --- the table of queries waiting on pool sockets --- */

static struct krb_query **bucket(struct fe_krb *k, int fd)
{
	return &k->fdtab[(unsigned)fd % FD_BUCKETS];
}

static struct krb_query *find_waiting(const struct fe_krb *k, int fd,
				      const struct sockaddr *from)
{
	for (struct krb_query *q = k->fdtab[(unsigned)fd % FD_BUCKETS]; q;
	     q = q->fd_next)
		if (q->h.fd == fd && sa_equal(up_addr(q), from))
			return q;
	return NULL;
}

static void unhash(struct krb_query *q)
{
	for (struct krb_query **pp = bucket(q->k, q->h.fd); *pp; pp = &(*pp)->fd_next)
		if (*pp == q) {
			*pp = q->fd_next;
			break;
		}
	q->fd_next = NULL;
}

/* --- query objects --- */

static struct krb_query *query_new(struct fe_krb *k, const uint8_t *body,
				   size_t len)
{
	struct krb_query *q = k->free_q;
	if (q) {
		k->free_q = q->next;
		k->nfree--;
	} else if (!(q = calloc(1, sizeof(*q)))) {
		return NULL;
	}
	if (q->reqcap < len + 4) {
		uint8_t *grown = realloc(q->req, len + 4);
		if (!grown) {
			free(q->req);
			free(q->in);
			free(q);
			return NULL;
		}
		q->req = grown;
		q->reqcap = len + 4;
	}
	*q = (struct krb_query){ .k = k, .req = q->req, .reqcap = q->reqcap,
				 .in = q->in, .incap = q->incap, .tfd = -1,
				 .reqlen = len, .next = k->live };
	q->req[0] = (uint8_t)(len >> 24);
	q->req[1] = (uint8_t)(len >> 16);
	q->req[2] = (uint8_t)(len >> 8);
	q->req[3] = (uint8_t)len;
	memcpy(q->req + 4, body, len);
	wheel_timer_init(&q->timer, on_timeout);
	if (k->live)
		k->live->prev = q;
	k->live = q;
	k->st.outstanding++;
	return q;
}

/* Stop whatever exchange q has with an upstream: timer, pool socket, TCP. */
static void end_exchange(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	loop_timer_stop(k->loop, &q->timer);
	if (q->waiting_udp) {
		unhash(q);
		pool_done(k->pool, &q->h);
		q->waiting_udp = false;
	}
	if (q->tfd >= 0) {
		loop_watch_stop(k->loop, &q->w);
		close(q->tfd);
		q->tfd = -1;
	}
}

/* Forget q (its client is answered or gone) and keep the object for reuse. */
static void query_free(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	end_exchange(q);
	free(q->too_big);
	q->too_big = NULL;
	if (q->prev)
		q->prev->next = q->next;
	else
		k->live = q->next;
	if (q->next)
		q->next->prev = q->prev;
	k->st.outstanding--;
	if (k->nfree < FREE_KEEP) {
		q->next = k->free_q;
		k->free_q = q;
		k->nfree++;
	} else {
		free(q->req);
		free(q->in);
		free(q);
	}
}

/*
 * q has its answer (or none will come): free it and, on a TCP session, start
 * the next request queued behind it.
 */
static void query_finish(struct krb_query *q)
{
	struct sess *s = q->sess;
	struct krb_query *next = q->sess_next;
	query_free(q);
	if (!s)
		return;
	sess_set_user(s, next);
	if (next) {
		next->started = true;
		try_upstream(next);
	}
}

/* --- answers to the client --- */

/* Send body (len bytes, no prefix) to q's client: a datagram or a frame. */
static void answer(struct krb_query *q, const uint8_t *body, size_t len,
		   const uint8_t *framed)
{
	if (q->sess) {
		if (framed) {
			sess_send(q->sess, framed, len + 4);
		} else {
			uint8_t *buf = malloc(len + 4);
			if (!buf) {
				sess_close(q->sess, SESS_CLOSE_IO_ERROR);
				return;
			}
			buf[0] = (uint8_t)(len >> 24);
			buf[1] = (uint8_t)(len >> 16);
			buf[2] = (uint8_t)(len >> 8);
			buf[3] = (uint8_t)len;
			memcpy(buf + 4, body, len);
			sess_send(q->sess, buf, len + 4);
			free(buf);
		}
	} else {
		sess_udp_send(q->ul, (const struct sockaddr *)&q->peer, q->peerlen,
			      body, len);
	}
}

/*
 * Every upstream failed: answer KDC_ERR_SVC_UNAVAILABLE with the request's
 * realm and sname, or end the request without an answer when it cannot be
 * read that far.
 */
static void answer_error(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	struct fe_krb_req_names names;
	if (!fe_krb_req_names(q->req + 4, q->reqlen, &names)) {
		k->st.dropped++;
		if (q->sess)
			sess_close(q->sess, SESS_CLOSE_SERVICE);
		query_finish(q);
		return;
	}
	size_t cap = names.realm_len + names.sname_len + 256;
	uint8_t *buf = malloc(cap);
	size_t n = 0;
	if (buf) {
		uint64_t now = k->wall_clock(k->clock_arg);
		n = fe_krb_error_encode(FE_KRB_ERR_SVC_UNAVAILABLE, now, &names, buf, cap);
		if (!n)
			n = fe_krb_error_encode(FE_KRB_ERR_SVC_UNAVAILABLE, now, NULL, buf, cap);
	}
	if (n) {
		k->st.errors_sent++;
		answer(q, buf, n, NULL);
	} else {
		k->st.dropped++;
		if (q->sess)
			sess_close(q->sess, SESS_CLOSE_IO_ERROR);
	}
	free(buf);
	query_finish(q);
}

/* The too-big retry over TCP did not work out: relay the upstream's error. */
static void relay_too_big(struct krb_query *q)
{
	q->k->st.too_big_relayed++;
	answer(q, q->too_big, q->too_big_len, NULL);
	query_finish(q);
}

/* The current upstream failed (timeout counted by the caller): move on. */
static void upstream_gave_up(struct krb_query *q)
{
	end_exchange(q);
	if (q->too_big) {
		relay_too_big(q);
		return;
	}
	q->up++;
	if (q->up < q->k->nups)
		q->k->st.failovers++;
	try_upstream(q);
}

static void on_timeout(struct wheel_timer *t, void *ctx)
{
	struct krb_query *q = wheel_container_of(t, struct krb_query, timer);
	(void)ctx;
	q->k->st.upstream_timeouts++;
	upstream_gave_up(q);
}

static void upstream_failed(struct krb_query *q)
{
	q->k->st.upstream_failures++;
	upstream_gave_up(q);
}

/* --- TCP exchanges --- */

/* A complete framed reply (len bytes, prefix included) came over TCP. */
static void tcp_reply(struct krb_query *q, const uint8_t *framed, size_t len)
{
	struct fe_krb *k = q->k;
	size_t body = len - 4;
	if (!q->sess && body > k->max_udp_reply) {
		end_exchange(q);
		relay_too_big(q);
		return;
	}
	k->st.replies++;
	answer(q, framed + 4, body, framed);
	query_finish(q);
}

/* Read what the upstream sent; a complete frame ends the exchange. */
static void tcp_read(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	for (;;) {
		size_t mlen = 0;
		enum sess_frame f = sess_frame_len32(q->in, q->inlen, k->max_msg, &mlen);
		if (f == SESS_FRAME_COMPLETE) {
			if (fe_krb_msg_type(q->in + 4, mlen - 4) < 0) {
				k->st.malformed++;
				upstream_failed(q);
			} else {
				tcp_reply(q, q->in, mlen);
			}
			return;
		}
		if (f != SESS_FRAME_NEED_MORE) {
			k->st.malformed++;
			upstream_failed(q);
			return;
		}
		if (q->inlen == q->incap) {
			size_t n = q->incap ? q->incap * 2 : TCP_IN_FIRST;
			if (n > k->max_msg + 4)
				n = k->max_msg + 4;
			uint8_t *grown = realloc(q->in, n);
			if (!grown) {
				upstream_failed(q);
				return;
			}
			q->in = grown;
			q->incap = n;
		}
		ssize_t r = recv(q->tfd, q->in + q->inlen, q->incap - q->inlen, 0);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (r <= 0) {
			upstream_failed(q);
			return;
		}
		q->inlen += (size_t)r;
	}
}

static void on_tcp_io(struct loop *loop, struct loop_watch *w, unsigned events)
{
	struct krb_query *q = wheel_container_of(w, struct krb_query, w);
	(void)events;
	if (!q->connected) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(q->tfd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
			upstream_failed(q);
			return;
		}
		q->connected = true;
	}
	size_t total = q->reqlen + 4;
	while (q->sent < total) {
		ssize_t n = send(q->tfd, q->req + q->sent, total - q->sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			upstream_failed(q);
			return;
		}
		q->sent += (size_t)n;
		if (q->sent == total && loop_watch_set(loop, &q->w, LOOP_READ) < 0) {
			upstream_failed(q);
			return;
		}
	}
	tcp_read(q);
}

/* Open a connection to the current upstream and send the request on it. */
static int start_tcp(struct krb_query *q)
{
	const struct fe_krb_upstream *u = &q->k->ups[q->up];
	int fd = socket(u->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&u->sa, u->len) < 0 &&
	    errno != EINPROGRESS) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	q->tfd = fd;
	q->connected = false;
	q->sent = 0;
	q->inlen = 0;
	loop_watch_init(&q->w, fd, on_tcp_io);
	int rc = loop_watch_set(q->k->loop, &q->w, LOOP_WRITE);
	if (rc < 0) {
		close(fd);
		q->tfd = -1;
	}
	return rc;
}

/* --- UDP exchanges --- */

/*
 * Send the request from a pool socket that has no query waiting for this
 * upstream, so the reply can be told apart by (socket, upstream) alone.
 */
static int start_udp(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	const struct fe_krb_upstream *u = &k->ups[q->up];
	if (!k->pool)
		return -ENETUNREACH;
	for (unsigned i = 0; i < FE_KRB_ACQUIRE_TRIES; i++) {
		struct pool_handle h;
		int rc = pool_acquire(k->pool, u->sa.ss_family, &h);
		if (rc < 0)
			return rc;
		if (find_waiting(k, h.fd, (const struct sockaddr *)&u->sa)) {
			pool_done(k->pool, &h);
			continue;
		}
		if (sendto(h.fd, q->req + 4, q->reqlen, 0,
			   (const struct sockaddr *)&u->sa, u->len) < 0) {
			rc = -errno;
			pool_done(k->pool, &h);
			return rc;
		}
		q->h = h;
		q->waiting_udp = true;
		q->fd_next = *bucket(k, h.fd);
		*bucket(k, h.fd) = q;
		return 0;
	}
	k->st.pool_busy++;
	return -EBUSY;
}

/* Ask upstreams from q->up on until one takes the request; error at the end. */
static void try_upstream(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	while (q->up < k->nups) {
		int rc = q->sess ? start_tcp(q) : start_udp(q);
		if (rc == 0) {
			loop_timer_start_in(k->loop, &q->timer, k->timeout_ms);
			return;
		}
		k->st.upstream_failures++;
		q->up++;
		if (q->up < k->nups)
			k->st.failovers++;
	}
	answer_error(q);
}

/* --- the service's entry points --- */

static bool is_kdc_request(const uint8_t *msg, size_t len)
{
	int type = fe_krb_msg_type(msg, len);
	return type == FE_KRB_AS_REQ || type == FE_KRB_TGS_REQ;
}

void fe_krb_udp_request(struct fe_krb *k, struct sess_listener *l,
			const struct sockaddr *from, socklen_t fromlen,
			const uint8_t *msg, size_t len)
{
	k->st.requests_udp++;
	if (!is_kdc_request(msg, len) || fromlen > sizeof(struct sockaddr_storage)) {
		k->st.malformed++;
		return;
	}
	struct krb_query *q = query_new(k, msg, len);
	if (!q) {
		k->st.dropped++;
		return;
	}
	q->ul = l;
	memcpy(&q->peer, from, fromlen);
	q->peerlen = fromlen;
	q->started = true;
	try_upstream(q);
}

void fe_krb_tcp_request(struct fe_krb *k, struct sess *s, const uint8_t *msg,
			size_t len)
{
	k->st.requests_tcp++;
	if (len < 4 || !is_kdc_request(msg + 4, len - 4)) {
		k->st.malformed++;
		sess_close(s, SESS_CLOSE_MALFORMED);
		return;
	}
	struct krb_query *head = sess_user(s), *tail = head;
	size_t queued = 0;
	for (; tail && tail->sess_next; tail = tail->sess_next)
		queued++;
	if (head && queued + 1 >= FE_KRB_MAX_QUEUED) {
		k->st.dropped++;
		sess_close(s, SESS_CLOSE_SERVICE);
		return;
	}
	struct krb_query *q = query_new(k, msg + 4, len - 4);
	if (!q) {
		k->st.dropped++;
		sess_close(s, SESS_CLOSE_IO_ERROR);
		return;
	}
	q->sess = s;
	if (tail) {
		tail->sess_next = q;
		return;
	}
	sess_set_user(s, q);
	q->started = true;
	try_upstream(q);
}

void fe_krb_sess_closed(struct fe_krb *k, struct sess *s)
{
	(void)k;
	struct krb_query *q = sess_user(s);
	sess_set_user(s, NULL);
	while (q) {
		struct krb_query *next = q->sess_next;
		query_free(q);
		q = next;
	}
}

bool fe_krb_pool_reply(struct fe_krb *k, int fd, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len)
{
	(void)fromlen;
	struct krb_query *q = find_waiting(k, fd, from);
	if (!q) {
		for (size_t i = 0; i < k->nups; i++)
			if (sa_equal((const struct sockaddr *)&k->ups[i].sa, from)) {
				k->st.unmatched++;
				return true;
			}
		return false;
	}
	int type = fe_krb_msg_type(msg, len);
	if (type != FE_KRB_AS_REP && type != FE_KRB_TGS_REP && type != FE_KRB_ERROR) {
		/* Not a KDC reply: keep waiting for the real one. */
		k->st.malformed++;
		return true;
	}
	end_exchange(q);
	int32_t code;
	if (type == FE_KRB_ERROR && fe_krb_error_code(msg, len, &code) &&
	    code == FE_KRB_ERR_RESPONSE_TOO_BIG) {
		k->st.too_big_retries++;
		q->too_big = malloc(len);
		if (!q->too_big) {
			k->st.dropped++;
			query_finish(q);
			return true;
		}
		memcpy(q->too_big, msg, len);
		q->too_big_len = len;
		if (start_tcp(q) < 0) {
			k->st.upstream_failures++;
			relay_too_big(q);
			return true;
		}
		loop_timer_start_in(k->loop, &q->timer, k->timeout_ms);
		return true;
	}
	k->st.replies++;
	answer(q, msg, len, NULL);
	query_finish(q);
	return true;
}

/* --- life cycle --- */

static void cb_request(struct sess *s, const uint8_t *msg, size_t len, void *arg)
{
	fe_krb_tcp_request(arg, s, msg, len);
}

static void cb_close(struct sess *s, enum sess_close_reason why, void *arg)
{
	(void)why;
	fe_krb_sess_closed(arg, s);
}

static void cb_datagram(struct sess_listener *l, const struct sockaddr *from,
			socklen_t fromlen, const uint8_t *msg, size_t len, void *arg)
{
	fe_krb_udp_request(arg, l, from, fromlen, msg, len);
}

void fe_krb_service(struct fe_krb *k, const char *name, struct sess_service *out)
{
	*out = (struct sess_service){
		.name = name,
		.frame = sess_frame_len32,
		.max_msg = k->max_msg,
		.on_request = cb_request,
		.on_close = cb_close,
		.on_datagram = cb_datagram,
		.arg = k,
	};
}

struct fe_krb *fe_krb_new(struct loop *loop, struct pool *pool,
			  const struct fe_krb_config *cfg)
{
	if (!cfg || cfg->nupstreams == 0 || cfg->nupstreams > FE_KRB_MAX_UPSTREAMS)
		return NULL;
	struct fe_krb *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	*k = (struct fe_krb){
		.loop = loop,
		.pool = pool,
		.nups = cfg->nupstreams,
		.timeout_ms = cfg->upstream_timeout_ms ? cfg->upstream_timeout_ms
						       : FE_KRB_DEFAULT_TIMEOUT_MS,
		.max_msg = cfg->max_msg ? cfg->max_msg : FE_KRB_DEFAULT_MAX_MSG,
		.max_udp_reply = cfg->max_udp_reply ? cfg->max_udp_reply
						    : FE_KRB_DEFAULT_MAX_UDP_REPLY,
		.wall_clock = cfg->wall_clock ? cfg->wall_clock : clock_realtime_us,
		.clock_arg = cfg->clock_arg,
	};
	memcpy(k->ups, cfg->upstreams, cfg->nupstreams * sizeof(k->ups[0]));
	return k;
}

void fe_krb_free(struct fe_krb *k)
{
	if (!k)
		return;
	while (k->live) {
		struct krb_query *q = k->live;
		if (q->sess)
			sess_set_user(q->sess, NULL);
		query_free(q);
	}
	while (k->free_q) {
		struct krb_query *q = k->free_q;
		k->free_q = q->next;
		free(q->req);
		free(q->in);
		free(q);
	}
	free(k);
}

void fe_krb_get_stats(const struct fe_krb *k, struct fe_krb_stats *out)
{
	*out = k->st;
}

bool fe_krb_waiting(const struct fe_krb *k, int fd, const struct sockaddr *upstream)
{
	return find_waiting(k, fd, upstream) != NULL;
}
