/*
 * session_udp: the datagram side of a listener: recvmmsg in batches into
 * buffers allocated once, the guard on every source, and replies with
 * sess_udp_send(); see include/berth/session.h.
 */
#include "session_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Batches per readiness event, so one flood cannot starve other sockets. */
#define UDP_BATCHES_PER_EVENT 4

int sess_udp_setup(struct sess_listener *l)
{
	/* One byte more than max_msg shows an oversized datagram as MSG_TRUNC. */
	size_t each = l->svc.max_msg + 1;
	if (each > 65536)
		each = 65536;
	l->ubuf_each = each;
	l->ubuf = malloc(each * SESS_UDP_BATCH);
	l->umsg = calloc(SESS_UDP_BATCH, sizeof(*l->umsg));
	l->uiov = calloc(SESS_UDP_BATCH, sizeof(*l->uiov));
	l->ufrom = calloc(SESS_UDP_BATCH, sizeof(*l->ufrom));
	l->uctl = calloc(SESS_UDP_BATCH, sizeof(*l->uctl));
	if (!l->ubuf || !l->umsg || !l->uiov || !l->ufrom || !l->uctl)
		return -ENOMEM;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(l->fd, (struct sockaddr *)&bound, &blen) < 0)
		return -errno;
	l->ufamily = bound.ss_family;
	int rc = sess_local_enable(l->fd, (struct sockaddr *)&bound);
	if (rc < 0)
		return rc;
	l->ulocal = rc == 1;
	return 0;
}

int sess_local_enable(int fd, const struct sockaddr *addr)
{
	int one = 1, rc;
	if (addr->sa_family == AF_INET) {
		if (((const struct sockaddr_in *)addr)->sin_addr.s_addr != htonl(INADDR_ANY))
			return 0;
		rc = setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	} else if (addr->sa_family == AF_INET6) {
		if (!IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr))
			return 0;
		rc = setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	} else {
		return 0;
	}
	return rc < 0 ? -errno : 1;
}

void sess_local_take(const struct msghdr *h, int family, struct sess_local *out)
{
	out->set = false;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm;
	     cm = CMSG_NXTHDR((struct msghdr *)h, cm)) {
		if (family == AF_INET && cm->cmsg_level == IPPROTO_IP &&
		    cm->cmsg_type == IP_PKTINFO) {
			memcpy(&out->u.in, CMSG_DATA(cm), sizeof(out->u.in));
			out->set = true;
		} else if (family == AF_INET6 && cm->cmsg_level == IPPROTO_IPV6 &&
			   cm->cmsg_type == IPV6_PKTINFO) {
			memcpy(&out->u.in6, CMSG_DATA(cm), sizeof(out->u.in6));
			out->set = true;
		}
	}
}

void sess_local_put(const struct sess_local *local, int family,
		    union sess_cmsg *ctl, struct msghdr *h)
{
	h->msg_control = NULL;
	h->msg_controllen = 0;
	if (!local->set)
		return;
	memset(ctl, 0, sizeof(*ctl));
	struct cmsghdr *cm = &ctl->h;
	/* The source address only; the interface (index 0) is left to
	 * routing, which may send a reply out another one than the query
	 * came in on.  A link-local peer's scope picks its interface. */
	if (family == AF_INET) {
		/* The kernel's ipi_spec_dst: the local address the datagram
		 * reached (an interface's own one for a broadcast). */
		struct in_pktinfo pi = { .ipi_spec_dst = local->u.in.ipi_spec_dst };
		if (pi.ipi_spec_dst.s_addr == htonl(INADDR_ANY))
			pi.ipi_spec_dst = local->u.in.ipi_addr;
		cm->cmsg_level = IPPROTO_IP;
		cm->cmsg_type = IP_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		h->msg_controllen = CMSG_SPACE(sizeof(pi));
	} else {
		struct in6_pktinfo pi = { .ipi6_addr = local->u.in6.ipi6_addr };
		cm->cmsg_level = IPPROTO_IPV6;
		cm->cmsg_type = IPV6_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		h->msg_controllen = CMSG_SPACE(sizeof(pi));
	}
	h->msg_control = ctl;
}

void sess_udp_free(struct sess_listener *l)
{
	free(l->ubuf);
	free(l->umsg);
	free(l->uiov);
	free(l->ufrom);
	free(l->uctl);
	l->uctl = NULL;
	l->ubuf = NULL;
	l->umsg = NULL;
	l->uiov = NULL;
	l->ufrom = NULL;
}

/* recvmmsg overwrites the lengths: reset the batch before each call. */
static void udp_reset_batch(struct sess_listener *l)
{
	for (unsigned i = 0; i < SESS_UDP_BATCH; i++) {
		l->uiov[i] = (struct iovec){
			.iov_base = l->ubuf + i * l->ubuf_each,
			.iov_len = l->ubuf_each,
		};
		l->umsg[i] = (struct mmsghdr){
			.msg_hdr = {
				.msg_name = &l->ufrom[i],
				.msg_namelen = sizeof(l->ufrom[i]),
				.msg_iov = &l->uiov[i],
				.msg_iovlen = 1,
				.msg_control = l->ulocal ? &l->uctl[i] : NULL,
				.msg_controllen = l->ulocal ? sizeof(l->uctl[i]) : 0,
			},
		};
	}
}

/* Hand one received datagram to the service, unless it must be dropped. */
static void udp_one(struct sess_listener *l, const struct mmsghdr *m)
{
	const struct sockaddr *from = m->msg_hdr.msg_name;
	if (l->guard && guard_drop_sockaddr(l->guard, from)) {
		l->st.guard_drops++;
		l->st.datagrams_dropped++;
		return;
	}
	if ((m->msg_hdr.msg_flags & MSG_TRUNC) || m->msg_len > l->svc.max_msg) {
		l->st.datagrams_dropped++;
		return;
	}
	l->st.datagrams_in++;
	struct sess_udp_peer peer = { .len = m->msg_hdr.msg_namelen };
	if (peer.len > sizeof(peer.addr))
		peer.len = sizeof(peer.addr);
	memcpy(&peer.addr, from, peer.len);
	if (l->ulocal)
		sess_local_take(&m->msg_hdr, l->ufamily, &peer.local);
	l->svc.on_datagram(l, &peer, m->msg_hdr.msg_iov->iov_base, m->msg_len,
			   l->svc.arg);
}

void sess_udp_on_read(struct loop *loop, struct loop_watch *w, unsigned events)
{
	(void)loop;
	(void)events;
	struct sess_listener *l = wheel_container_of(w, struct sess_listener,
						     watch);
	for (int b = 0; b < UDP_BATCHES_PER_EVENT; b++) {
		udp_reset_batch(l);
		int n = recvmmsg(l->fd, l->umsg, SESS_UDP_BATCH, MSG_DONTWAIT,
				 NULL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* EAGAIN, or an error the next read shows */
		for (int i = 0; i < n; i++)
			udp_one(l, &l->umsg[i]);
		if ((unsigned)n < SESS_UDP_BATCH)
			return;
	}
}

int sess_udp_send(struct sess_listener *l, const struct sess_udp_peer *peer,
		  const uint8_t *data, size_t len)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr h = {
		.msg_name = (void *)&peer->addr, .msg_namelen = peer->len,
		.msg_iov = &iov, .msg_iovlen = 1,
	};
	union sess_cmsg ctl;
	sess_local_put(&peer->local, peer->addr.ss_family, &ctl, &h);
	for (;;) {
		ssize_t n = sendmsg(l->fd, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0) {
			l->st.datagrams_out++;
			return 0;
		}
		if (errno != EINTR)
			return -errno;
	}
}
