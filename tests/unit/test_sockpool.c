/*
 * Unit tests for sockpool.  A fake backend stands in for the kernel and the
 * CSPRNG: a seeded xorshift generator, and a bind that hands out fake fds,
 * refuses chosen ports with EADDRINUSE/EACCES, and records every bind and
 * close so each test can end by proving nothing leaked.  One test uses real
 * sockets on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/sockpool.h"

#define FAKE_FDS 8192
#define FAKE_FD_BASE 100

/*
 * Upper 0.1% points of the chi-square distribution, from the regularised
 * incomplete gamma function (R: qchisq(0.999, df)); a fair generator exceeds
 * them one time in a thousand, and the fixed seeds below do not.
 */
#define CHI2_999_DF99 148.2304
#define CHI2_999_DF19 43.8202

struct fake {
	uint64_t rng;              /* xorshift64 state, never 0 */
	bool biased;               /* draw (8-bit value) % bound: a classic bug */
	struct portset legal;      /* ports the pool may ever try */
	struct portset inuse;      /* refused with EADDRINUSE */
	struct portset acces;      /* refused with EACCES */
	struct portset inuse6;     /* refused with EADDRINUSE for IPv6 only */
	struct portset tcp_inuse;  /* refused with EADDRINUSE for TCP only */
	uint32_t tcp_connects;
	struct sockaddr_in tcp_to; /* where the last TCP connection went */
	int hard_errno;            /* when non-zero: every bind fails so */
	bool illegal_bind;         /* a port outside legal was tried */
	uint32_t binds, closes, refusals;
	int fd_port[FAKE_FDS];     /* -1: fd free */
	int fd_family[FAKE_FDS];
	uint32_t open_now;
	/* Watch bookkeeping. */
	uint32_t watch_open, watch_close;
};

static uint64_t xorshift(struct fake *f)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

static uint32_t fake_random(void *ctx, uint32_t bound)
{
	struct fake *f = ctx;
	if (f->biased)
		return (uint32_t)(xorshift(f) >> 56) % bound;
	/* Multiply-shift: its bias, bound / 2^32, is far below detection. */
	return (uint32_t)(((xorshift(f) >> 32) * (uint64_t)bound) >> 32);
}

static int fake_bind(void *ctx, int family, const void *addr, uint16_t port)
{
	struct fake *f = ctx;
	(void)addr;
	if (!portset_has(&f->legal, port))
		f->illegal_bind = true;
	if (f->hard_errno)
		return -f->hard_errno;
	if (portset_has(&f->inuse, port) ||
	    (family == AF_INET6 && portset_has(&f->inuse6, port))) {
		f->refusals++;
		return -EADDRINUSE;
	}
	if (portset_has(&f->acces, port)) {
		f->refusals++;
		return -EACCES;
	}
	for (int i = 0; i < FAKE_FDS; i++) {
		if (f->fd_port[i] >= 0)
			continue;
		f->fd_port[i] = port;
		f->fd_family[i] = family;
		f->binds++;
		f->open_now++;
		return FAKE_FD_BASE + i;
	}
	return -EMFILE;
}

static int fake_close(void *ctx, int fd)
{
	struct fake *f = ctx;
	int i = fd - FAKE_FD_BASE;
	assert_true(i >= 0 && i < FAKE_FDS);
	assert_true(f->fd_port[i] >= 0); /* never a double close */
	f->fd_port[i] = -1;
	f->closes++;
	f->open_now--;
	return 0;
}

static int fake_connect_tcp(void *ctx, int family, const void *addr,
			    uint16_t port, const struct sockaddr *to,
			    socklen_t tolen)
{
	struct fake *f = ctx;
	if (portset_has(&f->tcp_inuse, port)) {
		if (!portset_has(&f->legal, port))
			f->illegal_bind = true;
		f->refusals++;
		return -EADDRINUSE;
	}
	int fd = fake_bind(ctx, family, addr, port);
	if (fd >= 0) {
		f->tcp_connects++;
		assert_true(tolen <= sizeof(f->tcp_to));
		memcpy(&f->tcp_to, to, tolen);
	}
	return fd;
}

static const struct pool_ops fake_ops = {
	.random_uniform = fake_random,
	.bind_udp = fake_bind,
	.connect_tcp = fake_connect_tcp,
	.close_fd = fake_close,
};

static struct fake *fake_new(uint64_t seed)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->rng = seed;
	for (int i = 0; i < FAKE_FDS; i++)
		f->fd_port[i] = -1;
	return f;
}

static bool fake_is_open(const struct fake *f, int fd)
{
	int i = fd - FAKE_FD_BASE;
	return i >= 0 && i < FAKE_FDS && f->fd_port[i] >= 0;
}

/* Free the pool and prove every bound fd was closed exactly once. */
static void finish(struct pool *pool, struct fake *f)
{
	pool_free(pool);
	assert_int_equal(f->open_now, 0);
	assert_int_equal(f->binds, f->closes);
	assert_false(f->illegal_bind);
	free(f);
}

static struct portset range(uint16_t lo, uint16_t hi)
{
	struct portset s;
	portset_clear(&s);
	portset_add_range(&s, lo, hi);
	return s;
}

static struct pool *make(struct fake *f, const struct pool_config *cfg,
			 const struct portset *allowed,
			 const struct portset *inuse, uint64_t now)
{
	char err[256] = "";
	f->legal = *allowed;
	if (inuse)
		portset_diff(&f->legal, inuse);
	struct pool *p = pool_create(cfg, allowed, inuse, &fake_ops, f, now,
				     err, sizeof(err));
	if (!p)
		fail_msg("pool_create: %s", err);
	return p;
}

/* The live (non-draining) port of slot idx. */
static uint16_t slot_port(const struct pool *p, uint32_t idx)
{
	uint32_t cur = idx;
	struct pool_sock_info in;
	assert_true(pool_sock_next(p, &cur, &in));
	assert_false(in.draining);
	return in.port;
}

