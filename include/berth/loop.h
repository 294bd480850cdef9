/*
 * loop: berth's event loop: fd readiness, timers on a timing wheel, deferred
 * close and signals.
 *
 * The kernel sits behind a backend of six fixed functions (loop_epoll.c in
 * production, loop_fake.c in tests) and time comes from a clock callback read
 * exactly once per iteration; everything inside the loop (and every module
 * running on it) takes its time from loop_now(), so tests replay timing
 * scenarios deterministically on a fake clock.
 *
 * Watchers and close requests are intrusive structs embedded in their owners;
 * the loop never frees them.  Single-threaded: one loop per thread and no
 * calls from other threads.
 */
#ifndef BERTH_LOOP_H
#define BERTH_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "berth/wheel.h"

/* Readiness and interest bits. */
#define LOOP_READ 0x1u
#define LOOP_WRITE 0x2u
#define LOOP_HUP 0x4u /* error or hang-up; reported, never requested */

struct loop;

/* One readiness event as a backend reports it. */
struct loop_event {
	uint64_t data;   /* the value given to add/mod for the fd */
	unsigned events; /* LOOP_READ | LOOP_WRITE | LOOP_HUP */
};

/*
 * A kernel backend.  create() makes the backend state in *state (arg comes
 * from struct loop_config); add/mod/del register an fd with interest
 * LOOP_READ/LOOP_WRITE and an opaque data word echoed in its events; poll()
 * waits up to timeout_ms (-1: forever, 0: not at all) and stores at most max
 * events.  All return 0 / a count, or -errno.  free() accepts NULL.
 */
struct loop_backend {
	const char *name;
	int (*create)(void **state, void *arg);
	int (*add)(void *state, int fd, unsigned interest, uint64_t data);
	int (*mod)(void *state, int fd, unsigned interest, uint64_t data);
	int (*del)(void *state, int fd);
	int (*poll)(void *state, struct loop_event *ev, int max, int timeout_ms);
	void (*free)(void *state);
};

/* The production backend, on epoll. */
extern const struct loop_backend loop_backend_epoll;

/* A millisecond clock; the loop calls now_ms(arg) once per iteration. */
struct loop_clock {
	uint64_t (*now_ms)(void *arg);
	void *arg;
	/*
	 * now_ms() truncates a finer clock, so the true time may be up to
	 * 1 ms past the reading.  loop_timer_start_in() then adds that
	 * millisecond back, so a relative timer never fires before delay_ms of
	 * real time has passed since the reading.  Exact clocks (fake clocks
	 * in tests) leave it false.
	 */
	bool truncated;
};

/* CLOCK_MONOTONIC in milliseconds, truncated; arg is unused. */
uint64_t loop_clock_monotonic(void *arg);

struct loop_config {
	const struct loop_backend *backend; /* NULL: loop_backend_epoll */
	void *backend_arg;                  /* passed to backend->create */
	struct loop_clock clock;            /* now_ms NULL: CLOCK_MONOTONIC */
	unsigned max_timers_per_iter;       /* 0: LOOP_DEFAULT_MAX_TIMERS */
};

#define LOOP_DEFAULT_MAX_TIMERS 1024u

/*
 * An fd watcher, embedded in its owner.  Public so that owners can embed it;
 * the fields are private to loop.c.
 */
struct loop_watch;
typedef void loop_io_cb(struct loop *loop, struct loop_watch *w,
			unsigned events);
struct loop_watch {
	int fd;             /* private */
	unsigned interest;  /* private */
	uint32_t gen;       /* private: registration generation */
	bool active;        /* private */
	loop_io_cb *cb;     /* private */
};

/*
 * A deferred-close request, embedded in the object to close.  Public so that
 * owners can embed it; the fields are private to loop.c.
 */
struct loop_close;
typedef void loop_close_cb(struct loop *loop, struct loop_close *c);
struct loop_close {
	struct loop_close *next; /* private */
	loop_close_cb *hook;     /* private */
	bool queued;             /* private */
};

/*
 * A loop configured by cfg (NULL: epoll and CLOCK_MONOTONIC).  Reads the
 * clock once to start loop_now().  Returns NULL on failure (no memory, or the
 * backend failed to start).  The caller owns the loop (loop_free()).
 */
struct loop *loop_new(const struct loop_config *cfg);

/*
 * Run the close hooks still pending, restore the signal mask changed by
 * loop_signal(), close the backend and free l.  Watchers and timers still
 * registered are forgotten, not called.  Accepts NULL.
 */
void loop_free(struct loop *l);

/* The loop's time in ms, read from the clock once per iteration. */
uint64_t loop_now(const struct loop *l);

/* The loop's timing wheel, for modules that drive timers themselves. */
struct wheel *loop_wheel(struct loop *l);

