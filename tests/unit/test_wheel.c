/*
 * Unit tests for the timing wheel: exact firing (never early, never late when
 * advanced 1 ms at a time), FIFO ties, stop, lazy re-arm, cascades across
 * every level and epoch boundary, bounded advances and big time jumps.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "berth/wheel.h"

/* A timer owner that records when and in which order it fired. */
struct probe {
	struct wheel_timer timer;
	size_t id;
	uint64_t fired_at;
	unsigned fired;
};

/* What the callbacks see: the time passed to wheel_advance and a log. */
struct run {
	uint64_t now;
	size_t *order;
	size_t norder;
	struct wheel *w;
	struct probe *victim; /* stopped by the next callback, when set */
	bool rearm;           /* re-arm the firing probe, rearm_delay from now */
	uint64_t rearm_delay;
};

static void on_fire(struct wheel_timer *t, void *ctx)
{
	struct run *r = ctx;
	struct probe *p = wheel_container_of(t, struct probe, timer);
	assert_false(wheel_timer_armed(t));
	p->fired++;
	p->fired_at = r->now;
	if (r->order)
		r->order[r->norder] = p->id;
	r->norder++;
	if (r->victim) {
		wheel_stop(r->w, &r->victim->timer);
		r->victim = NULL;
	}
	if (r->rearm)
		wheel_start(r->w, t, r->now + r->rearm_delay);
}

static unsigned advance(struct wheel *w, struct run *r, uint64_t now)
{
	r->now = now;
	return wheel_advance(w, now, UINT32_MAX, r);
}