static void test_never_draws_excluded(void **state)
{
	(void)state;
	struct fake *f = fake_new(0x9e3779b97f4a7c15u);
	struct portset allowed = range(1024, 5000), inuse;
	/* The sbs catalog's ports in that range play the reserved ones. */
	portset_del(&allowed, 1433);
	portset_del(&allowed, 4500);
	struct portset res = range(3500, 3619);
	portset_diff(&allowed, &res);
	portset_clear(&inuse);
	for (uint16_t p = 1030; p < 5000; p += 7)
		portset_add(&inuse, p);
	struct pool *pool = make(f, &(struct pool_config){ .size = 2500,
				 .rotate_ms = 100 }, &allowed, &inuse, 0);
	/* Rotations draw thousands more ports; none may be illegal. */
	for (uint64_t t = 0; t <= 400; t += 5)
		pool_tick(pool, t);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_true(st.rotations >= 4 * 2500);
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in)) {
		assert_true(portset_has(&allowed, in.port));
		assert_false(portset_has(&inuse, in.port));
	}
	finish(pool, f);
}

static void test_distinct_ports(void **state)
{
	(void)state;
	struct fake *f = fake_new(42);
	struct portset allowed = range(40000, 40399);
	struct pool *pool = make(f, &(struct pool_config){ .size = 390 },
				 &allowed, NULL, 0);
	struct portset seen;
	portset_clear(&seen);
	uint32_t cur = 0, n = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in)) {
		assert_false(portset_has(&seen, in.port));
		portset_add(&seen, in.port);
		assert_true(fake_is_open(f, in.fd4));
		assert_int_equal(in.fd6, -1);
		n++;
	}
	assert_int_equal(n, 390);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.bound, 390);
	assert_int_equal(st.available, 10);
	finish(pool, f);
}

/* Chi-square statistic of 100,000 per-query draws over 100 ports. */
static double per_query_chi2(bool biased)
{
	struct fake *f = fake_new(0xdeadbeefcafef00du);
	f->biased = biased;
	struct portset allowed = range(50000, 50099);
	struct pool *pool = make(f, &(struct pool_config){ .size = 1,
				 .mode = POOL_MODE_PER_QUERY }, &allowed,
				 NULL, 0);
	uint32_t count[100] = { 0 };
	const uint32_t draws = 100000;
	for (uint32_t i = 0; i < draws; i++) {
		struct pool_handle h;
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		assert_in_range(h.port, 50000, 50099);
		count[h.port - 50000]++;
		assert_int_equal(pool_done(pool, &h), 0);
	}
	assert_int_equal(f->binds, draws);
	double expect = draws / 100.0, chi2 = 0;
	for (int i = 0; i < 100; i++)
		chi2 += (count[i] - expect) * (count[i] - expect) / expect;
	finish(pool, f);
	return chi2;
}

static void test_draws_uniform_chi_square(void **state)
{
	(void)state;
	double fair = per_query_chi2(false);
	double skew = per_query_chi2(true);
	print_message("chi2 fair %.1f biased %.1f (critical %.1f)\n", fair,
		      skew, CHI2_999_DF99);
	assert_true(fair < CHI2_999_DF99);
	/* The same test must catch a biased generator, or it proves nothing. */
	assert_true(skew > CHI2_999_DF99);
}

static void test_bind_failures_are_retried(void **state)
{
	(void)state;
	struct fake *f = fake_new(7);
	struct portset allowed = range(20000, 20049);
	portset_clear(&f->inuse);
	portset_clear(&f->acces);
	for (uint16_t p = 20000; p < 20010; p++)
		portset_add(&f->inuse, p);
	for (uint16_t p = 20010; p < 20020; p++)
		portset_add(&f->acces, p);
	struct pool *pool = make(f, &(struct pool_config){ .size = 30,
				 .max_bind_attempts = 64 }, &allowed, NULL, 0);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.bound, 30);
	assert_int_equal(st.bind_failures, f->refusals);
	assert_true(f->refusals > 0 && f->refusals <= 20);
	assert_int_equal(st.excluded, f->refusals);
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in))
		assert_true(in.port >= 20020); /* only the good ports */
	finish(pool, f);
}

static void expect_create_error(struct fake *f, const struct pool_config *cfg,
				const struct portset *allowed,
				const struct portset *inuse,
				const char *const *parts)
{
	char err[256] = "";
	f->legal = *allowed;
	struct pool *p = pool_create(cfg, allowed, inuse, &fake_ops, f, 0, err,
				     sizeof(err));
	assert_null(p);
	for (; *parts; parts++)
		if (!strstr(err, *parts))
			fail_msg("error '%s' does not mention '%s'", err, *parts);
	assert_int_equal(f->open_now, 0);
}

static void test_bind_bound_exceeded(void **state)
{
	(void)state;
	struct fake *f = fake_new(11);
	struct portset allowed = range(30000, 30099);
	f->inuse = range(30000, 30094); /* 95 of 100 refuse */
	const char *parts[] = { "4 ports in a row", "EADDRINUSE",
				"the plan allows 100 ports", "0 were in use",
				NULL };
	expect_create_error(f, &(struct pool_config){ .size = 5,
			    .max_bind_attempts = 4 }, &allowed, NULL, parts);
	portset_clear(&f->inuse);
	f->acces = range(30000, 30099);
	const char *parts2[] = { "socket 1 of 5", "4 failed to bind", NULL };
	f->refusals = 0;
	expect_create_error(f, &(struct pool_config){ .size = 5,
			    .max_bind_attempts = 4 }, &allowed, NULL, parts2);
	assert_int_equal(f->refusals, 4);
	/* Any other error stops at once and names the port and the cause. */
	portset_clear(&f->acces);
	f->hard_errno = EMFILE;
	const char *parts3[] = { "binding UDP port 300", "IPv4",
				 strerror(EMFILE), NULL };
	expect_create_error(f, &(struct pool_config){ .size = 5 }, &allowed,
			    NULL, parts3);
	finish(NULL, f);
}

