/*
 * Unit tests for the event loop, on the fake backend and clock: dispatch,
 * stale generations, one clock read per iteration, timers at exact fake
 * times, deferred close; plus a real epoll smoke test (pipe + short timer +
 * signal) that asserts ordering only, never precision.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/loop_fake.h"

/* A fake connection: a watcher, an idle timer and a close request. */
struct conn {
	struct loop_watch watch;
	struct wheel_timer timer;
	struct loop_close close;
	int id;
	unsigned calls;
	unsigned last_events;
	uint64_t fired_at;
	struct conn *stop_other; /* stop this watcher from the handler */
	struct loop_watch *start_other; /* and register this one */
	int *log;                /* shared order log */
	size_t *nlog;
};

static bool hook_ran_during_handler;
static unsigned hooks_run;

static void on_io(struct loop *l, struct loop_watch *w, unsigned events)
{
	struct conn *c = wheel_container_of(w, struct conn, watch);
	c->calls++;
	c->last_events = events;
	if (c->log)
		c->log[(*c->nlog)++] = c->id;
	if (c->stop_other) {
		loop_watch_stop(l, &c->stop_other->watch);
		if (c->start_other)
			assert_int_equal(loop_watch_set(l, c->start_other, LOOP_READ), 0);
	}
}

static void on_timer(struct wheel_timer *t, void *ctx)
{
	struct loop *l = ctx;
	struct conn *c = wheel_container_of(t, struct conn, timer);
	c->calls++;
	c->fired_at = loop_now(l);
	if (c->log)
		c->log[(*c->nlog)++] = c->id;
}

static struct loop *fake_loop(struct loop_fake **f, uint64_t start,
			      unsigned max_timers)
{
	*f = loop_fake_new(start);
	assert_non_null(*f);
	struct loop_config cfg = loop_fake_config(*f);
	cfg.max_timers_per_iter = max_timers;
	struct loop *l = loop_new(&cfg);
	assert_non_null(l);
	return l;
}

static void conn_init(struct conn *c, int id, int fd)
{
	*c = (struct conn){ .id = id };
	loop_watch_init(&c->watch, fd, on_io);
	wheel_timer_init(&c->timer, on_timer);
}

static void test_dispatch_to_right_callback(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 1000, 0);
	struct conn a, b;
	conn_init(&a, 1, 5);
	conn_init(&b, 2, 7);
	assert_int_equal(loop_watch_set(l, &a.watch, LOOP_READ | LOOP_WRITE), 0);
	assert_int_equal(loop_watch_set(l, &b.watch, LOOP_READ), 0);
	assert_int_equal(loop_fake_interest(f, 5), LOOP_READ | LOOP_WRITE);
	assert_int_equal(loop_fake_interest(f, 7), LOOP_READ);

	assert_int_equal(loop_fake_inject(f, 7, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject(f, 5, LOOP_WRITE), 0);
	assert_int_equal(loop_run_once(l), 2);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.last_events, LOOP_WRITE);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.last_events, LOOP_READ);

	/* Events outside the interest are not delivered... */
	assert_int_equal(loop_fake_inject(f, 7, LOOP_WRITE), 0);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(b.calls, 1);
	/* ...but a hang-up wakes every interest so the handler sees it. */
	assert_int_equal(loop_fake_inject(f, 7, LOOP_HUP), 0);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(b.last_events, LOOP_READ | LOOP_HUP);

	/* Changing the interest keeps the registration. */
	assert_int_equal(loop_watch_set(l, &b.watch, LOOP_WRITE), 0);
	assert_int_equal(loop_fake_interest(f, 7), LOOP_WRITE);
	assert_int_equal(loop_fake_inject(f, 7, LOOP_WRITE), 0);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(b.last_events, LOOP_WRITE);

	/* Interest 0 deregisters. */
	assert_int_equal(loop_watch_set(l, &b.watch, 0), 0);
	assert_false(loop_watch_active(&b.watch));
	assert_int_equal(loop_fake_inject(f, 7, LOOP_READ), -ENOENT);
	loop_free(l);
	loop_fake_free(f);
}