/* splitmix64: a fixed-seed generator so the property tests replay exactly. */
static uint64_t next_rand(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static struct probe *probes_new(size_t n)
{
	struct probe *p = calloc(n, sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		wheel_timer_init(&p[i].timer, on_fire);
		p[i].id = i;
	}
	return p;
}

/*
 * Check that order[] lists probes by deadline, ties in arming order (ids
 * were armed in increasing order).
 */
static void assert_deadline_fifo(const struct probe *p, const size_t *order,
				 size_t n)
{
	for (size_t i = 1; i < n; i++) {
		const struct probe *a = &p[order[i - 1]], *b = &p[order[i]];
		uint64_t da = wheel_timer_deadline(&a->timer);
		uint64_t db = wheel_timer_deadline(&b->timer);
		if (da > db || (da == db && a->id > b->id))
			fail_msg("fired %zu (deadline %llu) before %zu (deadline %llu)",
				 a->id, (unsigned long long)da, b->id,
				 (unsigned long long)db);
	}
}

/* Random deadlines, advanced 1 ms at a time: each fires exactly on time. */
static void check_exact_property(uint64_t start, uint64_t spread, size_t n,
				 uint64_t seed)
{
	struct wheel *w = wheel_new(start);
	struct probe *p = probes_new(n);
	size_t *order = calloc(n, sizeof(*order));
	struct run r = { .order = order, .w = w };
	uint64_t last = start;
	assert_non_null(w);
	for (size_t i = 0; i < n; i++) {
		uint64_t d = start + next_rand(&seed) % spread;
		wheel_start(w, &p[i].timer, d);
		if (d > last)
			last = d;
	}
	assert_int_equal(wheel_count(w), n);
	for (uint64_t now = start; now <= last; now++) {
		advance(w, &r, now);
		assert_true(wheel_next_deadline(w) > now);
	}
	assert_int_equal(r.norder, n);
	assert_int_equal(wheel_count(w), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(p[i].fired, 1);
		assert_int_equal(p[i].fired_at, wheel_timer_deadline(&p[i].timer));
	}
	assert_deadline_fifo(p, order, n);
	free(order);
	wheel_free(w);
	free(p);
}

static void test_exact_random_small_spread(void **state)
{
	(void)state;
	/* Many ties and level-0/1 traffic. */
	check_exact_property(0, 300, 5000, 1);
	check_exact_property(1000003, 5000, 5000, 2);
}

static void test_exact_random_wide_spread(void **state)
{
	(void)state;
	/* Up to level 3, starting at awkward offsets. */
	check_exact_property(12345, 1u << 20, 4000, 3);
	check_exact_property((UINT64_C(1) << 24) - 777, 300000, 4000, 4);
}

static void test_exact_random_across_epoch(void **state)
{
	(void)state;
	/* The 2^36 ms epoch boundary, where the overflow list takes part. */
	check_exact_property((UINT64_C(1) << 36) - 70000, 140000, 4000, 5);
}

/*
 * Random deadlines, random jumps: every timer fires at the first advance
 * whose time reaches its deadline, never before.
 */
static void test_random_jumps_never_early(void **state)
{
	(void)state;
	const size_t n = 5000;
	uint64_t seed = 42, start = 987654321;
	struct wheel *w = wheel_new(start);
	struct probe *p = probes_new(n);
	size_t *order = calloc(n, sizeof(*order));
	struct run r = { .order = order, .w = w };
	for (size_t i = 0; i < n; i++)
		wheel_start(w, &p[i].timer, start + next_rand(&seed) % (1u << 22));
	uint64_t prev = start;
	while (wheel_count(w) > 0) {
		uint64_t now = prev + 1 + next_rand(&seed) % 20000;
		size_t before = r.norder;
		advance(w, &r, now);
		for (size_t i = before; i < r.norder; i++) {
			uint64_t d = wheel_timer_deadline(&p[order[i]].timer);
			assert_true(d <= now);
			assert_true(d > prev);
		}
		/* Everything still armed is genuinely in the future. */
		assert_true(wheel_next_deadline(w) > now);
		prev = now;
	}
	assert_int_equal(r.norder, n);
	assert_deadline_fifo(p, order, n);
	free(order);
	wheel_free(w);
	free(p);
}

/*
 * The loop's way of driving the wheel: sleep until wheel_next_deadline(),
 * advance, repeat.  Wake-ups may be early (cascade points) but every timer
 * fires at exactly its deadline.
 */
static void test_next_deadline_wakeups_exact(void **state)
{
	(void)state;
	const size_t n = 3000;
	uint64_t seed = 7, start = 5;
	struct wheel *w = wheel_new(start);
	struct probe *p = probes_new(n);
	struct run r = { .w = w };
	uint64_t earliest = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		uint64_t d = start + 1 + next_rand(&seed) % (UINT64_C(1) << 33);
		wheel_start(w, &p[i].timer, d);
		if (d < earliest)
			earliest = d;
	}
	assert_true(wheel_next_deadline(w) <= earliest);
	unsigned wakeups = 0;
	while (wheel_count(w) > 0) {
		uint64_t at = wheel_next_deadline(w);
		assert_true(at > wheel_now(w));
		advance(w, &r, at);
		wakeups++;
	}
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i].fired_at, wheel_timer_deadline(&p[i].timer));
	/* A cascade point per level at most, per timer, plus the firings. */
	assert_true(wakeups <= n * WHEEL_LEVELS);
	assert_int_equal(wheel_next_deadline(w), UINT64_MAX);
	wheel_free(w);
	free(p);
}