static void test_size_exceeds_allowed(void **state)
{
	(void)state;
	struct fake *f = fake_new(3);
	struct portset allowed = range(10000, 10099);
	struct portset inuse = range(10000, 10029);
	const char *parts[] = { "size 80", "70 ports left", "allows 100",
				"30 of them in use", NULL };
	expect_create_error(f, &(struct pool_config){ .size = 80 }, &allowed,
			    &inuse, parts);
	assert_int_equal(f->binds, 0);
	/* Per-query mode caps open sockets at size: the same check applies. */
	expect_create_error(f, &(struct pool_config){ .size = 71,
			    .mode = POOL_MODE_PER_QUERY }, &allowed, &inuse,
			    parts + 3);
	finish(NULL, f);
}

/* True when a live slot of p is bound to port. */
static bool held(const struct pool *p, uint16_t port)
{
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(p, &cur, &in))
		if (!in.draining && in.port == port)
			return true;
	return false;
}

static void test_release_port(void **state)
{
	(void)state;
	struct fake *f = fake_new(99);
	struct portset allowed = range(60000, 60099);
	struct pool *pool = make(f, &(struct pool_config){ .size = 10,
				 .drain_timeout_ms = 500, .rotate_ms = 10 },
				 &allowed, NULL, 1000);
	struct pool_handle h;
	assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
	uint16_t busy = h.port;

	/* In flight: the slot moves now, the old socket drains. */
	assert_int_equal(pool_release_port(pool, busy, 1000), 1);
	assert_int_not_equal(slot_port(pool, h.slot), busy);
	assert_false(held(pool, busy));
	assert_true(fake_is_open(f, h.fd));
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.draining, 1);
	assert_int_equal(st.releases, 1);
	assert_int_equal(st.bound, 10);
	assert_int_equal(st.outstanding, 1);
	assert_int_equal(st.excluded, 1);
	/* The reply arrives: the old socket closes, the port is free. */
	assert_int_equal(pool_done(pool, &h), 0);
	assert_false(fake_is_open(f, h.fd));
	pool_stats(pool, &st);
	assert_int_equal(st.draining, 0);
	assert_int_equal(st.outstanding, 0);
	assert_int_equal(pool_done(pool, &h), -ENOENT);

	/* Idle: closed at once. */
	uint32_t cur = 3;
	struct pool_sock_info in;
	assert_true(pool_sock_next(pool, &cur, &in));
	uint16_t idle = in.port;
	assert_int_equal(pool_release_port(pool, idle, 1000), 0);
	assert_false(fake_is_open(f, in.fd4));
	assert_int_not_equal(slot_port(pool, 3), idle);

	/* Not ours: reported, and excluded all the same. */
	uint16_t other = 60000;
	while (other == busy || other == idle || held(pool, other))
		other++;
	assert_int_equal(pool_release_port(pool, other, 1000), -ENOENT);
	pool_stats(pool, &st);
	assert_int_equal(st.releases, 3);
	assert_int_equal(st.excluded, 3);
	assert_int_equal(st.available, 100 - 3 - 10);

	/*
	 * Released ports stay out of every later draw: 200 rotation periods
	 * re-bind each slot 200 times, and the fake flags any bind of them.
	 */
	portset_del(&f->legal, busy);
	portset_del(&f->legal, idle);
	portset_del(&f->legal, other);
	for (uint64_t t = 1000; t < 3000; t++)
		pool_tick(pool, t);
	pool_stats(pool, &st);
	assert_int_equal(st.rotations, 200 * 10);
	assert_false(f->illegal_bind);
	finish(pool, f);
}

static void test_drain_timeout(void **state)
{
	(void)state;
	struct fake *f = fake_new(5);
	struct portset allowed = range(60000, 60099);
	struct pool *pool = make(f, &(struct pool_config){ .size = 4,
				 .drain_timeout_ms = 500 }, &allowed, NULL, 0);
	struct pool_handle h;
	assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
	assert_int_equal(pool_release_port(pool, h.port, 1000), 1);
	assert_int_equal(pool_next_due(pool), 1500);
	pool_tick(pool, 1499);
	assert_true(fake_is_open(f, h.fd));
	pool_tick(pool, 1500);
	assert_false(fake_is_open(f, h.fd));
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.drain_timeouts, 1);
	assert_int_equal(st.draining, 0);
	assert_int_equal(pool_next_due(pool), UINT64_MAX);
	/* The late reply's pool_done is harmless. */
	assert_int_equal(pool_done(pool, &h), -ENOENT);
	finish(pool, f);
}

static void test_release_without_spare_port(void **state)
{
	(void)state;
	struct fake *f = fake_new(8);
	struct portset allowed = range(61000, 61004);
	struct pool *pool = make(f, &(struct pool_config){ .size = 4 },
				 &allowed, NULL, 0);
	/* First release takes the one spare port; the second finds none. */
	assert_int_equal(pool_release_port(pool, slot_port(pool, 0), 0), 0);
	uint16_t p1 = slot_port(pool, 1);
	assert_int_equal(pool_release_port(pool, p1, 0), 0);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.bound, 3);
	assert_int_equal(slot_port(pool, 1), 0);
	assert_int_equal(pool_next_due(pool), 0); /* refill is due */
	pool_tick(pool, 0);
	assert_int_equal(pool_next_due(pool), POOL_REFILL_RETRY_MS);
	/* Acquire never hands out the empty slot. */
	for (int i = 0; i < 300; i++) {
		struct pool_handle h;
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		assert_int_not_equal(h.slot, 1);
		assert_int_not_equal(h.port, p1);
		pool_done(pool, &h);
	}
	finish(pool, f);
}

