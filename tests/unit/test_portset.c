/* Unit tests for portset: set algebra, k-th member, parsing and formatting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "berth/portset.h"

static struct portset parsed(const char *text)
{
	struct portset s;
	char err[128] = "";
	portset_clear(&s);
	int rc = portset_parse(&s, text, err, sizeof(err));
	if (rc != 0)
		fail_msg("parse of '%s' failed: %s", text, err);
	return s;
}

static void expect_reject(const char *text, const char *reason_part)
{
	struct portset s;
	char err[128] = "";
	portset_clear(&s);
	assert_int_equal(portset_parse(&s, text, err, sizeof(err)), -EINVAL);
	if (!strstr(err, reason_part))
		fail_msg("'%s': error '%s' does not mention '%s'", text, err,
			 reason_part);
}

static void test_add_has_del(void **state)
{
	(void)state;
	struct portset s;
	portset_clear(&s);
	assert_int_equal(portset_count(&s), 0);
	portset_add(&s, 0);
	portset_add(&s, 65535);
	portset_add(&s, 4500);
	assert_true(portset_has(&s, 0));
	assert_true(portset_has(&s, 65535));
	assert_true(portset_has(&s, 4500));
	assert_false(portset_has(&s, 4501));
	assert_int_equal(portset_count(&s), 3);
	portset_del(&s, 4500);
	assert_false(portset_has(&s, 4500));
	assert_int_equal(portset_count(&s), 2);
}

static void test_add_range_word_edges(void **state)
{
	(void)state;
	struct portset s;
	/* Ranges inside one word, across two words, and spanning many. */
	const struct { uint16_t lo, hi; uint32_t n; } cases[] = {
		{ 5, 5, 1 }, { 0, 63, 64 }, { 63, 64, 2 }, { 60, 130, 71 },
		{ 1024, 5000, 3977 }, { 49152, 65535, 16384 }, { 0, 65535, 65536 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		portset_clear(&s);
		portset_add_range(&s, cases[i].lo, cases[i].hi);
		assert_int_equal(portset_count(&s), cases[i].n);
		assert_true(portset_has(&s, cases[i].lo));
		assert_true(portset_has(&s, cases[i].hi));
		if (cases[i].lo > 0)
			assert_false(portset_has(&s, cases[i].lo - 1));
		if (cases[i].hi < 65535)
			assert_false(portset_has(&s, cases[i].hi + 1));
	}
	portset_clear(&s);
	portset_add_range(&s, 10, 9); /* inverted: no-op */
	assert_int_equal(portset_count(&s), 0);
}

static void test_algebra(void **state)
{
	(void)state;
	struct portset a = parsed("1000-2000");
	struct portset b = parsed("1500-2500");

	struct portset u = a;
	portset_union(&u, &b);
	assert_int_equal(portset_count(&u), 1501);

	struct portset d = a;
	portset_diff(&d, &b);
	assert_int_equal(portset_count(&d), 500);
	assert_true(portset_has(&d, 1499));
	assert_false(portset_has(&d, 1500));

	struct portset i = a;
	portset_intersect(&i, &b);
	assert_int_equal(portset_count(&i), 501);
	assert_true(portset_overlaps(&a, &b));
	assert_false(portset_overlaps(&d, &b));

	/* |A ∪ B| = |A| + |B| - |A ∩ B| */
	assert_int_equal(portset_count(&u),
			 portset_count(&a) + portset_count(&b) - portset_count(&i));
}

static void test_nth(void **state)
{
	(void)state;
	struct portset s = parsed("7, 100-102, 65535");
	assert_int_equal(portset_nth(&s, 0), 7);
	assert_int_equal(portset_nth(&s, 1), 100);
	assert_int_equal(portset_nth(&s, 3), 102);
	assert_int_equal(portset_nth(&s, 4), 65535);
	assert_int_equal(portset_nth(&s, 5), -1);

	/* Every k maps to a distinct member, in order, over a big set. */
	struct portset big = parsed("1024-5000");
	int32_t prev = -1;
	for (uint32_t k = 0; k < portset_count(&big); k++) {
		int32_t p = portset_nth(&big, k);
		assert_true(p > prev);
		assert_true(portset_has(&big, (uint16_t)p));
		prev = p;
	}
	assert_int_equal(prev, 5000);
}