static void test_fifo_ties_across_levels(void **state)
{
	(void)state;
	/*
	 * Same deadline, armed from ever closer times: the first sits at a
	 * high level, later ones at lower levels; they must still fire in
	 * arming order.
	 */
	const uint64_t d = (UINT64_C(1) << 24) + 300;
	const uint64_t arm_at[] = { 0, 1u << 13, 1u << 20, (1u << 24) + 10,
				    (1u << 24) + 299, d - 1 };
	const size_t n = sizeof(arm_at) / sizeof(arm_at[0]);
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(n);
	size_t order[6];
	struct run r = { .order = order, .w = w };
	for (size_t i = 0; i < n; i++) {
		advance(w, &r, arm_at[i]);
		wheel_start(w, &p[i].timer, d);
	}
	assert_int_equal(r.norder, 0);
	advance(w, &r, d);
	assert_int_equal(r.norder, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(order[i], i);
	wheel_free(w);
	free(p);
}

static void test_stop_before_expiry(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(100);
	struct probe *p = probes_new(3);
	struct run r = { .w = w };
	wheel_start(w, &p[0].timer, 150);
	wheel_start(w, &p[1].timer, 150);
	wheel_start(w, &p[2].timer, 100000);
	wheel_stop(w, &p[0].timer);
	wheel_stop(w, &p[0].timer); /* twice is harmless */
	wheel_stop(w, &p[2].timer);
	assert_false(wheel_timer_armed(&p[0].timer));
	assert_int_equal(wheel_count(w), 1);
	advance(w, &r, 200000);
	assert_int_equal(p[0].fired, 0);
	assert_int_equal(p[1].fired, 1);
	assert_int_equal(p[2].fired, 0);
	/* With nothing armed, nothing is pending either. */
	assert_int_equal(wheel_next_deadline(w), UINT64_MAX);
	wheel_free(w);
	free(p);
}

/* A callback stopping a timer that is already due keeps it from firing. */
static void test_stop_due_sibling_from_callback(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(2);
	struct run r = { .w = w, .victim = &p[1] };
	wheel_start(w, &p[0].timer, 10);
	wheel_start(w, &p[1].timer, 10);
	advance(w, &r, 10);
	assert_int_equal(p[0].fired, 1);
	assert_int_equal(p[1].fired, 0);
	assert_int_equal(wheel_count(w), 0);
	wheel_free(w);
	free(p);
}

static void test_lazy_touch_extends(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(2);
	struct run r = { .w = w };
	wheel_start(w, &p[0].timer, 100);
	advance(w, &r, 50);
	wheel_touch(w, &p[0].timer, 300000); /* recorded only */
	assert_int_equal(wheel_timer_deadline(&p[0].timer), 300000);
	/* Its old slot comes up: re-queued, not fired. */
	for (uint64_t now = 51; now < 300000; now += 1)
		advance(w, &r, now);
	assert_int_equal(p[0].fired, 0);
	assert_true(wheel_timer_armed(&p[0].timer));
	advance(w, &r, 300000);
	assert_int_equal(p[0].fired, 1);
	assert_int_equal(p[0].fired_at, 300000);

	/* Touching to an earlier deadline moves the timer for real. */
	wheel_start(w, &p[1].timer, 400000);
	wheel_touch(w, &p[1].timer, 300500);
	advance(w, &r, 300499);
	assert_int_equal(p[1].fired, 0);
	advance(w, &r, 300500);
	assert_int_equal(p[1].fired, 1);

	/* Touching a disarmed timer arms it. */
	wheel_touch(w, &p[1].timer, 300600);
	assert_true(wheel_timer_armed(&p[1].timer));
	advance(w, &r, 300600);
	assert_int_equal(p[1].fired, 2);
	wheel_free(w);
	free(p);
}

/* Touching a timer that is already due moves it back into the future. */
static void test_touch_due_timer(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(2);
	struct run r = { .w = w };
	wheel_start(w, &p[0].timer, 5);
	wheel_start(w, &p[1].timer, 5);
	r.now = 5;
	assert_int_equal(wheel_advance(w, 5, 1, &r), 1); /* p[1] left due */
	wheel_touch(w, &p[1].timer, 9);
	advance(w, &r, 8);
	assert_int_equal(p[1].fired, 0);
	advance(w, &r, 9);
	assert_int_equal(p[1].fired, 1);
	wheel_free(w);
	free(p);
}

static void test_level_boundaries(void **state)
{
	(void)state;
	const uint64_t offsets[] = {
		1, 63, 64, 65, 255, 256, 4095, 4096, 4097, 65535, 65536,
		262143, 262144, (1u << 24) - 1, 1u << 24, (1u << 24) + 1,
		1u << 30, UINT32_MAX, UINT64_C(1) << 32,
		(UINT64_C(1) << 36) - 1, UINT64_C(1) << 36,
		(UINT64_C(1) << 36) + 1, UINT64_C(1) << 40, UINT64_C(1) << 50,
	};
	const uint64_t starts[] = { 0, 1, 63, 12345, (UINT64_C(1) << 36) - 2 };
	for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
		for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
			uint64_t d = starts[s] + offsets[i];
			struct wheel *w = wheel_new(starts[s]);
			struct probe *p = probes_new(1);
			struct run r = { .w = w };
			wheel_start(w, &p[0].timer, d);
			assert_true(wheel_next_deadline(w) <= d);
			advance(w, &r, d - 1);
			if (p[0].fired)
				fail_msg("start %llu: deadline %llu fired at %llu",
					 (unsigned long long)starts[s],
					 (unsigned long long)d,
					 (unsigned long long)(d - 1));
			assert_true(wheel_next_deadline(w) <= d);
			advance(w, &r, d);
			assert_int_equal(p[0].fired, 1);
			free(p);
			wheel_free(w);
		}
	}
}