static void test_rotation(void **state)
{
	(void)state;
	struct fake *f = fake_new(1234);
	struct portset allowed = range(45000, 45999);
	const uint32_t n = 50, period = 1000;
	const uint64_t t0 = 7000;
	struct pool *pool = make(f, &(struct pool_config){ .size = n,
				 .rotate_ms = period }, &allowed, NULL, t0);

	/* First deadlines: inside [t0, t0 + period) and spread out. */
	struct portset when;
	portset_clear(&when);
	uint64_t first = UINT64_MAX;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t cur = i;
		struct pool_sock_info in;
		assert_true(pool_sock_next(pool, &cur, &in));
		assert_true(in.deadline_ms >= t0 && in.deadline_ms < t0 + period);
		portset_add(&when, (uint16_t)(in.deadline_ms - t0));
		if (in.deadline_ms < first)
			first = in.deadline_ms;
	}
	assert_true(portset_count(&when) > n * 3 / 4);
	assert_int_equal(pool_next_due(pool), first);

	/* A query in flight on slot 0 when it rotates keeps its socket. */
	struct pool_handle h;
	do {
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		if (h.slot != 0)
			pool_done(pool, &h);
	} while (h.slot != 0);

	uint16_t port[50];
	uint32_t changes[50] = { 0 }, most_at_once = 0;
	for (uint32_t i = 0; i < n; i++)
		port[i] = slot_port(pool, i);
	bool saw_drain = false;
	for (uint64_t t = t0; t < t0 + 3 * period; t++) {
		pool_tick(pool, t);
		uint32_t now_changed = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint16_t p = slot_port(pool, i);
			if (p != port[i]) {
				changes[i]++;
				now_changed++;
				port[i] = p;
			}
		}
		if (now_changed > most_at_once)
			most_at_once = now_changed;
		struct pool_stats st;
		pool_stats(pool, &st);
		if (st.draining == 1 && fake_is_open(f, h.fd) && !saw_drain) {
			saw_drain = true;
			assert_int_equal(pool_done(pool, &h), 0);
			assert_false(fake_is_open(f, h.fd));
		}
	}
	assert_true(saw_drain);
	/* Every slot exactly once per period, never all at once. */
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(changes[i], 3);
	assert_true(most_at_once < n / 4);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.rotations, 3 * n);
	assert_int_equal(st.draining, 0);
	assert_int_equal(st.bound, n);
	finish(pool, f);
}

/* A per-query pool of size sockets over allowed, made at now. */
static struct pool *make_per_query(struct fake *f,
				   const struct portset *allowed,
				   uint32_t size, uint64_t now)
{
	return make(f, &(struct pool_config){ .size = size,
		    .mode = POOL_MODE_PER_QUERY }, allowed, NULL, now);
}

/* n per-query acquires, each given back at once. */
static void acquire_n(struct pool *pool, int n)
{
	for (int i = 0; i < n; i++) {
		struct pool_handle h;
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		assert_int_equal(pool_done(pool, &h), 0);
	}
}

static void test_per_query_mode(void **state)
{
	(void)state;
	struct fake *f = fake_new(77);
	struct portset allowed = range(33000, 33099);
	struct pool *pool = make_per_query(f, &allowed, 4, 0);
	assert_int_equal(f->binds, 0); /* holds nothing at rest */
	struct pool_handle h[4];
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pool_acquire(pool, AF_INET, &h[i]), 0);
		assert_true(fake_is_open(f, h[i].fd));
		for (int j = 0; j < i; j++)
			assert_int_not_equal(h[i].port, h[j].port);
	}
	assert_int_equal(f->binds, 4);
	struct pool_handle extra;
	assert_int_equal(pool_acquire(pool, AF_INET, &extra), -EAGAIN);
	assert_int_equal(pool_acquire(pool, AF_INET6, &extra), -EAFNOSUPPORT);
	/* In flight: released port stays until its query ends. */
	assert_int_equal(pool_release_port(pool, h[2].port, 0), 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pool_done(pool, &h[i]), 0);
		assert_false(fake_is_open(f, h[i].fd));
	}
	assert_int_equal(f->closes, 4);
	assert_int_equal(pool_done(pool, &h[0]), -ENOENT);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.bound, 0);
	assert_int_equal(st.acquires, 4);
	assert_int_equal(st.available, 99);
	finish(pool, f);
}

/*
 * Per-query acquires at time now until every port of want has been drawn
 * (each acquire given back at once); fails after 20,000 acquires.  Returns
 * how many acquires that took.
 */
static uint32_t acquire_until_drawn(struct pool *pool, struct portset want)
{
	uint32_t n = 0;
	while (portset_count(&want) > 0) {
		if (n++ == 20000)
			fail_msg("%u ports never drawn", portset_count(&want));
		struct pool_handle h;
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		portset_del(&want, h.port);
		assert_int_equal(pool_done(pool, &h), 0);
	}
	return n;
}

/*
 * A port another socket refuses is held out of UDP and TCP draws for
 * POOL_REFUSED_HOLD_MS, then drawn again like any other: refusals must not
 * shrink the allowed set for the pool's life.
 */
