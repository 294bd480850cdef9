/*
 * kerberos: the relay between Kerberos clients and upstream KDCs: queries
 * from arrival to answer, failover between upstreams, the error reply and
 * the service's life cycle.  The exchanges themselves are in krb_udp.c
 * (over the pool, with reply matching) and krb_tcp.c.  See kerberos.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/kerberos_int.h"

/* Query objects kept for reuse instead of being freed. */
#define FREE_KEEP 256u

static void try_upstream(struct krb_query *q);
static void on_timeout(struct wheel_timer *t, void *ctx);

static uint64_t clock_realtime_us(void *arg)
{
	struct timespec ts;
	(void)arg;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The 4-byte length prefix of a Kerberos TCP message (RFC 4120 7.2.2). */
static void put_len32(uint8_t *p, size_t len)
{
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
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
	put_len32(q->req, len);
	memcpy(q->req + 4, body, len);
	wheel_timer_init(&q->timer, on_timeout);
	if (k->live)
		k->live->prev = q;
	k->live = q;
	k->st.outstanding++;
	return q;
}

/* Stop whatever exchange q has with an upstream: timer, pool socket, TCP. */
void krb_end_exchange(struct krb_query *q)
{
	loop_timer_stop(q->k->loop, &q->timer);
	krb_udp_end(q);
	krb_tcp_end(q);
}

/* Forget q (its client is answered or gone) and keep the object for reuse. */
static void query_free(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	krb_end_exchange(q);
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
void krb_query_finish(struct krb_query *q)
{
	struct sess *s = q->sess;
	struct krb_query *next = q->sess_next;
	bool last = q->last;
	query_free(q);
	if (!s)
		return;
	sess_set_user(s, next);
	if (last) {
		/* Its answer is queued: it goes out before the FIN. */
		sess_close(s, SESS_CLOSE_SERVICE);
		return;
	}
	if (next) {
		next->started = true;
		try_upstream(next);
	}
}

bool krb_reply_fits(const struct krb_query *q, int type)
{
	if (type == FE_KRB_ERROR)
		return true;
	int req = fe_krb_msg_type(q->req + 4, q->reqlen);
	return (req == FE_KRB_AS_REQ && type == FE_KRB_AS_REP) ||
	       (req == FE_KRB_TGS_REQ && type == FE_KRB_TGS_REP);
}

/* --- answers to the client --- */

/* Send body (len bytes, no prefix) to q's client: a datagram or a frame. */
void krb_answer(struct krb_query *q, const uint8_t *body, size_t len,
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
			put_len32(buf, len);
			memcpy(buf + 4, body, len);
			sess_send(q->sess, buf, len + 4);
			free(buf);
		}
	} else {
		sess_udp_send(q->ul, &q->peer, body, len);
	}
}

/*
 * Every upstream failed: answer KDC_ERR_SVC_UNAVAILABLE with the request's
 * realm and sname, or with an empty realm and sname when its body cannot be
 * read that far.
 */
static void answer_error(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	struct fe_krb_req_names found;
	const struct fe_krb_req_names *names = NULL;
	size_t cap = 256;
	if (fe_krb_req_names(q->req + 4, q->reqlen, &found)) {
		names = &found;
		cap += found.realm_len + found.sname_len;
	}
	uint8_t *buf = malloc(cap);
	size_t n = 0;
	if (buf) {
		uint64_t now = k->wall_clock(k->clock_arg);
		n = fe_krb_error_encode(FE_KRB_ERR_SVC_UNAVAILABLE, now, names, buf, cap);
		if (!n && names)
			n = fe_krb_error_encode(FE_KRB_ERR_SVC_UNAVAILABLE, now, NULL, buf, cap);
	}
	if (n) {
		k->st.errors_sent++;
		krb_answer(q, buf, n, NULL);
	} else {
		k->st.dropped++;
		if (q->sess)
			sess_close(q->sess, SESS_CLOSE_IO_ERROR);
	}
	free(buf);
	krb_query_finish(q);
}

