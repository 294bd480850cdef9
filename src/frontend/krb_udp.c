/*
 * krb_udp: the relay's exchanges with upstream KDCs over the socket pool:
 * the table of queries waiting on pool sockets, sending a request from a
 * socket with no query waiting for the same upstream, and matching the
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

/* --- exchanges --- */

/*
 * Send the request from a pool socket that has no query waiting for this
 * upstream, so the reply can be told apart by (socket, upstream) alone.
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

void krb_udp_end(struct krb_query *q)
{
	if (!q->waiting_udp)
		return;
	unhash(q);
	pool_done(q->k->pool, &q->h);
	q->waiting_udp = false;
}

/* --- replies --- */

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
	krb_end_exchange(q);
	int32_t code;
	if (type == FE_KRB_ERROR && fe_krb_error_code(msg, len, &code) &&
	    code == FE_KRB_ERR_RESPONSE_TOO_BIG) {
		k->st.too_big_retries++;
		q->too_big = malloc(len);
		if (!q->too_big) {
			k->st.dropped++;
			krb_query_finish(q);
			return true;
		}
		memcpy(q->too_big, msg, len);
		q->too_big_len = len;
		if (krb_tcp_start(q) < 0) {
			k->st.upstream_failures++;
			krb_relay_too_big(q);
			return true;
		}
		loop_timer_start_in(k->loop, &q->timer, k->timeout_ms);
		return true;
	}
	k->st.replies++;
	krb_answer(q, msg, len, NULL);
	krb_query_finish(q);
	return true;
}

bool fe_krb_waiting(const struct fe_krb *k, int fd, const struct sockaddr *upstream)
{
	return find_waiting(k, fd, upstream) != NULL;
}