static void test_refused_port_held_then_drawn_again(void **state)
{
	(void)state;
	struct fake *f = fake_new(4242);
	struct portset allowed = range(34000, 34099);
	const uint64_t t0 = 5000;
	struct pool *pool = make_per_query(f, &allowed, 4, t0);
	/* A bystander holds ten ports; draws run into every one of them. */
	struct portset taken = range(34010, 34019);
	f->inuse = taken;
	struct portset rest = allowed;
	portset_diff(&rest, &taken);
	acquire_until_drawn(pool, rest);
	while (f->refusals < 10)
		acquire_n(pool, 1);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(f->refusals, 10); /* each tried once, then held out */
	assert_int_equal(st.refused, 10);
	assert_int_equal(st.excluded, 10);
	assert_int_equal(st.available, 90);
	/* pool_acquire has no clock: the holds start at the next tick, which
	 * is due at once. */
	assert_int_equal(pool_next_due(pool), t0);
	const uint64_t t1 = t0 + 700;
	pool_tick(pool, t1);
	assert_int_equal(pool_next_due(pool), t1 + POOL_REFUSED_HOLD_MS);

	/* The bystander leaves; until the hold is over no draw, UDP or TCP,
	 * tries those ports (the fake flags a bind outside legal). */
	portset_clear(&f->inuse);
	f->legal = rest;
	pool_tick(pool, t1 + POOL_REFUSED_HOLD_MS - 1);
	acquire_n(pool, 2000);
	struct sockaddr_in to = { .sin_family = AF_INET,
				  .sin_port = htons(53),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (int i = 0; i < 500; i++) {
		int fd = pool_connect_tcp(pool, (struct sockaddr *)&to,
					  sizeof(to), NULL);
		assert_true(fd >= 0);
		fake_close(f, fd);
	}
	assert_false(f->illegal_bind);
	pool_stats(pool, &st);
	assert_int_equal(st.refused, 10);
	assert_int_equal(st.readmitted, 0);

	/* Hold over: all ten are back, in both kinds of draw. */
	f->legal = allowed;
	pool_tick(pool, t1 + POOL_REFUSED_HOLD_MS);
	pool_stats(pool, &st);
	assert_int_equal(st.refused, 0);
	assert_int_equal(st.readmitted, 10);
	assert_int_equal(st.excluded, 0);
	assert_int_equal(st.available, 100);
	assert_int_equal(pool_next_due(pool), UINT64_MAX);
	acquire_until_drawn(pool, taken);
	struct portset tcp_want = taken;
	for (int i = 0; i < 20000 && portset_count(&tcp_want) > 0; i++) {
		uint16_t port = 0;
		int fd = pool_connect_tcp(pool, (struct sockaddr *)&to,
					  sizeof(to), &port);
		assert_true(fd >= 0);
		portset_del(&tcp_want, port);
		fake_close(f, fd);
	}
	assert_int_equal(portset_count(&tcp_want), 0);
	finish(pool, f);
}

/* EACCES (a privileged port, a security policy) does not pass: excluded for
 * good, never retried, unlike EADDRINUSE. */
static void test_eacces_is_for_good(void **state)
{
	(void)state;
	struct fake *f = fake_new(1789);
	struct portset allowed = range(36000, 36049);
	struct pool *pool = make_per_query(f, &allowed, 2, 0);
	f->acces = range(36000, 36009);
	struct portset rest = allowed;
	portset_diff(&rest, &f->acces);
	for (uint64_t t = 0; t <= 3 * POOL_REFUSED_HOLD_MS; t += 1000) {
		pool_tick(pool, t);
		acquire_until_drawn(pool, rest);
	}
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(f->refusals, st.bind_failures);
	assert_true(f->refusals > 0 && f->refusals <= 10);
	assert_int_equal(st.refused, 0);
	assert_int_equal(st.readmitted, 0);
	assert_int_equal(st.excluded, f->refusals);
	finish(pool, f);
}

/* Per-query acquires while the ports of taken refuse, until every port of
 * allowed outside taken and out has been drawn; returns the refusals it
 * met. */
static uint32_t refuse_round(struct pool *pool, struct fake *f,
			     const struct portset *allowed,
			     struct portset taken, const struct portset *out)
{
	uint32_t before = f->refusals;
	f->inuse = taken;
	struct portset rest = *allowed;
	portset_diff(&rest, &taken);
	portset_diff(&rest, out);
	acquire_until_drawn(pool, rest);
	return f->refusals - before;
}

/*
 * Thousands of holds in rounds of two batches whose holds start 1 s apart:
 * the ring grows while wrapped and while it holds both batches, and still
 * every hold ends in order and on time, each port once.
 */
static void test_many_holds_wrap_the_ring(void **state)
{
	(void)state;
	struct fake *f = fake_new(31337);
	struct portset allowed = range(37000, 37999);
	struct pool *pool = make(f, &(struct pool_config){ .size = 8,
				 .mode = POOL_MODE_PER_QUERY,
				 .max_bind_attempts = 1000 }, &allowed, NULL,
				 0);
	uint64_t t = 0, readmitted = 0;
	struct pool_stats st;
	for (int round = 0; round < 6; round++) {
		/* Batches of 50, 100, ... 300 ports, elsewhere each round. */
		uint16_t lo = (uint16_t)(37000 + round * 60);
		uint16_t n = (uint16_t)(50 * (round + 1));
		struct portset a = range(lo, (uint16_t)(lo + n - 1));
		struct portset b = range((uint16_t)(lo + n),
					 (uint16_t)(lo + 2 * n - 1));
		struct portset none;
		portset_clear(&none);
		uint32_t na = refuse_round(pool, f, &allowed, a, &none);
		pool_tick(pool, t += 500);      /* a's holds start */
		uint32_t nb = refuse_round(pool, f, &allowed, b, &a);
		pool_tick(pool, t + 1000);      /* b's start */
		portset_clear(&f->inuse);
		pool_stats(pool, &st);
		assert_int_equal(st.refused, na + nb);
		assert_int_equal(st.available, 1000 - na - nb);
		pool_tick(pool, t + POOL_REFUSED_HOLD_MS);
		pool_stats(pool, &st);
		assert_int_equal(st.readmitted, readmitted + na);
		assert_int_equal(st.refused, nb);
		pool_tick(pool, t += 1000 + POOL_REFUSED_HOLD_MS);
		readmitted += na + nb;
		pool_stats(pool, &st);
		assert_int_equal(st.refused, 0);
		assert_int_equal(st.readmitted, readmitted);
		assert_int_equal(st.available, 1000);
	}
	assert_true(readmitted > 1000); /* well past the ring's first size */
	finish(pool, f);
}

/* Releasing a port during its hold makes the hold for good. */
static void test_release_during_hold_is_for_good(void **state)
{
	(void)state;
	struct fake *f = fake_new(515);
	struct portset allowed = range(35000, 35019);
	struct pool *pool = make_per_query(f, &allowed, 2, 0);
	portset_add(&f->inuse, 35007);
	while (f->refusals == 0)
		acquire_n(pool, 1);
	portset_clear(&f->inuse);
	assert_int_equal(pool_release_port(pool, 35007, 100), -ENOENT);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.refused, 0);
	assert_int_equal(st.excluded, 1);
	/* Long after the hold would have ended: still never tried. */
	portset_del(&f->legal, 35007);
	pool_tick(pool, POOL_REFUSED_HOLD_MS * 3);
	acquire_n(pool, 2000);
	pool_stats(pool, &st);
	assert_int_equal(st.readmitted, 0);
	assert_int_equal(st.excluded, 1);
	assert_int_equal(st.available, 19);
	finish(pool, f);
}

