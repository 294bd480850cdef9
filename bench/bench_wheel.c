/*
 * bench_wheel: what a timer costs on berth's wheel.  Arms 1M timers with
 * random deadlines over about 17 minutes, then measures start, touch (lazy
 * extension), stop, re-start and expiry (advancing 1 ms at a time through
 * the whole range, as a loop woken every millisecond would) in ns per
 * operation.  Prints figures, asserts nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "berth/wheel.h"

#define NTIMERS 1000000u
#define SPREAD_MS (1u << 20)

static uint64_t fired;

static void on_fire(struct wheel_timer *t, void *ctx)
{
	(void)t;
	(void)ctx;
	fired++;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void report(const char *what, uint64_t ns, uint64_t ops)
{
	printf("%-34s %10.1f ns/op  (%llu ops, %.1f ms)\n", what,
	       (double)ns / (double)ops, (unsigned long long)ops,
	       (double)ns / 1e6);
}

int main(void)
{
	struct wheel_timer *timers = calloc(NTIMERS, sizeof(*timers));
	uint64_t *deadline = calloc(NTIMERS, sizeof(*deadline));
	struct wheel *w = wheel_new(0);
	int rc = 1;
	if (!timers || !deadline || !w) {
		fprintf(stderr, "bench_wheel: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < NTIMERS; i++) {
		wheel_timer_init(&timers[i], on_fire);
		deadline[i] = 1 + arc4random_uniform(SPREAD_MS);
	}

	uint64_t t0 = now_ns();
	for (size_t i = 0; i < NTIMERS; i++)
		wheel_start(w, &timers[i], deadline[i]);
	report("start (random deadline)", now_ns() - t0, NTIMERS);

	t0 = now_ns();
	for (size_t i = 0; i < NTIMERS; i++)
		wheel_touch(w, &timers[i], deadline[i] + 1000);
	report("touch (lazy, later deadline)", now_ns() - t0, NTIMERS);

	t0 = now_ns();
	for (size_t i = 0; i < NTIMERS; i++)
		wheel_stop(w, &timers[i]);
	report("stop", now_ns() - t0, NTIMERS);

	t0 = now_ns();
	for (size_t i = 0; i < NTIMERS; i++)
		wheel_start(w, &timers[i], deadline[i]);
	report("start again (warm)", now_ns() - t0, NTIMERS);

	t0 = now_ns();
	unsigned advances = 0;
	for (uint64_t ms = 1; ms <= SPREAD_MS; ms++, advances++)
		wheel_advance(w, ms, UINT32_MAX, NULL);
	uint64_t spent = now_ns() - t0;
	report("expire (incl. cascades), per timer", spent, fired);
	report("advance by 1 ms, per call", spent, advances);

	/* The same expiry when the loop sleeps until wheel_next_deadline(). */
	fired = 0;
	for (size_t i = 0; i < NTIMERS; i++)
		wheel_start(w, &timers[i], SPREAD_MS + deadline[i]);
	unsigned wakeups = 0;
	t0 = now_ns();
	while (wheel_count(w) > 0) {
		wheel_advance(w, wheel_next_deadline(w), UINT32_MAX, NULL);
		wakeups++;
	}
	spent = now_ns() - t0;
	report("expire via next_deadline, per timer", spent, fired);
	printf("%-34s %10u\n", "wake-ups needed", wakeups);
	printf("%-34s %10llu of %u\n", "timers fired", (unsigned long long)fired,
	       NTIMERS);
	rc = 0;
out:
	wheel_free(w);
	free(deadline);
	free(timers);
	return rc;
}