/*
 * One iteration: wait for readiness (no longer than the next timer; not at
 * all when stopped or when timers are already due), read the clock once,
 * dispatch the events, then fire due timers (at most max_timers_per_iter),
 * running pending close hooks after every callback.  Returns the number of
 * callbacks made, or -errno when the backend's poll failed (-EINTR is not an
 * error: it counts as an iteration without events).
 */
int loop_run_once(struct loop *l);

/*
 * Iterate until loop_stop().  Returns 0 after a stop, or -errno when an
 * iteration failed.
 */
int loop_run(struct loop *l);

/* Make loop_run() return after the current iteration. */
void loop_stop(struct loop *l);

/*
 * Arm timer t (caller-owned, set up with wheel_timer_init()) at the absolute
 * time deadline (ms), or delay_ms from loop_now() (saturating).  With a
 * truncated clock (the default CLOCK_MONOTONIC one) the relative form arms
 * at loop_now() + delay_ms + 1: loop_now() may lag the true time by up to
 * 1 ms, and a timeout must never fire early.  Work done in the same
 * iteration after the clock was read is not covered: keep iterations short
 * (the session engine caps accepts per iteration).  The timer's callback
 * gets the struct loop * as its ctx.
 */
void loop_timer_start(struct loop *l, struct wheel_timer *t, uint64_t deadline);
void loop_timer_start_in(struct loop *l, struct wheel_timer *t,
			 uint64_t delay_ms);

/*
 * The margin loop_timer_start_in() adds to a delay: 1 ms on a truncated
 * clock, else 0.  Subtract it to report the time left to a nominal deadline.
 */
uint64_t loop_timer_slack_ms(const struct loop *l);

/* Lazy deadline extension: see wheel_touch(). */
void loop_timer_touch(struct loop *l, struct wheel_timer *t, uint64_t deadline);

/* Disarm t; safe when not armed. */
void loop_timer_stop(struct loop *l, struct wheel_timer *t);

/* Prepare w (caller-owned) to watch fd with cb.  No registration yet. */
void loop_watch_init(struct loop_watch *w, int fd, loop_io_cb *cb);

/*
 * Register w for interest (LOOP_READ and/or LOOP_WRITE), or change the
 * interest of an active watcher.  Interest 0 is loop_watch_stop().  A new
 * registration gets a fresh generation: events still queued for an earlier
 * registration of the same fd number are dropped.  Returns 0 or -errno
 * (-ENOMEM, -EBADF, -EEXIST when another watcher holds the fd, or the
 * backend's error).
 */
int loop_watch_set(struct loop *l, struct loop_watch *w, unsigned interest);

/*
 * Deregister w (before its fd is closed).  Safe when not active.  Returns 0
 * or the backend's -errno (w is deregistered from the loop either way).
 */
int loop_watch_stop(struct loop *l, struct loop_watch *w);

/* True while w is registered. */
bool loop_watch_active(const struct loop_watch *w);

/*
 * Ask the loop to call hook(l, c) after the callback running now returns
 * (right away at the next callback boundary when called outside one), so an
 * object is never freed inside its own handler.  c is embedded in the object
 * and must stay valid until the hook runs; a second request before then is
 * ignored.  Hooks run in request order.
 */
void loop_defer_close(struct loop *l, struct loop_close *c,
		      loop_close_cb *hook);

/* True when c is waiting for its hook. */
bool loop_close_pending(const struct loop_close *c);

/*
 * Flush hooks: cb(l, arg) runs at the end of every loop_run_once(), after
 * all of the iteration's I/O and timer callbacks, so output that several
 * callbacks queued (say, DNS answers to many clients on one socket) leaves
 * in one system call.  Hooks run in registration order and must not add or
 * remove hooks.  At most LOOP_MAX_FLUSH; loop_add_flush() returns 0 or
 * -ENOSPC.  loop_remove_flush() removes the hook registered with exactly cb
 * and arg (a no-op when there is none); an owner removes its hook before it
 * frees arg.
 */
#define LOOP_MAX_FLUSH 16u
typedef void loop_flush_cb(struct loop *loop, void *arg);
int loop_add_flush(struct loop *l, loop_flush_cb *cb, void *arg);
void loop_remove_flush(struct loop *l, loop_flush_cb *cb, void *arg);

/*
 * Run every flush hook now, then any close hooks they requested.
 * loop_run_once() calls it last; code that queues output outside an
 * iteration (tests, start-up) may call it itself.
 */
void loop_flush(struct loop *l);

/*
 * Deliver signal signo through the loop: it is blocked for normal delivery
 * and read from a signalfd, and cb(l, signo, arg) runs as an ordinary loop
 * callback.  cb NULL removes the handler (the signal stays blocked until
 * loop_free()).  Returns 0 or -errno (-EINVAL for a bad signal number).
 */
typedef void loop_signal_cb(struct loop *loop, int signo, void *arg);
int loop_signal(struct loop *l, int signo, loop_signal_cb *cb, void *arg);

/* Events dropped because their registration was stale (for tests, metrics). */
uint64_t loop_stale_drops(const struct loop *l);

#endif
