/* loop: the event loop; see include/berth/loop.h. */
#include "berth/loop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

/* Which watcher holds an fd number, and under which registration. */
struct fd_slot {
	struct loop_watch *w;
	uint32_t gen;
};

struct sig_handler {
	loop_signal_cb *cb;
	void *arg;
};

struct flush_hook {
	loop_flush_cb *cb;
	void *arg;
};

struct loop {
	const struct loop_backend *be;
	void *be_state;
	struct loop_clock clock;
	uint64_t now;
	struct wheel *wheel;
	unsigned max_timers;
	bool stop;

	struct fd_slot *fds;
	size_t nfds;
	uint32_t next_gen;
	uint64_t stale_drops;

	struct loop_close *close_head;
	struct loop_close **close_tail;

	struct flush_hook flush[LOOP_MAX_FLUSH];
	unsigned nflush;

	int sigfd;
	struct loop_watch sigwatch;
	sigset_t sig_handled;    /* routed through the signalfd */
	sigset_t sig_blocked_by_us; /* to unblock again in loop_free() */
	struct sig_handler sig[NSIG];

	struct loop_event events[LOOP_MAX_EVENTS];
};

uint64_t loop_clock_monotonic(void *arg)
{
	(void)arg;
	struct timespec ts;
	/* CLOCK_MONOTONIC cannot fail with a valid timespec pointer. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t read_clock(struct loop *l)
{
	return l->clock.now_ms(l->clock.arg);
}

struct loop *loop_new(const struct loop_config *cfg)
{
	const struct loop_config defaults = { .backend = NULL };
	if (!cfg)
		cfg = &defaults;
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->be = cfg->backend ? cfg->backend : &loop_backend_epoll;
	l->clock = cfg->clock.now_ms ? cfg->clock
		   : (struct loop_clock){ .now_ms = loop_clock_monotonic,
					  .truncated = true };
	l->max_timers = cfg->max_timers_per_iter ? cfg->max_timers_per_iter
						 : LOOP_DEFAULT_MAX_TIMERS;
	l->close_tail = &l->close_head;
	l->sigfd = -1;
	sigemptyset(&l->sig_handled);
	sigemptyset(&l->sig_blocked_by_us);
	if (l->be->create(&l->be_state, cfg->backend_arg) < 0)
		goto fail;
	l->now = read_clock(l);
	l->wheel = wheel_new(l->now);
	if (!l->wheel)
		goto fail;
	return l;
fail:
	l->be->free(l->be_state);
	free(l);
	return NULL;
}

/* Run every pending close hook, including ones the hooks themselves add. */
static void run_closes(struct loop *l)
{
	while (l->close_head) {
		struct loop_close *c = l->close_head;
		l->close_head = c->next;
		if (!l->close_head)
			l->close_tail = &l->close_head;
		c->next = NULL;
		c->queued = false;
		/* c may be freed by its hook: it is not touched afterwards. */
		c->hook(l, c);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	run_closes(l);
	if (l->sigfd >= 0) {
		loop_watch_stop(l, &l->sigwatch);
		close(l->sigfd);
		pthread_sigmask(SIG_UNBLOCK, &l->sig_blocked_by_us, NULL);
	}
	l->be->free(l->be_state);
	wheel_free(l->wheel);
	free(l->fds);
	free(l);
}

uint64_t loop_now(const struct loop *l)
{
	return l->now;
}

struct wheel *loop_wheel(struct loop *l)
{
	return l->wheel;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

uint64_t loop_stale_drops(const struct loop *l)
{
	return l->stale_drops;
}

/* How long poll may wait: until the next possible timer, or not at all. */
static int poll_timeout(const struct loop *l)
{
	if (l->stop || l->close_head)
		return 0;
	uint64_t next = wheel_next_deadline(l->wheel);
	if (next == UINT64_MAX)
		return -1;
	if (next <= l->now)
		return 0;
	uint64_t wait = next - l->now;
	return wait > INT_MAX ? INT_MAX : (int)wait;
}

static uint64_t event_data(int fd, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)fd;
}

/*
 * Hand one event to its watcher, unless the registration it was queued for
 * is gone: a handler earlier in the same batch may have closed the fd and
 * another registration may already hold the number.
 */
static int dispatch(struct loop *l, const struct loop_event *ev)
{
	uint32_t fd = (uint32_t)ev->data;
	uint32_t gen = (uint32_t)(ev->data >> 32);
	if (fd >= l->nfds || !l->fds[fd].w || l->fds[fd].gen != gen) {
		l->stale_drops++;
		return 0;
	}
	struct loop_watch *w = l->fds[fd].w;
	unsigned events = ev->events;
	/* Errors and hang-ups are found by reading or writing: wake both. */
	if (events & LOOP_HUP)
		events |= w->interest;
	events &= w->interest | LOOP_HUP;
	if (!events)
		return 0;
	w->cb(l, w, events);
	run_closes(l);
	return 1;
}

int loop_run_once(struct loop *l)
{
	int n = l->be->poll(l->be_state, l->events, LOOP_MAX_EVENTS,
			    poll_timeout(l));
	/* Time never runs back: a clock that did (an injected one; the
	 * monotonic clock cannot) would date new deadlines before the
	 * wheel's own time, and they would fire early. */
	uint64_t t = read_clock(l);
	if (t > l->now)
		l->now = t;
	if (n == -EINTR)
		n = 0;
	if (n < 0)
		return n;
	int calls = 0;
	run_closes(l);
	for (int i = 0; i < n; i++)
		calls += dispatch(l, &l->events[i]);
	/*
	 * One timer per wheel_advance() so that close hooks run after each
	 * timer callback, exactly as after each I/O callback.
	 */
	for (unsigned i = 0; i < l->max_timers; i++) {
		if (wheel_advance(l->wheel, l->now, 1, l) == 0)
			break;
		calls++;
		run_closes(l);
	}
	loop_flush(l);
	return calls;
}

void loop_flush(struct loop *l)
{
	for (unsigned i = 0; i < l->nflush; i++)
		l->flush[i].cb(l, l->flush[i].arg);
	run_closes(l);
}

int loop_add_flush(struct loop *l, loop_flush_cb *cb, void *arg)
{
	if (l->nflush == LOOP_MAX_FLUSH)
		return -ENOSPC;
	l->flush[l->nflush++] = (struct flush_hook){ .cb = cb, .arg = arg };
	return 0;
}

void loop_remove_flush(struct loop *l, loop_flush_cb *cb, void *arg)
{
	for (unsigned i = 0; i < l->nflush; i++) {
		if (l->flush[i].cb == cb && l->flush[i].arg == arg) {
			memmove(&l->flush[i], &l->flush[i + 1],
				(l->nflush - i - 1) * sizeof(l->flush[0]));
			l->nflush--;
			return;
		}
	}
}

int loop_run(struct loop *l)
{
	int rc = 0;
	while (!l->stop) {
		rc = loop_run_once(l);
		if (rc < 0)
			break;
	}
	l->stop = false;
	return rc < 0 ? rc : 0;
}

void loop_timer_start(struct loop *l, struct wheel_timer *t, uint64_t deadline)
{
	wheel_start(l->wheel, t, deadline);
}

uint64_t loop_timer_slack_ms(const struct loop *l)
{
	return l->clock.truncated ? 1u : 0u;
}

void loop_timer_start_in(struct loop *l, struct wheel_timer *t,
			 uint64_t delay_ms)
{
	uint64_t delay = delay_ms + loop_timer_slack_ms(l);
	uint64_t deadline = l->now + delay;
	if (deadline < l->now || delay < delay_ms)
		deadline = UINT64_MAX;
	wheel_start(l->wheel, t, deadline);
}

void loop_timer_touch(struct loop *l, struct wheel_timer *t, uint64_t deadline)
{
	wheel_touch(l->wheel, t, deadline);
}

void loop_timer_stop(struct loop *l, struct wheel_timer *t)
{
	wheel_stop(l->wheel, t);
}

void loop_watch_init(struct loop_watch *w, int fd, loop_io_cb *cb)
{
	*w = (struct loop_watch){
		.fd = fd,
		.interest = 0,
		.gen = 0,
		.active = false,
		.cb = cb,
	};
}

bool loop_watch_active(const struct loop_watch *w)
{
	return w->active;
}

/* Make the fd table hold fd; it grows geometrically and never shrinks. */
static int fds_reserve(struct loop *l, size_t fd)
{
	if (fd < l->nfds)
		return 0;
	size_t n = l->nfds ? l->nfds : 64;
	while (n <= fd)
		n *= 2;
	struct fd_slot *grown = realloc(l->fds, n * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	for (size_t i = l->nfds; i < n; i++)
		grown[i] = (struct fd_slot){ .w = NULL, .gen = 0 };
	l->fds = grown;
	l->nfds = n;
	return 0;
}

int loop_watch_set(struct loop *l, struct loop_watch *w, unsigned interest)
{
	interest &= LOOP_READ | LOOP_WRITE;
	if (!interest)
		return loop_watch_stop(l, w);
	if (w->fd < 0)
		return -EBADF;
	if (w->active) {
		int rc = l->be->mod(l->be_state, w->fd, interest,
				    event_data(w->fd, w->gen));
		if (rc == 0)
			w->interest = interest;
		return rc;
	}
	int rc = fds_reserve(l, (size_t)w->fd);
	if (rc < 0)
		return rc;
	if (l->fds[w->fd].w)
		return -EEXIST;
	uint32_t gen = ++l->next_gen;
	rc = l->be->add(l->be_state, w->fd, interest, event_data(w->fd, gen));
	if (rc < 0)
		return rc;
	l->fds[w->fd] = (struct fd_slot){ .w = w, .gen = gen };
	w->gen = gen;
	w->interest = interest;
	w->active = true;
	return 0;
}

int loop_watch_stop(struct loop *l, struct loop_watch *w)
{
	if (!w->active)
		return 0;
	int rc = l->be->del(l->be_state, w->fd);
	l->fds[w->fd].w = NULL;
	w->active = false;
	w->interest = 0;
	return rc;
}

void loop_defer_close(struct loop *l, struct loop_close *c,
		      loop_close_cb *hook)
{
	if (c->queued)
		return;
	c->hook = hook;
	c->queued = true;
	c->next = NULL;
	*l->close_tail = c;
	l->close_tail = &c->next;
}

bool loop_close_pending(const struct loop_close *c)
{
	return c->queued;
}

/* Drain the signalfd and run the handler of each signal read. */
static void on_signalfd(struct loop *l, struct loop_watch *w, unsigned events)
{
	(void)events;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int signo = (int)si.ssi_signo;
		if (signo > 0 && signo < NSIG && l->sig[signo].cb)
			l->sig[signo].cb(l, signo, l->sig[signo].arg);
	}
}

/* Route signo through the signalfd, creating it on first use. */
static int sig_route(struct loop *l, int signo)
{
	sigset_t one, old;
	sigemptyset(&one);
	sigaddset(&one, signo);
	int err = pthread_sigmask(SIG_BLOCK, &one, &old);
	if (err)
		return -err;
	if (!sigismember(&old, signo))
		sigaddset(&l->sig_blocked_by_us, signo);
	sigaddset(&l->sig_handled, signo);
	int fd = signalfd(l->sigfd, &l->sig_handled, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		err = errno;
		sigdelset(&l->sig_handled, signo);
		return -err;
	}
	if (l->sigfd < 0) {
		l->sigfd = fd;
		loop_watch_init(&l->sigwatch, fd, on_signalfd);
		return loop_watch_set(l, &l->sigwatch, LOOP_READ);
	}
	return 0;
}

int loop_signal(struct loop *l, int signo, loop_signal_cb *cb, void *arg)
{
	if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
		return -EINVAL;
	if (cb && !sigismember(&l->sig_handled, signo)) {
		int rc = sig_route(l, signo);
		if (rc < 0)
			return rc;
	}
	l->sig[signo] = (struct sig_handler){ .cb = cb, .arg = arg };
	return 0;
}