static void test_acquire_uniform_over_slots(void **state)
{
	(void)state;
	struct fake *f = fake_new(2024);
	struct portset allowed = range(52000, 52999);
	struct pool *pool = make(f, &(struct pool_config){ .size = 20 },
				 &allowed, NULL, 0);
	uint32_t count[20] = { 0 };
	const uint32_t draws = 200000;
	for (uint32_t i = 0; i < draws; i++) {
		struct pool_handle h;
		assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
		count[h.slot]++;
		pool_done(pool, &h);
	}
	double expect = draws / 20.0, chi2 = 0;
	for (int i = 0; i < 20; i++)
		chi2 += (count[i] - expect) * (count[i] - expect) / expect;
	assert_true(chi2 < CHI2_999_DF19);
	finish(pool, f);
}

static void test_dual_family_slot(void **state)
{
	(void)state;
	struct fake *f = fake_new(31);
	struct portset allowed = range(47000, 47019);
	f->inuse6 = range(47000, 47004); /* IPv6 side taken on five ports */
	struct pool *pool = make(f, &(struct pool_config){ .size = 15,
				 .families = POOL_FAMILY_INET |
					     POOL_FAMILY_INET6,
				 .max_bind_attempts = 64 }, &allowed, NULL, 0);
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in)) {
		assert_true(in.port >= 47005);
		assert_int_equal(f->fd_port[in.fd4 - FAKE_FD_BASE], in.port);
		assert_int_equal(f->fd_port[in.fd6 - FAKE_FD_BASE], in.port);
		assert_int_equal(f->fd_family[in.fd6 - FAKE_FD_BASE], AF_INET6);
	}
	/* The IPv4 half of each refused port was closed again. */
	assert_int_equal(f->open_now, 30);
	struct pool_handle h;
	assert_int_equal(pool_acquire(pool, AF_INET6, &h), 0);
	assert_int_equal(f->fd_family[h.fd - FAKE_FD_BASE], AF_INET6);
	pool_done(pool, &h);
	finish(pool, f);
}

struct watch_log {
	struct fake *f;
	uint32_t open, close;
	bool closed_unknown;
};

static void on_watch(void *arg, int fd, int family, uint16_t port, bool open)
{
	struct watch_log *w = arg;
	(void)family;
	/* The fd is still open in both cases: closing is announced first. */
	if (!fake_is_open(w->f, fd) || w->f->fd_port[fd - FAKE_FD_BASE] != port)
		w->closed_unknown = true;
	if (open)
		w->open++;
	else
		w->close++;
}

static void test_watch(void **state)
{
	(void)state;
	struct fake *f = fake_new(55);
	struct portset allowed = range(48000, 48099);
	struct pool *pool = make(f, &(struct pool_config){ .size = 10,
				 .rotate_ms = 100 }, &allowed, NULL, 0);
	struct watch_log w = { .f = f };
	pool_set_watch(pool, on_watch, &w);
	assert_int_equal(w.open, 10);
	for (uint64_t t = 0; t < 100; t++)
		pool_tick(pool, t);
	assert_int_equal(w.open, 20);
	assert_int_equal(w.close, 10);
	pool_free(pool);
	assert_int_equal(w.close, 20);
	assert_false(w.closed_unknown);
	finish(NULL, f);
}

/* A TCP connection to 192.0.2.1:53 through pool_connect_tcp. */
static int tcp_to_upstream(struct pool *pool, uint16_t *port)
{
	const struct sockaddr_in up = { .sin_family = AF_INET,
					.sin_port = htons(53),
					.sin_addr.s_addr = htonl(0xc0000201) };
	return pool_connect_tcp(pool, (const struct sockaddr *)&up, sizeof(up),
				port);
}

/* TCP ports for upstream connections: uniform over allowed - excluded,
 * ports the pool's UDP sockets hold included. */
static void test_tcp_ports_uniform_over_allowed(void **state)
{
	(void)state;
	struct fake *f = fake_new(0x5851f42d4c957f2du);
	struct portset allowed = range(50000, 50109), inuse = range(50050, 50059);
	struct pool *pool = make(f, &(struct pool_config){ .size = 5 },
				 &allowed, &inuse, 0);
	uint32_t count[110] = { 0 };
	const uint32_t draws = 100000;
	for (uint32_t i = 0; i < draws; i++) {
		uint16_t port = 0;
		int fd = tcp_to_upstream(pool, &port);
		assert_true(fd >= FAKE_FD_BASE);
		assert_in_range(port, 50000, 50109);
		assert_false(portset_has(&inuse, port));
		count[port - 50000]++;
		fake_close(f, fd);
	}
	assert_int_equal(f->tcp_connects, draws);
	assert_int_equal(ntohs(f->tcp_to.sin_port), 53);
	/* 100 ports drawable: 110 allowed, 10 in use. */
	double expect = draws / 100.0, chi2 = 0;
	for (int i = 0; i < 110; i++)
		if (!portset_has(&inuse, (uint16_t)(50000 + i)))
			chi2 += (count[i] - expect) * (count[i] - expect) / expect;
	print_message("tcp chi2 %.1f (critical %.1f)\n", chi2, CHI2_999_DF99);
	assert_true(chi2 < CHI2_999_DF99);
	/* Every UDP slot's port was drawn for TCP as well. */
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in))
		assert_true(count[in.port - 50000] > 0);
	finish(pool, f);
}

