/*
 * fake_loop_fixture: the loop and socket pool under the forwarder's unit
 * tests.  The loop runs on epoll with the test's clock (fake_now); an
 * eventfd that is always readable keeps every poll from waiting in real
 * time, since the loop's timeout is computed from its last (fake) clock
 * reading.  Each test program includes it once, through its forwarder
 * fixture: fake_now is that program's own.
 */
#ifndef BERTH_TEST_FAKE_LOOP_FIXTURE_H
#define BERTH_TEST_FAKE_LOOP_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/sockpool.h"

static uint64_t fake_now = 1000000;

static inline uint64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

struct fake_loop {
	struct loop *loop;
	int kick;                     /* always readable */
	struct loop_watch kick_w;
};

static inline void fake_loop_on_kick(struct loop *l, struct loop_watch *w,
				     unsigned events)
{
	(void)l, (void)w, (void)events;
}

/* Open fl's loop on the fake clock, with its kick watched; returns the loop,
 * which fl owns until fake_loop_close(). */
static inline struct loop *fake_loop_open(struct fake_loop *fl)
{
	struct loop_config lc = { .clock = { .now_ms = fake_clock } };
	fl->loop = loop_new(&lc);
	assert_non_null(fl->loop);
	fl->kick = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(fl->kick >= 0);
	loop_watch_init(&fl->kick_w, fl->kick, fake_loop_on_kick);
	assert_int_equal(loop_watch_set(fl->loop, &fl->kick_w, LOOP_READ), 0);
	return fl->loop;
}

static inline void fake_loop_close(struct fake_loop *fl)
{
	loop_watch_stop(fl->loop, &fl->kick_w);
	close(fl->kick);
	loop_free(fl->loop);
}

/* A pool over ports [lo, hi] on the fake clock, in mode (pool: size
 * sockets bound now; per-query: at most size at once), the caller's to
 * pool_free(); the test fails when it cannot be made. */
static inline struct pool *fake_pool_mode(uint16_t lo, uint16_t hi,
					  uint32_t size, enum pool_mode mode)
{
	char err[256];
	struct portset allowed;
	portset_clear(&allowed);
	portset_add_range(&allowed, lo, hi);
	struct pool_config pc = { .size = size, .mode = mode };
	struct pool *p = pool_create(&pc, &allowed, NULL, NULL, NULL, fake_now,
				     err, sizeof(err));
	if (!p)
		fail_msg("pool_create: %s", err);
	return p;
}

/* A pool of size sockets over ports [lo, hi], bound now. */
static inline struct pool *fake_pool(uint16_t lo, uint16_t hi, uint32_t size)
{
	return fake_pool_mode(lo, hi, size, POOL_MODE_POOL);
}

#endif