/* All boundary deadlines on one wheel, walked through their edges in order. */
static void test_level_boundaries_one_wheel(void **state)
{
	(void)state;
	const uint64_t d[] = {
		255, 256, 65535, 65536, (1u << 24) - 1, 1u << 24,
		UINT32_MAX, UINT64_C(1) << 32, UINT64_C(1) << 36,
		(UINT64_C(1) << 36) + 64, UINT64_C(1) << 44,
	};
	const size_t n = sizeof(d) / sizeof(d[0]);
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(n);
	struct run r = { .w = w };
	for (size_t i = n; i-- > 0;)
		wheel_start(w, &p[i].timer, d[i]);
	for (size_t i = 0; i < n; i++) {
		advance(w, &r, d[i] - 1);
		assert_int_equal(p[i].fired, 0);
		advance(w, &r, d[i]);
		assert_int_equal(p[i].fired, 1);
		assert_int_equal(r.norder, i + 1);
	}
	wheel_free(w);
	free(p);
}

static void test_bounded_expirations(void **state)
{
	(void)state;
	const size_t n = 13;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(n);
	size_t order[13];
	struct run r = { .order = order, .w = w, .now = 10 };
	for (size_t i = 0; i < 10; i++)
		wheel_start(w, &p[i].timer, 5);
	for (size_t i = 10; i < n; i++)
		wheel_start(w, &p[i].timer, 6);
	assert_int_equal(wheel_advance(w, 10, 4, &r), 4);
	assert_int_equal(r.norder, 4);
	/* Leftovers are due now: the loop must not sleep. */
	assert_true(wheel_next_deadline(w) <= 10);
	assert_int_equal(wheel_advance(w, 10, 4, &r), 4);
	assert_int_equal(wheel_advance(w, 10, 4, &r), 4);
	assert_int_equal(wheel_advance(w, 10, 4, &r), 1);
	assert_int_equal(wheel_advance(w, 10, 4, &r), 0);
	assert_int_equal(r.norder, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(order[i], i);
	/* A zero budget fires nothing. */
	wheel_start(w, &p[0].timer, 11);
	assert_int_equal(wheel_advance(w, 11, 0, &r), 0);
	assert_true(wheel_timer_armed(&p[0].timer));
	wheel_free(w);
	free(p);
}

/* A timer re-arming itself for "now" cannot spin an advance forever. */
static void test_bounded_self_rearm(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(1);
	struct run r = { .w = w, .now = 0 };
	wheel_start(w, &p[0].timer, 0);
	r.rearm = true;
	r.now = 100;
	assert_int_equal(wheel_advance(w, 100, 50, &r), 50);
	assert_true(wheel_timer_armed(&p[0].timer));
	assert_int_equal(p[0].fired, 50);
	wheel_free(w);
	free(p);
}

static void test_big_jump(void **state)
{
	(void)state;
	const size_t n = 2000;
	uint64_t seed = 99;
	struct wheel *w = wheel_new(1000);
	struct probe *p = probes_new(n);
	size_t *order = calloc(n, sizeof(*order));
	struct run r = { .order = order, .w = w };
	const uint64_t jump = UINT64_C(1) << 37;
	for (size_t i = 0; i < n; i++)
		wheel_start(w, &p[i].timer, 1000 + next_rand(&seed) % (2 * jump));
	advance(w, &r, 1000 + jump);
	for (size_t i = 0; i < n; i++) {
		bool due = wheel_timer_deadline(&p[i].timer) <= 1000 + jump;
		assert_int_equal(p[i].fired, due ? 1 : 0);
	}
	assert_deadline_fifo(p, order, r.norder);
	size_t first = r.norder;
	assert_true(first > n / 4 && first < 3 * n / 4);
	advance(w, &r, UINT64_MAX - 1);
	assert_int_equal(r.norder, n);
	assert_deadline_fifo(p, order + first, n - first);

	/* A deadline of UINT64_MAX waits for exactly that time. */
	r.order = NULL;
	wheel_start(w, &p[0].timer, UINT64_MAX);
	advance(w, &r, UINT64_MAX - 1);
	assert_true(wheel_timer_armed(&p[0].timer));
	advance(w, &r, UINT64_MAX);
	assert_false(wheel_timer_armed(&p[0].timer));
	free(order);
	wheel_free(w);
	free(p);
}

/* Deadlines in the past fire on the next advance, without moving time. */
static void test_past_deadline_and_backwards_now(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(500);
	struct probe *p = probes_new(2);
	struct run r = { .w = w };
	wheel_start(w, &p[0].timer, 10);
	assert_int_equal(wheel_next_deadline(w), 500);
	advance(w, &r, 400); /* a time before the wheel's own */
	assert_int_equal(p[0].fired, 1);
	assert_int_equal(wheel_now(w), 500);
	wheel_start(w, &p[1].timer, 501);
	advance(w, &r, 499);
	assert_int_equal(p[1].fired, 0);
	advance(w, &r, 501);
	assert_int_equal(p[1].fired, 1);
	wheel_free(w);
	free(p);
}

/* Freeing a wheel disarms what it still holds. */
static void test_free_disarms(void **state)
{
	(void)state;
	struct wheel *w = wheel_new(0);
	struct probe *p = probes_new(3);
	wheel_start(w, &p[0].timer, 0);
	wheel_start(w, &p[1].timer, 70000);
	wheel_start(w, &p[2].timer, UINT64_C(1) << 40);
	wheel_free(w);
	for (size_t i = 0; i < 3; i++)
		assert_false(wheel_timer_armed(&p[i].timer));
	wheel_free(NULL);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_random_small_spread),
		cmocka_unit_test(test_exact_random_wide_spread),
		cmocka_unit_test(test_exact_random_across_epoch),
		cmocka_unit_test(test_random_jumps_never_early),
		cmocka_unit_test(test_next_deadline_wakeups_exact),
		cmocka_unit_test(test_fifo_ties_across_levels),
		cmocka_unit_test(test_stop_before_expiry),
		cmocka_unit_test(test_stop_due_sibling_from_callback),
		cmocka_unit_test(test_lazy_touch_extends),
		cmocka_unit_test(test_touch_due_timer),
		cmocka_unit_test(test_level_boundaries),
		cmocka_unit_test(test_level_boundaries_one_wheel),
		cmocka_unit_test(test_bounded_expirations),
		cmocka_unit_test(test_bounded_self_rearm),
		cmocka_unit_test(test_big_jump),
		cmocka_unit_test(test_past_deadline_and_backwards_now),
		cmocka_unit_test(test_free_disarms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