/* Excluded ports are never drawn for TCP, so they cost no attempt: with 90
 * of 100 allowed ports in use at start and 16 attempts a call, no call may
 * fail while 10 ports are free.  A port excluded later (released) leaves
 * the TCP draws too. */
static void test_tcp_excluded_cost_no_attempt(void **state)
{
	(void)state;
	struct fake *f = fake_new(11);
	struct portset allowed = range(50000, 50099), inuse = range(50000, 50089);
	struct pool *pool = make(f, &(struct pool_config){ .size = 2 },
				 &allowed, &inuse, 0);
	for (int i = 0; i < 10000; i++) {
		uint16_t port = 0;
		int fd = tcp_to_upstream(pool, &port);
		assert_true(fd >= FAKE_FD_BASE);
		assert_in_range(port, 50090, 50099);
		fake_close(f, fd);
	}
	int rel = pool_release_port(pool, 50095, 0);
	assert_true(rel == 0 || rel == -ENOENT);
	for (int i = 0; i < 1000; i++) {
		uint16_t port = 0;
		int fd = tcp_to_upstream(pool, &port);
		assert_true(fd >= FAKE_FD_BASE);
		assert_int_not_equal(port, 50095);
		fake_close(f, fd);
	}
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.tcp_connects, 11000);
	assert_int_equal(st.tcp_refusals, 0);
	assert_int_equal(st.tcp_failures, 0);
	assert_false(f->illegal_bind);
	finish(pool, f);
}

/* A port refused for TCP is skipped for that draw, never excluded from the
 * pool: a TCP socket on it says nothing about UDP. */
static void test_tcp_refusal_skips_without_excluding(void **state)
{
	(void)state;
	struct fake *f = fake_new(7);
	struct portset allowed = range(50000, 50003);
	f->tcp_inuse = range(50000, 50002);
	struct pool *pool = make(f, &(struct pool_config){ .size = 2,
				 .max_bind_attempts = 64 }, &allowed, NULL, 0);
	struct pool_stats before, after;
	pool_stats(pool, &before);
	for (int i = 0; i < 50; i++) {
		uint16_t port = 0;
		int fd = tcp_to_upstream(pool, &port);
		assert_true(fd >= FAKE_FD_BASE);
		assert_int_equal(port, 50003);
		fake_close(f, fd);
	}
	assert_true(f->refusals > 0);
	pool_stats(pool, &after);
	assert_int_equal(after.available, before.available);
	assert_int_equal(after.bind_failures, before.bind_failures);
	assert_int_equal(after.tcp_connects, 50);
	assert_int_equal(after.tcp_refusals, f->refusals); /* UDP had none */
	assert_int_equal(after.tcp_failures, 0);
	/* Every port refused: the attempts run out with EADDRINUSE. */
	portset_add(&f->tcp_inuse, 50003);
	assert_int_equal(tcp_to_upstream(pool, NULL), -EADDRINUSE);
	/* A hard error is passed up as is. */
	f->tcp_inuse = range(1, 1);
	f->hard_errno = EMFILE;
	assert_int_equal(tcp_to_upstream(pool, NULL), -EMFILE);
	f->hard_errno = 0;
	pool_stats(pool, &after);
	assert_int_equal(after.tcp_failures, 2);
	const struct sockaddr unix_addr = { .sa_family = AF_UNIX };
	assert_int_equal(pool_connect_tcp(pool, &unix_addr, sizeof(unix_addr),
					  NULL), -EAFNOSUPPORT);
	/* Every allowed port excluded: nothing left to draw. */
	for (uint16_t p = 50000; p <= 50003; p++)
		pool_release_port(pool, p, 0);
	assert_int_equal(tcp_to_upstream(pool, NULL), -EADDRNOTAVAIL);
	finish(pool, f);
}

static void test_tcp_without_backend_support(void **state)
{
	(void)state;
	struct fake *f = fake_new(9);
	struct portset allowed = range(50000, 50009);
	f->legal = allowed;
	const struct pool_ops udp_only = { .random_uniform = fake_random,
					   .bind_udp = fake_bind,
					   .close_fd = fake_close };
	char err[128];
	struct pool *pool = pool_create(&(struct pool_config){ .size = 2 },
					&allowed, NULL, &udp_only, f, 0, err,
					sizeof(err));
	assert_non_null(pool);
	assert_int_equal(tcp_to_upstream(pool, NULL), -EOPNOTSUPP);
	finish(pool, f);
}

