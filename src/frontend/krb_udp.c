/*
 * krb_udp: the relay's exchanges with upstream KDCs over the socket pool:
 * the table of queries waiting on pool sockets, the late table of (socket,
 * upstream) pairs whose exchange ended without a reply, sending a request
 * from a socket with neither for the same upstream, and matching the
 * datagrams that come back by (pool socket, upstream).  See kerberos.h.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frontend/kerberos_int.h"

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
	return &k->fdtab[(unsigned)fd % KRB_FD_BUCKETS];
}

static struct krb_query *find_waiting(const struct fe_krb *k, int fd,
				      const struct sockaddr *from)
{
	for (struct krb_query *q = k->fdtab[(unsigned)fd % KRB_FD_BUCKETS]; q;
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

/* --- the late table --- */

/*
 * A (pool socket, upstream) pair whose exchange ended without its reply.
 * The upstream may still answer on that socket; until it does, or until the
 * upstream timeout has passed once more, no other query to that upstream
 * may go out on the socket, or the late answer would be taken for its own.
 * The record holds the exchange's pool handle meanwhile, so the socket is
 * neither closed nor re-bound under it.
 */
struct krb_late {
	struct fe_krb *k;
	struct krb_late *next;      /* chain of its fd bucket */
	struct pool_handle h;
	size_t up;                  /* index of the upstream */
	struct wheel_timer timer;   /* end of the grace period */
};

static struct krb_late *find_late(const struct fe_krb *k, int fd,
				  const struct sockaddr *from)
{
	for (struct krb_late *l = k->latetab[(unsigned)fd % KRB_FD_BUCKETS]; l;
	     l = l->next)
		if (l->h.fd == fd &&
		    sa_equal((const struct sockaddr *)&k->ups[l->up].sa, from))
			return l;
	return NULL;
}

/* Take l off the table, give its socket back to the pool and free it. */
static void late_free(struct krb_late *l)
{
	struct fe_krb *k = l->k;
	for (struct krb_late **pp = &k->latetab[(unsigned)l->h.fd % KRB_FD_BUCKETS];
	     *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	loop_timer_stop(k->loop, &l->timer);
	pool_done(k->pool, &l->h);
	free(l);
}

static void on_late_expired(struct wheel_timer *t, void *ctx)
{
	(void)ctx;
	late_free(wheel_container_of(t, struct krb_late, timer));
}

/* How long a (pool socket, upstream) pair stays reserved after an exchange
 * with upstream timeout timeout_ms ended without its reply. */
static uint64_t late_ms(uint64_t timeout_ms)
{
	return timeout_ms > FE_KRB_LATE_MIN_MS ? timeout_ms : FE_KRB_LATE_MIN_MS;
}

uint64_t fe_krb_pool_hold_ms(uint64_t upstream_timeout_ms)
{
	uint64_t t = upstream_timeout_ms ? upstream_timeout_ms
					 : FE_KRB_DEFAULT_TIMEOUT_MS;
	return t + late_ms(t);
}

/*
 * Reserve (h's socket, upstream up) for late_ms(), taking over the handle
 * h.  False, with h still the caller's, when there is no memory.
 */
static bool late_keep(struct fe_krb *k, const struct pool_handle *h, size_t up)
{
	struct krb_late *l = malloc(sizeof(*l));
	if (!l)
		return false;
	struct krb_late **head = &k->latetab[(unsigned)h->fd % KRB_FD_BUCKETS];
	*l = (struct krb_late){ .k = k, .next = *head, .h = *h, .up = up };
	*head = l;
	wheel_timer_init(&l->timer, on_late_expired);
	loop_timer_start_in(k->loop, &l->timer, late_ms(k->timeout_ms));
	return true;
}

void krb_udp_free_late(struct fe_krb *k)
{
	for (size_t i = 0; i < KRB_FD_BUCKETS; i++)
		while (k->latetab[i])
			late_free(k->latetab[i]);
}

/* --- exchanges --- */

/*
 * Send the request from a pool socket that has no query waiting for this
 * upstream and no late answer of it due, so the reply can be told apart by
 * (socket, upstream) alone.
 */
int krb_udp_start(struct krb_query *q)
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
		if (find_waiting(k, h.fd, (const struct sockaddr *)&u->sa) ||
		    find_late(k, h.fd, (const struct sockaddr *)&u->sa)) {
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

/* q's reply came: nothing more is due on its (socket, upstream) pair. */
static void udp_answered(struct krb_query *q)
{
	unhash(q);
	pool_done(q->k->pool, &q->h);
	q->waiting_udp = false;
}

void krb_udp_end(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	if (!q->waiting_udp)
		return;
	unhash(q);
	if (k->closing || !late_keep(k, &q->h, q->up))
		pool_done(k->pool, &q->h);
	q->waiting_udp = false;
}

/* --- replies --- */

/* A datagram from the upstream that q waits for on its pool socket: q's
 * reply, or something q keeps waiting past (counted). */
static void waiting_reply(struct krb_query *q, const uint8_t *msg, size_t len)
{
	struct fe_krb *k = q->k;
	int type = fe_krb_msg_type(msg, len);
	if (type != FE_KRB_AS_REP && type != FE_KRB_TGS_REP && type != FE_KRB_ERROR) {
		/* Not a KDC reply: keep waiting for the real one. */
		k->st.malformed++;
		return;
	}
	if (!krb_reply_fits(q, type)) {
		/* A KDC reply, but not to this request (a reply to an earlier
		 * client's, later than its reservation): keep waiting. */
		k->st.unmatched++;
		return;
	}
	udp_answered(q);
	krb_end_exchange(q);
	int32_t code;
	if (type == FE_KRB_ERROR && fe_krb_error_code(msg, len, &code) &&
	    code == FE_KRB_ERR_RESPONSE_TOO_BIG) {
		k->st.too_big_retries++;
		q->too_big = malloc(len);
		if (!q->too_big) {
			k->st.dropped++;
			krb_query_finish(q);
			return;
		}
		memcpy(q->too_big, msg, len);
		q->too_big_len = len;
		if (krb_tcp_start(q) < 0) {
			k->st.upstream_failures++;
			krb_relay_too_big(q);
			return;
		}
		loop_timer_start_in(k->loop, &q->timer, k->timeout_ms);
		return;
	}
	k->st.replies++;
	krb_answer(q, msg, len, NULL);
	krb_query_finish(q);
}

bool fe_krb_pool_reply(struct fe_krb *k, int fd, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len)
{
	(void)fromlen;
	struct krb_query *q = find_waiting(k, fd, from);
	if (!q) {
		struct krb_late *l = find_late(k, fd, from);
		if (l) {
			/* The answer to a query that gave this upstream up. */
			k->st.late_replies++;
			late_free(l);
			return true;
		}
		for (size_t i = 0; i < k->nups; i++)
			if (sa_equal((const struct sockaddr *)&k->ups[i].sa, from)) {
				k->st.unmatched++;
				return true;
			}
		return false;
	}
	waiting_reply(q, msg, len);
	return true;
}

bool fe_krb_take_reply(struct fe_krb *k, int fd, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len)
{
	(void)fromlen;
	struct krb_query *q = find_waiting(k, fd, from);
	if (!q)
		return false;
	waiting_reply(q, msg, len);
	return true;
}

bool fe_krb_waiting(const struct fe_krb *k, int fd, const struct sockaddr *upstream)
{
	return find_waiting(k, fd, upstream) != NULL;
}
