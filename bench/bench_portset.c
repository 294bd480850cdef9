/*
 * bench_portset: how fast the port plan's set works at the sizes berth meets.
 *
 * - parse a list of 1,000 ranges (a big kernel or registry reservation list);
 * - format it back;
 * - draw uniformly (arc4random_uniform + portset_nth) from a sparse and a
 *   dense allowed set, the socket pool's inner step.
 *
 * Prints figures; asserts nothing (benchmarks never gate CI).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "berth/portset.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of runs, in nanoseconds per operation. */
#define RUNS 9

/* 1,000 disjoint ranges of 20 ports every 65 ports, from 1024 upward. */
static char *thousand_ranges(void)
{
	size_t cap = 1000 * 16, len = 0;
	char *text = malloc(cap);
	if (!text)
		return NULL;
	for (unsigned i = 0; i < 1000; i++) {
		unsigned lo = 1024 + i * 64;
		len += (size_t)snprintf(text + len, cap - len, "%s%u-%u",
					i ? "," : "", lo, lo + 19);
	}
	return text;
}

int main(void)
{
	char *list = thousand_ranges();
	char err[128];
	struct portset s;
	double t[RUNS];
	if (!list)
		return 1;

	for (int r = 0; r < RUNS; r++) {
		double t0 = now_ns();
		for (int i = 0; i < 100; i++) {
			portset_clear(&s);
			if (portset_parse(&s, list, err, sizeof(err)) < 0) {
				fprintf(stderr, "parse failed: %s\n", err);
				return 1;
			}
		}
		t[r] = (now_ns() - t0) / 100;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	printf("parse 1,000-range list (%zu bytes, %u ports): %.1f us median\n",
	       strlen(list), portset_count(&s), t[RUNS / 2] / 1e3);

	char *out = malloc(strlen(list) + 1);
	for (int r = 0; r < RUNS && out; r++) {
		double t0 = now_ns();
		for (int i = 0; i < 100; i++)
			portset_format(&s, out, strlen(list) + 1, ",");
		t[r] = (now_ns() - t0) / 100;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	printf("format it back:                               %.1f us median (round trip %s)\n",
	       t[RUNS / 2] / 1e3, out && strcmp(out, list) == 0 ? "exact" : "DIFFERS");
	free(out);

	/* Draws: the reserved list above removed from the IANA range (dense),
	 * and the reserved list itself (sparse, 1,000 runs). */
	struct portset dense, sparse = s;
	portset_clear(&dense);
	portset_add_range(&dense, 49152, 65535);
	portset_diff(&dense, &s);
	const struct { const char *name; struct portset *set; } cases[] = {
		{ "IANA 49152-65535 minus 1,000 ranges", &dense },
		{ "the 1,000 ranges themselves", &sparse },
	};
	for (size_t c = 0; c < 2; c++) {
		uint32_t n = portset_count(cases[c].set);
		volatile int32_t sink = 0;
		enum { DRAWS = 200000 };
		struct portset_rank rank;
		for (int r = 0; r < RUNS; r++) {
			double t0 = now_ns();
			for (int i = 0; i < DRAWS / 10; i++)
				sink = portset_nth(cases[c].set, arc4random_uniform(n));
			t[r] = (now_ns() - t0) / (DRAWS / 10);
		}
		qsort(t, RUNS, sizeof(t[0]), cmp_double);
		printf("uniform draw, scan    (portset_nth)      from %-36s (%5u ports): %7.1f ns median\n",
		       cases[c].name, n, t[RUNS / 2]);
		for (int r = 0; r < RUNS; r++) {
			double t0 = now_ns();
			portset_rank_build(&rank, cases[c].set);
			for (int i = 0; i < DRAWS; i++)
				sink = portset_rank_nth(&rank, cases[c].set,
							arc4random_uniform(n));
			t[r] = (now_ns() - t0) / DRAWS;
		}
		(void)sink;
		qsort(t, RUNS, sizeof(t[0]), cmp_double);
		printf("uniform draw, indexed (portset_rank_nth) from %-36s (%5u ports): %7.1f ns median\n",
		       cases[c].name, n, t[RUNS / 2]);
	}
	free(list);
	return 0;
}