/* A listening TCP socket on 127.0.0.1, port in *addr. */
static int tcp_listener(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	*addr = (struct sockaddr_in){ .sin_family = AF_INET,
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	socklen_t len = sizeof(*addr);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

/* True when nothing holds TCP port p on any address right now. */
static bool tcp_port_free(uint16_t p)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(p) };
	bool ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* A real pool on 127.0.0.1 whose plan is one port, free for UDP and TCP,
 * searched for from `from` on. */
static struct pool *one_port_pool(uint16_t from, uint16_t *port)
{
	struct pool_config cfg = { .size = 1 };
	inet_pton(AF_INET, "127.0.0.1", &cfg.bind4);
	for (uint16_t p = from; p < from + 200; p++) {
		if (!tcp_port_free(p))
			continue;
		struct portset one = range(p, p);
		char err[256];
		struct pool *pool = pool_create(&cfg, &one, NULL, NULL, NULL, 0,
						err, sizeof(err));
		if (pool) {
			*port = p;
			return pool;
		}
	}
	fail_msg("no port free for UDP and TCP in %u-%u", from, from + 199);
	return NULL;
}

/* With real sockets and a plan of one port: a connection berthd closed
 * first leaves that port in TIME_WAIT, and the next connection, to another
 * peer, still leaves from it.  A foreign socket that holds the port without
 * SO_REUSEADDR keeps it to itself. */
static void test_tcp_real_port_sharing(void **state)
{
	(void)state;
	struct sockaddr_in a, b;
	int la = tcp_listener(&a), lb = tcp_listener(&b);
	uint16_t only = 0, port = 0;
	struct pool *pool = one_port_pool(61600, &only);

	int c1 = pool_connect_tcp(pool, (struct sockaddr *)&a, sizeof(a), &port);
	assert_true(c1 >= 0);
	assert_int_equal(port, only);
	int s1 = accept(la, NULL, NULL);
	assert_true(s1 >= 0);
	close(c1); /* berthd's side closes first: TIME_WAIT on `only` */
	char byte;
	assert_int_equal(read(s1, &byte, 1), 0);
	close(s1);
	assert_false(tcp_port_free(only)); /* the TIME_WAIT holds it */

	int c2 = pool_connect_tcp(pool, (struct sockaddr *)&b, sizeof(b), &port);
	assert_true(c2 >= 0);
	assert_int_equal(port, only);
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int s2 = accept(lb, (struct sockaddr *)&peer, &plen);
	assert_true(s2 >= 0);
	assert_int_equal(ntohs(peer.sin_port), only);
	close(s2);
	close(c2);
	pool_free(pool);

	/* Another program's socket on the plan's only port, bound without
	 * SO_REUSEADDR: every draw is refused, none is taken from it. */
	pool = one_port_pool(61800, &only);
	int foreign = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(only) };
	assert_int_equal(bind(foreign, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(pool_connect_tcp(pool, (struct sockaddr *)&b,
					  sizeof(b), NULL), -EADDRINUSE);
	struct pool_stats st;
	pool_stats(pool, &st);
	assert_int_equal(st.tcp_refusals, POOL_DEFAULT_BIND_ATTEMPTS);
	assert_int_equal(st.tcp_failures, 1);
	close(foreign);
	pool_free(pool);
	close(la);
	close(lb);
}

static void test_real_sockets(void **state)
{
	(void)state;
	struct portset allowed = range(61200, 61499);
	char err[256] = "";
	struct pool_config cfg = { .size = 24 };
	inet_pton(AF_INET, "127.0.0.1", &cfg.bind4);
	struct pool *pool = pool_create(&cfg, &allowed, NULL, NULL, NULL, 0,
					err, sizeof(err));
	if (!pool)
		fail_msg("pool_create: %s", err);
	uint32_t cur = 0;
	struct pool_sock_info in;
	while (pool_sock_next(pool, &cur, &in)) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		assert_int_equal(getsockname(in.fd4, (struct sockaddr *)&sin,
					     &len), 0);
		assert_int_equal(ntohs(sin.sin_port), in.port);
		assert_int_equal(sin.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
		assert_true(portset_has(&allowed, in.port));
	}
	/* A released idle port is really free for another program. */
	uint16_t p = slot_port(pool, 0);
	assert_int_equal(pool_release_port(pool, p, 0), 0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(p),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	close(fd);
	/* A port someone else holds is never bound by the pool. */
	struct pool_handle h;
	assert_int_equal(pool_acquire(pool, AF_INET, &h), 0);
	int probe = socket(AF_INET, SOCK_DGRAM, 0);
	sin.sin_port = htons(h.port);
	assert_int_not_equal(bind(probe, (struct sockaddr *)&sin, sizeof(sin)),
			     0);
	assert_int_equal(errno, EADDRINUSE);
	close(probe);
	pool_done(pool, &h);

	/* A TCP connection to an upstream really leaves from a port of the
	 * plan, and a second one to another peer may share it while the first
	 * lingers in TIME_WAIT (SO_REUSEADDR); a socket holding a port without
	 * that option keeps it to itself. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = 0;
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	struct sockaddr_in lsin;
	socklen_t llen = sizeof(lsin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&lsin, &llen), 0);
	uint16_t tport = 0;
	int tfd = pool_connect_tcp(pool, (struct sockaddr *)&lsin, sizeof(lsin),
				   &tport);
	assert_true(tfd >= 0);
	assert_true(portset_has(&allowed, tport));
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int afd = accept(lfd, (struct sockaddr *)&peer, &plen);
	assert_true(afd >= 0);
	assert_int_equal(ntohs(peer.sin_port), tport);
	close(afd);
	close(tfd);
	close(lfd);
	pool_free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never_draws_excluded),
		cmocka_unit_test(test_distinct_ports),
		cmocka_unit_test(test_draws_uniform_chi_square),
		cmocka_unit_test(test_bind_failures_are_retried),
		cmocka_unit_test(test_bind_bound_exceeded),
		cmocka_unit_test(test_size_exceeds_allowed),
		cmocka_unit_test(test_release_port),
		cmocka_unit_test(test_drain_timeout),
		cmocka_unit_test(test_release_without_spare_port),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_per_query_mode),
		cmocka_unit_test(test_refused_port_held_then_drawn_again),
		cmocka_unit_test(test_release_during_hold_is_for_good),
		cmocka_unit_test(test_eacces_is_for_good),
		cmocka_unit_test(test_many_holds_wrap_the_ring),
		cmocka_unit_test(test_acquire_uniform_over_slots),
		cmocka_unit_test(test_dual_family_slot),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_tcp_ports_uniform_over_allowed),
		cmocka_unit_test(test_tcp_excluded_cost_no_attempt),
		cmocka_unit_test(test_tcp_refusal_skips_without_excluding),
		cmocka_unit_test(test_tcp_without_backend_support),
		cmocka_unit_test(test_tcp_real_port_sharing),
		cmocka_unit_test(test_real_sockets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