/* The too-big retry over TCP did not work out: relay the upstream's error. */
void krb_relay_too_big(struct krb_query *q)
{
	q->k->st.too_big_relayed++;
	krb_answer(q, q->too_big, q->too_big_len, NULL);
	krb_query_finish(q);
}

/* The current upstream failed (timeout counted by the caller): move on. */
static void upstream_gave_up(struct krb_query *q)
{
	krb_end_exchange(q);
	if (q->too_big) {
		krb_relay_too_big(q);
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

void krb_upstream_failed(struct krb_query *q)
{
	q->k->st.upstream_failures++;
	upstream_gave_up(q);
}

/* Ask upstreams from q->up on until one takes the request; error at the end. */
static void try_upstream(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	while (q->up < k->nups) {
		int rc = q->sess ? krb_tcp_start(q) : krb_udp_start(q);
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

void fe_krb_udp_request(struct fe_krb *k, struct sess_listener *l,
			const struct sess_udp_peer *peer, const uint8_t *msg,
			size_t len)
{
	k->st.requests_udp++;
	if (!fe_krb_req_valid(msg, len)) {
		k->st.malformed++;
		return;
	}
	struct krb_query *q = query_new(k, msg, len);
	if (!q) {
		k->st.dropped++;
		return;
	}
	q->ul = l;
	q->peer = *peer;
	q->started = true;
	try_upstream(q);
}

void fe_krb_tcp_request(struct fe_krb *k, struct sess *s, const uint8_t *msg,
			size_t len)
{
	k->st.requests_tcp++;
	if (len < 4 || !fe_krb_req_valid(msg + 4, len - 4)) {
		k->st.malformed++;
		sess_close(s, SESS_CLOSE_MALFORMED);
		return;
	}
	struct krb_query *head = sess_user(s), *tail = head;
	size_t waiting = 0;
	for (; tail && tail->sess_next; tail = tail->sess_next)
		waiting++;
	/* One more than the queue takes: the requests already taken are still
	 * answered, then the session closes; this one and any later are
	 * dropped. */
	if (tail && (tail->last || waiting >= FE_KRB_MAX_QUEUED)) {
		k->st.dropped++;
		tail->last = true;
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

static void cb_datagram(struct sess_listener *l, const struct sess_udp_peer *peer,
			const uint8_t *msg, size_t len, void *arg)
{
	fe_krb_udp_request(arg, l, peer, msg, len);
}

/*
 * A length prefix with its reserved high bit set, or longer than berthd
 * takes: RFC 4120 7.2.2 wants KRB_ERR_FIELD_TOOLONG, then the close (which
 * the engine does, flushing this first).  No request to take a realm or
 * sname from: both go empty.
 */
static void cb_frame_error(struct sess *s, enum sess_close_reason why, void *arg)
{
	(void)why;
	struct fe_krb *k = arg;
	uint8_t buf[4 + 256];
	size_t n = fe_krb_error_encode(FE_KRB_ERR_FIELD_TOOLONG,
				       k->wall_clock(k->clock_arg), NULL, buf + 4,
				       sizeof(buf) - 4);
	if (!n)
		return;
	put_len32(buf, n);
	k->st.errors_sent++;
	sess_send(s, buf, n + 4);
}

void fe_krb_service(struct fe_krb *k, const char *name, struct sess_service *out)
{
	*out = (struct sess_service){
		.name = name,
		.frame = sess_frame_len32,
		.max_msg = k->max_msg,
		.on_request = cb_request,
		.on_close = cb_close,
		.on_frame_error = cb_frame_error,
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
	k->closing = true;
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
	krb_udp_free_late(k);
	free(k);
}

void fe_krb_get_stats(const struct fe_krb *k, struct fe_krb_stats *out)
{
	*out = k->st;
}