static void test_watch_errors(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 0, 0);
	struct conn a, b, bad;
	conn_init(&a, 1, 4);
	conn_init(&b, 2, 4);
	conn_init(&bad, 3, -1);
	assert_int_equal(loop_watch_set(l, &a.watch, LOOP_READ), 0);
	assert_int_equal(loop_watch_set(l, &b.watch, LOOP_READ), -EEXIST);
	assert_false(loop_watch_active(&b.watch));
	assert_int_equal(loop_watch_set(l, &bad.watch, LOOP_READ), -EBADF);
	assert_int_equal(loop_watch_stop(l, &b.watch), 0); /* not active */
	assert_int_equal(loop_watch_stop(l, &a.watch), 0);
	assert_int_equal(loop_watch_set(l, &b.watch, LOOP_READ), 0);
	loop_free(l);
	loop_fake_free(f);
}

/*
 * The nginx case: in one batch, the first handler closes fd 9 and a new
 * registration takes fd 9; the batch's event for the old fd 9 must not reach
 * the new watcher.
 */
static void test_stale_generation_dropped(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 0, 0);
	struct conn first, old, reused;
	conn_init(&first, 1, 3);
	conn_init(&old, 2, 9);
	conn_init(&reused, 3, 9);
	first.stop_other = &old;
	first.start_other = &reused.watch;
	assert_int_equal(loop_watch_set(l, &first.watch, LOOP_READ), 0);
	assert_int_equal(loop_watch_set(l, &old.watch, LOOP_READ), 0);
	uint64_t old_data;
	assert_int_equal(loop_fake_data(f, 9, &old_data), 0);

	assert_int_equal(loop_fake_inject(f, 3, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject_data(f, old_data, LOOP_READ), 0);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(first.calls, 1);
	assert_int_equal(old.calls, 0);
	assert_int_equal(reused.calls, 0);
	assert_int_equal(loop_stale_drops(l), 1);

	/* The new registration gets its own events. */
	assert_int_equal(loop_fake_inject(f, 9, LOOP_READ), 0);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(reused.calls, 1);

	/* An event for an fd nobody watches any more is dropped too. */
	assert_int_equal(loop_watch_stop(l, &reused.watch), 0);
	assert_int_equal(loop_fake_inject_data(f, old_data, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject_data(f, UINT64_C(1) << 40 | 4000, LOOP_READ), 0);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(loop_stale_drops(l), 3);
	loop_free(l);
	loop_fake_free(f);
}

static void test_clock_read_once_per_iteration(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 50, 0);
	struct conn a, t1, t2;
	conn_init(&a, 1, 6);
	conn_init(&t1, 2, -1);
	conn_init(&t2, 3, -1);
	assert_int_equal(loop_fake_clock_reads(f), 1); /* loop_new */
	assert_int_equal(loop_watch_set(l, &a.watch, LOOP_READ), 0);
	loop_timer_start_in(l, &t1.timer, 10);
	loop_timer_start_in(l, &t2.timer, 10);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(loop_fake_inject(f, 6, LOOP_READ), 0);
		assert_int_equal(loop_fake_inject(f, 6, LOOP_READ), 0);
		loop_fake_advance(f, 5);
		assert_true(loop_run_once(l) >= 2);
		assert_int_equal(loop_fake_clock_reads(f), 2 + (uint64_t)i);
		assert_int_equal(loop_now(l), 50 + 5 * (uint64_t)(i + 1));
	}
	assert_int_equal(a.calls, 10);
	/* Both timers fired in the iteration that saw time 60, exactly. */
	assert_int_equal(t1.fired_at, 60);
	assert_int_equal(t2.fired_at, 60);
	loop_free(l);
	loop_fake_free(f);
}

