/*
 * dns/forwarder: UDP listen sockets, the intake of client queries (guard,
 * validation, local answers) and the answers sent back to UDP clients.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/forwarder_int.h"
#include "dns/hosts.h"

/* Send queue entries [from, to), all on listener idx, with sendmmsg. */
static void send_run(struct dns_fwd *f, unsigned idx, unsigned from, unsigned to)
{
	struct fwd_txq *t = &f->txq;
	int fd = f->listen[idx].fd;
	while (from < to) {
		int n = sendmmsg(fd, &t->mm[from], to - from, MSG_DONTWAIT);
		if (n <= 0) {
			/* The entry at from failed: count it, go on with the rest. */
			f->st.send_errors++;
			from++;
			continue;
		}
		for (int i = 0; i < n; i++)
			fwd_count_answer(f, t->rcode[from + (unsigned)i]);
		from += (unsigned)n;
	}
}

void fwd_udp_flush(struct dns_fwd *f)
{
	struct fwd_txq *t = &f->txq;
	unsigned start = 0;
	for (unsigned i = 1; i <= t->n; i++) {
		if (i == t->n || t->idx[i] != t->idx[start]) {
			send_run(f, t->idx[start], start, i);
			start = i;
		}
	}
	t->n = 0;
}

/* Fill h to send to c, from the address its query was sent to. */
static void client_msghdr(const struct fwd_client *c, union fwd_sockaddr *to,
			  union sess_cmsg *ctl, struct msghdr *h)
{
	*to = c->addr;
	h->msg_name = to;
	h->msg_namelen = c->len;
	sess_local_put(&c->local, c->addr.sa.sa_family, ctl, h);
}

void fwd_udp_send(struct dns_fwd *f, const struct fwd_client *c,
		  const uint8_t *msg, size_t len, unsigned rcode)
{
	struct fwd_txq *t = &f->txq;
	if (c->listen_idx >= f->nlisten || c->len > sizeof(t->to[0])) {
		f->st.send_errors++;
		return;
	}
	if (len > FWD_TX_BUF) {
		union fwd_sockaddr to;
		union sess_cmsg ctl;
		struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
		struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1 };
		client_msghdr(c, &to, &ctl, &h);
		if (sendmsg(f->listen[c->listen_idx].fd, &h, MSG_DONTWAIT) < 0)
			f->st.send_errors++;
		else
			fwd_count_answer(f, rcode);
		return;
	}
	if (t->n == FWD_TX_BATCH)
		fwd_udp_flush(f);
	unsigned i = t->n++;
	t->idx[i] = c->listen_idx;
	t->rcode[i] = (uint16_t)rcode;
	memcpy(t->buf[i], msg, len);
	t->iov[i] = (struct iovec){ .iov_base = t->buf[i], .iov_len = len };
	t->mm[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &t->iov[i], .msg_iovlen = 1 } };
	client_msghdr(c, &t->to[i], &t->ctl[i], &t->mm[i].msg_hdr);
}

void fwd_udp_error(struct dns_fwd *f, const struct fwd_client *c,
		   const struct dns_msg *q, unsigned rcode)
{
	uint8_t out[DNS_FWD_QUERY_MAX + 64];
	ssize_t n = dns_build_error(out, sizeof(out), q, rcode, DNS_FWD_EDNS_SIZE);
	if (n > 0)
		fwd_udp_send(f, c, out, (size_t)n, rcode);
}

/* The client c's query, len octets at msg; cut says the datagram was longer
 * than the receive buffer (msg holds its start). */
static void udp_query(struct dns_fwd *f, const struct fwd_client *c,
		      const uint8_t *msg, size_t len, bool cut)
{
	if (guard_drop_sockaddr(f->guard, &c->addr.sa))
		return;
	f->st.queries_udp++;
	/* A response must never be answered, or two servers could bounce
	 * errors at each other forever. */
	if (len >= DNS_HEADER_LEN && (msg[2] & 0x80)) {
		f->st.responses_on_listen++;
		return;
	}
	struct dns_msg q;
	int rc = dns_parse_query(&q, msg, len);
	if (cut) {
		/* Longer than any query berthd forwards: its start has the
		 * header, which is all a REFUSED needs. */
		if (!q.header_ok) {
			f->st.garbage++;
			return;
		}
		f->st.refused++;
		fwd_udp_error(f, c, &q, DNS_RCODE_REFUSED);
		return;
	}
	if (rc != DNS_OK) {
		if (q.header_ok && len <= DNS_MSG_MAX) {
			fwd_udp_error(f, c, &q, fwd_malformed(f, &q));
		} else {
			f->st.garbage++;
		}
		return;
	}
	unsigned rcode = fwd_screen(f, &q);
	if (rcode) {
		fwd_udp_error(f, c, &q, rcode);
		return;
	}
	uint16_t limit = dns_udp_limit(&q);
	ssize_t n = dns_hosts_answer(f->hosts, &q, f->tx, limit, DNS_FWD_EDNS_SIZE);
	if (n > 0) {
		/* NOERROR or NXDOMAIN: the table's OPT has no RCODE bits. */
		unsigned local_rcode = dns_flags_rcode(dns_get_flags(f->tx));
		f->st.local_answers++;
		fwd_udp_send(f, c, f->tx, (size_t)n, local_rcode);
		return;
	}
	if (len > DNS_FWD_QUERY_MAX) {
		f->st.refused++;
		fwd_udp_error(f, c, &q, DNS_RCODE_REFUSED);
		return;
	}
	if (f->nup == 0) {
		f->st.servfails++;
		fwd_udp_error(f, c, &q, DNS_RCODE_SERVFAIL);
		return;
	}
	if (!fwd_start(f, c, &q, NULL)) {
		/* Table full: an answer now, never silence. */
		f->st.servfails++;
		fwd_udp_error(f, c, &q, DNS_RCODE_SERVFAIL);
	}
}