static void test_rank_matches_nth(void **state)
{
	(void)state;
	/* Sparse, dense, edges and empty words between members. */
	const char *lists[] = { "7, 100-102, 65535", "1024-5000, 49152-65535",
				"0", "65535", "0-65535", "",
				"63, 64, 127-128, 30000, 30063-30064" };
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		struct portset s = parsed(lists[i]);
		struct portset_rank r;
		portset_rank_build(&r, &s);
		uint32_t n = portset_count(&s);
		assert_int_equal(portset_rank_count(&r), n);
		for (uint32_t k = 0; k < n; k++)
			assert_int_equal(portset_rank_nth(&r, &s, k),
					 portset_nth(&s, k));
		assert_int_equal(portset_rank_nth(&r, &s, n), -1);
	}
}

static void test_parse_forms(void **state)
{
	(void)state;
	/* Windows ReservedPorts, one range per line. */
	struct portset s = parsed("1433-1434\n4500-4500\r\n3456-3459\n");
	assert_int_equal(portset_count(&s), 2 + 1 + 4);
	assert_true(portset_has(&s, 4500));
	/* Kernel ip_local_reserved_ports. */
	s = parsed("8080,9000-9100\n");
	assert_int_equal(portset_count(&s), 102);
	/* berth's own: commas and/or spaces, mixed. */
	s = parsed(" 88, 464  53 ,,  1024-1025\t");
	assert_int_equal(portset_count(&s), 5);
	assert_true(portset_has(&s, 464));
	/* Empty lists are valid and empty. */
	s = parsed("");
	assert_int_equal(portset_count(&s), 0);
	s = parsed(" , \n");
	assert_int_equal(portset_count(&s), 0);
	/* Extremes. */
	s = parsed("0, 65535, 0-0, 65535-65535");
	assert_int_equal(portset_count(&s), 2);
}

static void test_parse_rejects(void **state)
{
	(void)state;
	expect_reject("65536", "out of range");
	expect_reject("99999999999999999999", "out of range");
	expect_reject("5000-4000", "inverted range 5000-4000");
	expect_reject("65000-70000", "runs past 65535");
	expect_reject("70000-70001", "out of range");
	expect_reject("abc", "garbage 'abc'");
	expect_reject("12a", "garbage '12a'");
	expect_reject("-5", "garbage");
	expect_reject("5-", "garbage");
	expect_reject("1-2-3", "garbage");
	expect_reject("+80", "garbage");
	expect_reject("80;81", "garbage");
	expect_reject("1000 - 2000", "garbage '-'");
}

static void test_format(void **state)
{
	(void)state;
	char buf[256];
	struct portset s = parsed("9000-9100, 8080, 8081, 1");
	assert_int_equal(portset_format(&s, buf, sizeof(buf), ","),
			 strlen("1,8080-8081,9000-9100"));
	assert_string_equal(buf, "1,8080-8081,9000-9100");
	portset_format(&s, buf, sizeof(buf), ", ");
	assert_string_equal(buf, "1, 8080-8081, 9000-9100");

	/* Round trip: format then parse gives the same set. */
	struct portset back = parsed(buf);
	assert_memory_equal(&back, &s, sizeof(s));

	/* Truncation behaves like snprintf. */
	char small[6];
	size_t need = portset_format(&s, small, sizeof(small), ",");
	assert_int_equal(need, strlen("1,8080-8081,9000-9100"));
	assert_string_equal(small, "1,808");

	struct portset empty;
	portset_clear(&empty);
	assert_int_equal(portset_format(&empty, buf, sizeof(buf), ","), 0);
	assert_string_equal(buf, "");
}

static void test_next_range(void **state)
{
	(void)state;
	struct portset s = parsed("0-1, 63-64, 65535");
	uint32_t cur = 0;
	uint16_t lo, hi;
	assert_true(portset_next_range(&s, &cur, &lo, &hi));
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 1);
	assert_true(portset_next_range(&s, &cur, &lo, &hi));
	assert_int_equal(lo, 63);
	assert_int_equal(hi, 64);
	assert_true(portset_next_range(&s, &cur, &lo, &hi));
	assert_int_equal(lo, 65535);
	assert_int_equal(hi, 65535);
	assert_false(portset_next_range(&s, &cur, &lo, &hi));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has_del),
		cmocka_unit_test(test_add_range_word_edges),
		cmocka_unit_test(test_algebra),
		cmocka_unit_test(test_nth),
		cmocka_unit_test(test_rank_matches_nth),
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_next_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
