/*
 * loop_epoll: the epoll backend of the event loop; see include/berth/loop.h.
 * Level-triggered, so a handler that leaves data unread is simply called
 * again on the next iteration.
 */
#include "berth/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct epoll_state {
	int epfd;
	int cap;                    /* entries in evs */
	struct epoll_event *evs;
};

static int epoll_create_state(void **state, void *arg)
{
	(void)arg;
	struct epoll_state *s = calloc(1, sizeof(*s));
	int rc;
	if (!s)
		return -ENOMEM;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		rc = -errno;
		goto fail;
	}
	*state = s;
	return 0;
fail:
	free(s);
	return rc;
}

static uint32_t to_epoll(unsigned interest)
{
	return (interest & LOOP_READ ? EPOLLIN : 0u) |
	       (interest & LOOP_WRITE ? EPOLLOUT : 0u);
}

static int ctl(struct epoll_state *s, int op, int fd, unsigned interest,
	       uint64_t data)
{
	struct epoll_event ev = { .events = to_epoll(interest), .data.u64 = data };
	return epoll_ctl(s->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int epoll_add(void *state, int fd, unsigned interest, uint64_t data)
{
	return ctl(state, EPOLL_CTL_ADD, fd, interest, data);
}

static int epoll_mod(void *state, int fd, unsigned interest, uint64_t data)
{
	return ctl(state, EPOLL_CTL_MOD, fd, interest, data);
}

static int epoll_del(void *state, int fd)
{
	return ctl(state, EPOLL_CTL_DEL, fd, 0, 0);
}

static int epoll_poll(void *state, struct loop_event *out, int max,
		      int timeout_ms)
{
	struct epoll_state *s = state;
	if (s->cap < max) {
		struct epoll_event *grown = realloc(s->evs, (size_t)max * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		s->evs = grown;
		s->cap = max;
	}
	int n = epoll_wait(s->epfd, s->evs, max, timeout_ms);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		uint32_t e = s->evs[i].events;
		out[i] = (struct loop_event){
			.data = s->evs[i].data.u64,
			.events = (e & EPOLLIN ? LOOP_READ : 0u) |
				  (e & EPOLLOUT ? LOOP_WRITE : 0u) |
				  (e & (EPOLLERR | EPOLLHUP) ? LOOP_HUP : 0u),
		};
	}
	return n;
}

static void epoll_free_state(void *state)
{
	struct epoll_state *s = state;
	if (!s)
		return;
	close(s->epfd);
	free(s->evs);
	free(s);
}

const struct loop_backend loop_backend_epoll = {
	.name = "epoll",
	.create = epoll_create_state,
	.add = epoll_add,
	.mod = epoll_mod,
	.del = epoll_del,
	.poll = epoll_poll,
	.free = epoll_free_state,
};