void dns_fwd_udp_query(struct dns_fwd *f, int idx, const struct sockaddr *from,
		       socklen_t fromlen, const uint8_t *msg, size_t len)
{
	struct fwd_client c = { .listen_idx = (uint8_t)idx };
	if (fromlen > sizeof(c.addr))
		return;
	memcpy(&c.addr, from, fromlen);
	c.len = fromlen;
	udp_query(f, &c, msg, len, false);
}

/*
 * Read the datagrams waiting on a listen socket, a batch at a time, at most
 * FWD_RX_ROUNDS batches: under a flood the rest waits for the next
 * iteration (the watch is level-triggered), so timers and other sockets are
 * never starved.
 */
static void on_listen_readable(struct loop *l, struct loop_watch *w,
			       unsigned events)
{
	(void)l, (void)events;
	struct fwd_listen *ls = wheel_container_of(w, struct fwd_listen, w);
	struct dns_fwd *f = ls->f;
	int idx = (int)(ls - f->listen);
	struct mmsghdr mm[FWD_RX_BATCH];
	struct iovec iov[FWD_RX_BATCH];
	union fwd_sockaddr from[FWD_RX_BATCH];
	union sess_cmsg ctl[FWD_RX_BATCH];

	for (unsigned round = 0; round < FWD_RX_ROUNDS; round++) {
		for (unsigned i = 0; i < FWD_RX_BATCH; i++) {
			iov[i] = (struct iovec){ .iov_base = f->rx[i],
						 .iov_len = FWD_RX_BUF };
			mm[i] = (struct mmsghdr){
				.msg_hdr = {
					.msg_name = &from[i],
					.msg_namelen = sizeof(from[i]),
					.msg_iov = &iov[i],
					.msg_iovlen = 1,
					.msg_control = ls->wildcard ? &ctl[i] : NULL,
					.msg_controllen = ls->wildcard ? sizeof(ctl[i]) : 0,
				},
			};
		}
		int n = recvmmsg(ls->fd, mm, FWD_RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			const struct msghdr *h = &mm[i].msg_hdr;
			struct fwd_client c = {
				.len = h->msg_namelen <= sizeof(c.addr) ? h->msg_namelen : 0,
				.listen_idx = (uint8_t)idx,
			};
			memcpy(&c.addr, &from[i], c.len);
			if (ls->wildcard)
				sess_local_take(h, c.addr.sa.sa_family, &c.local);
			udp_query(f, &c, f->rx[i], mm[i].msg_len,
				  (h->msg_flags & MSG_TRUNC) != 0);
		}
		if ((unsigned)n < FWD_RX_BATCH)
			return;
	}
}

int dns_fwd_listen_udp(struct dns_fwd *f, const struct sockaddr *addr,
		       socklen_t addrlen, char *err, size_t errlen)
{
	char text[INET6_ADDRSTRLEN + 8] = "?";
	int fd = -1, rc;
	struct fwd_listen *ls;

	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)addr;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(text, sizeof(text), "%s:%u", a, ntohs(in->sin_port));
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)addr;
		char a[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(text, sizeof(text), "[%s]:%u", a, ntohs(in6->sin6_port));
	}
	if (f->nlisten == DNS_FWD_MAX_LISTEN) {
		rc = -ENOSPC;
		goto fail;
	}
	fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	int one = 1;
	if (addr->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	rc = sess_local_enable(fd, addr);
	if (rc < 0)
		goto fail;
	bool wildcard = rc == 1;
	if (bind(fd, addr, addrlen) < 0) {
		rc = -errno;
		goto fail;
	}
	union fwd_sockaddr local;
	socklen_t llen = sizeof(local);
	if (getsockname(fd, &local.sa, &llen) < 0) {
		rc = -errno;
		goto fail;
	}
	ls = &f->listen[f->nlisten];
	*ls = (struct fwd_listen){
		.f = f,
		.fd = fd,
		.port = ntohs(local.sa.sa_family == AF_INET ? local.in.sin_port
							    : local.in6.sin6_port),
		.wildcard = wildcard,
	};
	loop_watch_init(&ls->w, fd, on_listen_readable);
	rc = loop_watch_set(f->loop, &ls->w, LOOP_READ);
	if (rc < 0)
		goto fail;
	return (int)f->nlisten++;
fail:
	if (errlen)
		snprintf(err, errlen, "%s/udp: %s", text, strerror(-rc));
	if (fd >= 0)
		close(fd);
	return rc;
}

uint16_t dns_fwd_udp_port(const struct dns_fwd *f, int idx)
{
	if (idx < 0 || (size_t)idx >= f->nlisten)
		return 0;
	return f->listen[idx].port;
}

void fwd_udp_close_all(struct dns_fwd *f)
{
	for (size_t i = 0; i < f->nlisten; i++) {
		loop_watch_stop(f->loop, &f->listen[i].w);
		close(f->listen[i].fd);
	}
	f->nlisten = 0;
}
