/*
 * krb_tcp: the relay's exchanges with an upstream KDC over TCP: a fresh
 * nonblocking connection per request, the framed request written, the
 * framed reply read (RFC 4120 7.2.2) and handed to the client.  Used for
 * requests from TCP clients and for the RESPONSE_TOO_BIG retry of a UDP
 * request.  See kerberos.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frontend/kerberos_int.h"

/* First size of the buffer a TCP reply is read into. */
#define TCP_IN_FIRST 4096u

/* A complete framed reply (len bytes, prefix included) came over TCP. */
static void tcp_reply(struct krb_query *q, const uint8_t *framed, size_t len)
{
	struct fe_krb *k = q->k;
	size_t body = len - 4;
	if (!q->sess && body > k->max_udp_reply) {
		krb_end_exchange(q);
		krb_relay_too_big(q);
		return;
	}
	k->st.replies++;
	krb_answer(q, framed + 4, body, framed);
	krb_query_finish(q);
}

/* Read what the upstream sent; a complete frame ends the exchange. */
static void tcp_read(struct krb_query *q)
{
	struct fe_krb *k = q->k;
	for (;;) {
		size_t mlen = 0;
		enum sess_frame f = sess_frame_len32(q->in, q->inlen, k->max_msg, &mlen);
		if (f == SESS_FRAME_COMPLETE) {
			int type = fe_krb_msg_type(q->in + 4, mlen - 4);
			if ((type != FE_KRB_AS_REP && type != FE_KRB_TGS_REP &&
			     type != FE_KRB_ERROR) || !krb_reply_fits(q, type)) {
				k->st.malformed++;
				krb_upstream_failed(q);
			} else {
				tcp_reply(q, q->in, mlen);
			}
			return;
		}
		if (f != SESS_FRAME_NEED_MORE) {
			k->st.malformed++;
			krb_upstream_failed(q);
			return;
		}
		if (q->inlen == q->incap) {
			size_t n = q->incap ? q->incap * 2 : TCP_IN_FIRST;
			if (n > k->max_msg + 4)
				n = k->max_msg + 4;
			uint8_t *grown = realloc(q->in, n);
			if (!grown) {
				krb_upstream_failed(q);
				return;
			}
			q->in = grown;
			q->incap = n;
		}
		ssize_t r = recv(q->tfd, q->in + q->inlen, q->incap - q->inlen, 0);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (r <= 0) {
			krb_upstream_failed(q);
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
			krb_upstream_failed(q);
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
			krb_upstream_failed(q);
			return;
		}
		q->sent += (size_t)n;
		if (q->sent == total && loop_watch_set(loop, &q->w, LOOP_READ) < 0) {
			krb_upstream_failed(q);
			return;
		}
	}
	tcp_read(q);
}

/* Open a connection to the current upstream and send the request on it. */
int krb_tcp_start(struct krb_query *q)
{
	const struct fe_krb_upstream *u = &q->k->ups[q->up];
	/*
	 * The source port comes from the plan, like the UDP exchanges'.
	 * Without a [pool] there is no plan to draw from: the kernel picks.
	 */
	const struct sockaddr *to = (const struct sockaddr *)&u->sa;
	int fd;
	if (q->k->pool) {
		fd = pool_connect_tcp(q->k->pool, to, u->len, NULL);
		if (fd < 0)
			return fd;
	} else {
		fd = socket(u->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, to, u->len) < 0 && errno != EINPROGRESS) {
			int rc = -errno;
			close(fd);
			return rc;
		}
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

/* True when the KDC has closed its side and sent nothing berth left unread. */
static bool kdc_closed(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0;
}

/*
 * Close the connection to the KDC without leaving berth a TIME_WAIT entry.
 * The side that sends the first FIN keeps the connection in TIME_WAIT for a
 * minute, and with it the (pool port, KDC) pair; closing first after every
 * reply would leave one per request, and a steady TCP load on one KDC would
 * run out of pairs.  MIT's KDC closes right after its reply, so its FIN is
 * usually in by now and a plain close leaves the TIME_WAIT with the KDC, as
 * the protocol means it to.  When it is not (a KDC that keeps connections
 * open, a reply read before the FIN came, an exchange given up), the close
 * is an abort (RST), which leaves none on either side: berth has read all
 * it wants from this connection.
 */
void krb_tcp_end(struct krb_query *q)
{
	if (q->tfd < 0)
		return;
	loop_watch_stop(q->k->loop, &q->w);
	if (!kdc_closed(q->tfd)) {
		struct linger rst = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(q->tfd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	}
	close(q->tfd);
	q->tfd = -1;
}