static void test_timers_fire_at_fake_times(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 1000, 0);
	struct conn c;
	conn_init(&c, 1, -1);

	/* Nothing armed: the loop may sleep forever. */
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(loop_fake_last_timeout(f), -1);

	loop_timer_start_in(l, &c.timer, 100);
	assert_int_equal(loop_run_once(l), 0);
	/* The wait is bounded by the timer (possibly earlier, never later). */
	assert_true(loop_fake_last_timeout(f) >= 0);
	assert_true(loop_fake_last_timeout(f) <= 100);
	loop_fake_advance(f, 99);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(c.calls, 0);
	loop_fake_advance(f, 1);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(c.fired_at, 1100);

	/* Stopped timers stay quiet. */
	loop_timer_start(l, &c.timer, 1200);
	loop_timer_stop(l, &c.timer);
	loop_fake_set_time(f, 5000);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(c.calls, 1);

	/* Touch moves an idle deadline later. */
	loop_timer_start(l, &c.timer, 6000);
	loop_timer_touch(l, &c.timer, 7000);
	loop_fake_set_time(f, 6999);
	assert_int_equal(loop_run_once(l), 0);
	loop_fake_set_time(f, 7000);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(c.fired_at, 7000);

	/* A clock that runs back does not take the loop with it: a timer
	 * armed then counts from the latest time seen, never fires early. */
	loop_fake_set_time(f, 4000);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(loop_now(l), 7000);
	loop_timer_start_in(l, &c.timer, 1000);
	assert_int_equal(wheel_timer_deadline(&c.timer), 8000);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(c.calls, 2);
	loop_fake_set_time(f, 8000);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(c.fired_at, 8000);
	loop_free(l);
	loop_fake_free(f);
}

/* The session-timeout story: a 10 s idle timeout closes at 10 s, not 0-30 s. */
static void stop_on_timer(struct wheel_timer *t, void *ctx)
{
	on_timer(t, ctx);
	struct conn *c = wheel_container_of(t, struct conn, timer);
	if (c->id == 99)
		loop_stop(ctx);
}

/*
 * A truncated clock (the real CLOCK_MONOTONIC one, in ms) reads up to 1 ms
 * behind the true time: a relative timer armed at reading R for D ms must
 * not fire at reading R + D, which may be real time R + D - 0.999.  The
 * session benchmark caught exactly that (closes 0.8 ms early).
 */
static void test_truncated_clock_never_fires_early(void **state)
{
	(void)state;
	struct loop_fake *f = loop_fake_new(1000);
	assert_non_null(f);
	struct loop_config cfg = loop_fake_config(f);
	struct loop *exact = loop_new(&cfg);
	assert_non_null(exact);
	assert_int_equal(loop_timer_slack_ms(exact), 0);
	loop_free(exact);
	cfg.clock.truncated = true;
	struct loop *l = loop_new(&cfg);
	assert_non_null(l);
	struct conn c;
	conn_init(&c, 1, -1);

	assert_int_equal(loop_timer_slack_ms(l), 1);
	loop_timer_start_in(l, &c.timer, 100);
	assert_int_equal(wheel_timer_deadline(&c.timer), 1101);
	loop_fake_advance(f, 100); /* reading 1100: true time may be 1100.0 */
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(c.calls, 0);
	loop_fake_advance(f, 1); /* reading 1101: at least 100 ms have passed */
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(c.fired_at, 1101);

	/* Absolute deadlines are the caller's business: unchanged. */
	loop_timer_start(l, &c.timer, 1200);
	loop_fake_set_time(f, 1200);
	assert_int_equal(loop_run_once(l), 1);
	assert_int_equal(c.fired_at, 1200);

	/* A huge delay saturates instead of wrapping. */
	loop_timer_start_in(l, &c.timer, UINT64_MAX);
	assert_int_equal(wheel_timer_deadline(&c.timer), UINT64_MAX);
	loop_timer_stop(l, &c.timer);
	loop_free(l);
	loop_fake_free(f);
}

