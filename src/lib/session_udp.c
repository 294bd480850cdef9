/*
 * session_udp: the datagram side of a listener: recvmmsg in batches into
 * buffers allocated once, the guard on every source, and replies with
 * sess_udp_send(); see include/berth/session.h.
 */
#include "session_int.h"

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
	if (!l->ubuf || !l->umsg || !l->uiov || !l->ufrom)
		return -ENOMEM;
	return 0;
}

void sess_udp_free(struct sess_listener *l)
{
	free(l->ubuf);
	free(l->umsg);
	free(l->uiov);
	free(l->ufrom);
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
	l->svc.on_datagram(l, from, m->msg_hdr.msg_namelen,
			   m->msg_hdr.msg_iov->iov_base, m->msg_len,
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

int sess_udp_send(struct sess_listener *l, const struct sockaddr *to,
		  socklen_t tolen, const uint8_t *data, size_t len)
{
	for (;;) {
		ssize_t n = sendto(l->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
				   to, tolen);
		if (n >= 0) {
			l->st.datagrams_out++;
			return 0;
		}
		if (errno != EINTR)
			return -errno;
	}
}