static void test_sleeping_loop_wakes_exactly(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 123456, 0);
	loop_fake_set_sleep(f, true);
	const uint64_t delays[] = { 10000, 1, 64, 4097, 300000, 2500, 10000 };
	struct conn c[7], last;
	int log[8];
	size_t nlog = 0;
	for (size_t i = 0; i < 7; i++) {
		conn_init(&c[i], (int)i, -1);
		c[i].log = log;
		c[i].nlog = &nlog;
		loop_timer_start_in(l, &c[i].timer, delays[i]);
	}
	conn_init(&last, 99, -1);
	wheel_timer_init(&last.timer, stop_on_timer);
	loop_timer_start_in(l, &last.timer, 400000);
	assert_int_equal(loop_run(l), 0);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(c[i].fired_at, 123456 + delays[i]);
	assert_int_equal(last.fired_at, 123456 + 400000);
	/* By deadline; the two 10 s timers in arming order. */
	const int expect[] = { 1, 2, 5, 3, 0, 6, 4 };
	assert_int_equal(nlog, 7);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(log[i], expect[i]);
	loop_free(l);
	loop_fake_free(f);
}

static void test_bounded_timers_per_iteration(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 0, 3);
	struct conn c[5];
	for (int i = 0; i < 5; i++) {
		conn_init(&c[i], i, -1);
		loop_timer_start(l, &c[i].timer, 10);
	}
	loop_fake_set_time(f, 10);
	assert_int_equal(loop_run_once(l), 3);
	assert_int_equal(loop_run_once(l), 2);
	/* The leftover iteration did not wait. */
	assert_int_equal(loop_fake_last_timeout(f), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(c[i].calls, 1);
	loop_free(l);
	loop_fake_free(f);
}

/* Deferred close: the hook runs after the handler and may free the object. */
static void free_conn_hook(struct loop *l, struct loop_close *cl)
{
	struct conn *c = wheel_container_of(cl, struct conn, close);
	loop_watch_stop(l, &c->watch);
	loop_timer_stop(l, &c->timer);
	hooks_run++;
	free(c);
}

static void on_io_closing(struct loop *l, struct loop_watch *w, unsigned events)
{
	struct conn *c = wheel_container_of(w, struct conn, watch);
	c->calls++;
	c->last_events = events;
	loop_defer_close(l, &c->close, free_conn_hook);
	loop_defer_close(l, &c->close, free_conn_hook); /* ignored */
	assert_true(loop_close_pending(&c->close));
	/* Still inside the handler: the object must be alive. */
	hook_ran_during_handler = hooks_run != 0;
	c->calls++;
}

static void on_timer_closing(struct wheel_timer *t, void *ctx)
{
	struct conn *c = wheel_container_of(t, struct conn, timer);
	loop_defer_close(ctx, &c->close, free_conn_hook);
	hook_ran_during_handler = hooks_run != 0;
}

static void test_deferred_close(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 0, 0);
	struct conn *c = malloc(sizeof(*c));
	assert_non_null(c);
	conn_init(c, 1, 8);
	loop_watch_init(&c->watch, 8, on_io_closing);
	loop_timer_start(l, &c->timer, 5);
	assert_int_equal(loop_watch_set(l, &c->watch, LOOP_READ), 0);
	hooks_run = 0;
	/* Two events for it in one batch: the second must find it gone. */
	assert_int_equal(loop_fake_inject(f, 8, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject(f, 8, LOOP_READ), 0);
	loop_fake_set_time(f, 10); /* its timer is due in the same iteration */
	assert_int_equal(loop_run_once(l), 1);
	assert_false(hook_ran_during_handler);
	assert_int_equal(hooks_run, 1);
	assert_int_equal(loop_stale_drops(l), 1);
	assert_int_equal(wheel_count(loop_wheel(l)), 0);

	/* The same from a timer callback. */
	c = malloc(sizeof(*c));
	assert_non_null(c);
	conn_init(c, 2, -1);
	wheel_timer_init(&c->timer, on_timer_closing);
	loop_timer_start(l, &c->timer, 20);
	loop_fake_set_time(f, 20);
	hooks_run = 0;
	assert_int_equal(loop_run_once(l), 1);
	assert_false(hook_ran_during_handler);
	assert_int_equal(hooks_run, 1);

	/* A request made outside any callback runs at loop_free at the latest. */
	c = malloc(sizeof(*c));
	assert_non_null(c);
	conn_init(c, 3, -1);
	hooks_run = 0;
	loop_defer_close(l, &c->close, free_conn_hook);
	assert_int_equal(hooks_run, 0);
	loop_free(l);
	assert_int_equal(hooks_run, 1);
	loop_fake_free(f);
}

static void stop_from_io(struct loop *l, struct loop_watch *w, unsigned events)
{
	on_io(l, w, events);
	loop_stop(l);
}

static void test_run_until_stop(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 0, 0);
	struct conn c;
	conn_init(&c, 1, 3);
	loop_watch_init(&c.watch, 3, stop_from_io);
	assert_int_equal(loop_watch_set(l, &c.watch, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject(f, 3, LOOP_READ), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(loop_fake_polls(f), 1);
	loop_free(l);
	loop_fake_free(f);
}

/* Real epoll: a socketpair, a 2 ms timer and a signal, in a sane order. */
struct smoke {
	struct loop_watch watch;
	struct wheel_timer timer;
	uint64_t deadline;
	char got[8];
	bool read_done, timer_done, signal_done;
	int order[3];
	int norder;
};

static void smoke_read(struct loop *l, struct loop_watch *w, unsigned events)
{
	(void)l;
	struct smoke *s = wheel_container_of(w, struct smoke, watch);
	assert_true(events & LOOP_READ);
	int fd = w->fd;
	assert_int_equal(read(fd, s->got, sizeof(s->got)), 4);
	s->read_done = true;
	s->order[s->norder++] = 1;
	assert_int_equal(loop_watch_stop(l, w), 0);
}

static void smoke_timer(struct wheel_timer *t, void *ctx)
{
	struct loop *l = ctx;
	struct smoke *s = wheel_container_of(t, struct smoke, timer);
	assert_true(loop_now(l) >= s->deadline);
	s->timer_done = true;
	s->order[s->norder++] = 2;
	assert_int_equal(raise(SIGUSR1), 0);
}

static void smoke_signal(struct loop *l, int signo, void *arg)
{
	struct smoke *s = arg;
	assert_int_equal(signo, SIGUSR1);
	s->signal_done = true;
	s->order[s->norder++] = 3;
	loop_stop(l);
}

static void test_epoll_smoke(void **state)
{
	(void)state;
	struct loop *l = loop_new(NULL);
	assert_non_null(l);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct smoke s = { .norder = 0 };
	assert_int_equal(loop_signal(l, SIGUSR1, smoke_signal, &s), 0);
	assert_int_equal(loop_signal(l, 0, smoke_signal, &s), -EINVAL);
	assert_int_equal(loop_signal(l, SIGKILL, smoke_signal, &s), -EINVAL);
	loop_watch_init(&s.watch, sv[0], smoke_read);
	assert_int_equal(loop_watch_set(l, &s.watch, LOOP_READ), 0);
	wheel_timer_init(&s.timer, smoke_timer);
	s.deadline = loop_now(l) + 2;
	loop_timer_start(l, &s.timer, s.deadline);
	assert_int_equal(write(sv[1], "ping", 4), 4);
	assert_int_equal(loop_run(l), 0);
	assert_true(s.read_done && s.timer_done && s.signal_done);
	/* The socket was already readable; the signal is raised by the timer. */
	assert_int_equal(s.order[0], 1);
	assert_int_equal(s.order[1], 2);
	assert_int_equal(s.order[2], 3);
	assert_memory_equal(s.got, "ping", 4);
	loop_free(l);
	close(sv[0]);
	close(sv[1]);
	/* loop_free unblocked the signal it had blocked. */
	sigset_t now;
	assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
	assert_false(sigismember(&now, SIGUSR1));
}

/* Flush hooks: the shared order log gets 100 + the hook's number. */
struct flush_probe {
	int id;
	int *log;
	size_t *nlog;
};

static void on_flush(struct loop *l, void *arg)
{
	(void)l;
	struct flush_probe *p = arg;
	p->log[(*p->nlog)++] = 100 + p->id;
}

/*
 * Flush hooks run once at the end of each iteration, after every I/O and
 * timer callback of it, in registration order; a removed hook no longer
 * runs; the table has a bound.
 */
static void test_flush_hooks_end_each_iteration(void **state)
{
	(void)state;
	struct loop_fake *f;
	struct loop *l = fake_loop(&f, 1000, 0);
	int log[64];
	size_t nlog = 0;
	struct conn a, t;
	conn_init(&a, 1, 5);
	a.log = log;
	a.nlog = &nlog;
	conn_init(&t, 2, -1);
	t.log = log;
	t.nlog = &nlog;
	struct flush_probe p1 = { 1, log, &nlog }, p2 = { 2, log, &nlog };
	assert_int_equal(loop_add_flush(l, on_flush, &p1), 0);
	assert_int_equal(loop_add_flush(l, on_flush, &p2), 0);

	assert_int_equal(loop_watch_set(l, &a.watch, LOOP_READ), 0);
	assert_int_equal(loop_fake_inject(f, 5, LOOP_READ), 0);
	loop_timer_start(l, &t.timer, 1000);
	assert_int_equal(loop_run_once(l), 2);
	const int want[] = { 1, 2, 101, 102 };
	assert_int_equal(nlog, 4);
	assert_memory_equal(log, want, sizeof(want));

	/* An idle iteration still flushes; a removed hook is gone. */
	loop_remove_flush(l, on_flush, &p1);
	loop_remove_flush(l, on_flush, &p1); /* absent: no-op */
	nlog = 0;
	loop_fake_advance(f, 1);
	assert_int_equal(loop_run_once(l), 0);
	assert_int_equal(nlog, 1);
	assert_int_equal(log[0], 102);

	/* loop_flush() runs them on demand, outside an iteration. */
	nlog = 0;
	loop_flush(l);
	assert_int_equal(nlog, 1);

	loop_remove_flush(l, on_flush, &p2);
	struct flush_probe many[LOOP_MAX_FLUSH + 1];
	for (unsigned i = 0; i < LOOP_MAX_FLUSH; i++) {
		many[i] = (struct flush_probe){ (int)i, log, &nlog };
		assert_int_equal(loop_add_flush(l, on_flush, &many[i]), 0);
	}
	assert_int_equal(loop_add_flush(l, on_flush, &many[LOOP_MAX_FLUSH]),
			 -ENOSPC);
	loop_watch_stop(l, &a.watch);
	loop_free(l);
	loop_fake_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_to_right_callback),
		cmocka_unit_test(test_watch_errors),
		cmocka_unit_test(test_stale_generation_dropped),
		cmocka_unit_test(test_clock_read_once_per_iteration),
		cmocka_unit_test(test_timers_fire_at_fake_times),
		cmocka_unit_test(test_truncated_clock_never_fires_early),
		cmocka_unit_test(test_sleeping_loop_wakes_exactly),
		cmocka_unit_test(test_bounded_timers_per_iteration),
		cmocka_unit_test(test_deferred_close),
		cmocka_unit_test(test_flush_hooks_end_each_iteration),
		cmocka_unit_test(test_run_until_stop),
		cmocka_unit_test(test_epoll_smoke),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
