/* Unit tests for catalog: the shipped catalogs, the search order, names, and
 * every kind of malformed line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "berth/catalog.h"
#include "berth/portset.h"

#define SHIPPED BERTH_SOURCE_DATADIR "/catalog"
#define EXTRA BERTH_TEST_DATADIR "/plan_catalog_extra"
#define BAD BERTH_TEST_DATADIR "/plan_catalog_bad"

static struct catalog *load_ok(const char *name, const char *const *dirs)
{
	char err[1024] = "";
	struct catalog *cat = catalog_load(name, dirs, err, sizeof(err));
	if (!cat)
		fail_msg("catalog %s: %s", name, err);
	return cat;
}

static struct portset ports_of(const struct catalog *cat)
{
	struct portset s;
	portset_clear(&s);
	for (size_t i = 0; i < cat->n; i++)
		portset_add_range(&s, cat->entries[i].lo, cat->entries[i].hi);
	return s;
}

static void test_sbs_has_exactly_the_listed_ports(void **state)
{
	(void)state;
	static const char *const dirs[] = { SHIPPED, NULL };
	static const struct { uint16_t lo, hi; } listed[] = {
		{ 1433, 1434 }, { 1745, 1745 }, { 1080, 1080 }, { 1718, 1720 },
		{ 3343, 3343 }, { 1645, 1646 }, { 1812, 1813 }, { 1701, 1701 },
		{ 2883, 2883 }, { 4500, 4500 }, { 1801, 1801 }, { 4070, 4071 },
		{ 3500, 3619 },
	};
	struct catalog *cat = load_ok("sbs", dirs);
	struct portset got = ports_of(cat), want;

	portset_clear(&want);
	for (size_t i = 0; i < sizeof(listed) / sizeof(listed[0]); i++) {
		for (uint32_t p = listed[i].lo; p <= listed[i].hi; p++)
			assert_true(portset_has(&got, (uint16_t)p));
		/* The ports on either side are not part of the entry. */
		portset_add_range(&want, listed[i].lo, listed[i].hi);
	}
	assert_int_equal(cat->n, 13);
	assert_int_equal(portset_count(&got), 138);
	assert_int_equal(portset_count(&want), 138);
	portset_diff(&got, &want);
	assert_int_equal(portset_count(&got), 0);
	assert_string_equal(cat->name, "sbs");
	assert_string_equal(cat->path, SHIPPED "/sbs.ports");
	for (size_t i = 0; i < cat->n; i++) {
		assert_true(cat->entries[i].service[0] != '\0');
		assert_true(cat->entries[i].description[0] != '\0');
	}
	catalog_free(cat);
}

static void test_ad_parses(void **state)
{
	(void)state;
	static const char *const dirs[] = { SHIPPED, NULL };
	static const uint16_t must[] = { 53, 88, 123, 135, 137, 138, 139, 389,
					 445, 464, 500, 636, 3268, 3269, 4500,
					 5985, 5986, 9389 };
	struct catalog *cat = load_ok("ad", dirs);
	struct portset got = ports_of(cat);

	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		assert_true(portset_has(&got, must[i]));
	assert_int_equal(portset_count(&got), sizeof(must) / sizeof(must[0]));
	assert_int_equal(cat->entries[0].lo, 53);
	assert_string_equal(cat->entries[0].service, "dns");
	catalog_free(cat);
}

static void test_format_details(void **state)
{
	(void)state;
	static const char *const dirs[] = { EXTRA, NULL };
	struct catalog *cat = load_ok("lab", dirs);

	assert_int_equal(cat->n, 3);
	assert_int_equal(cat->entries[0].lo, 10000);
	assert_int_equal(cat->entries[0].hi, 10009);
	assert_int_equal(cat->entries[0].line, 4);
	assert_string_equal(cat->entries[0].service, "lab-a");
	/* The comment is cut and the trailing blanks with it. */
	assert_string_equal(cat->entries[0].description, "Lab service A");
	assert_int_equal(cat->entries[1].lo, 10020);
	assert_int_equal(cat->entries[1].hi, 10020);
	assert_string_equal(cat->entries[1].service, "lab-b");
	assert_string_equal(cat->entries[1].description, "");
	assert_string_equal(cat->entries[2].service, "lab.c_d");
	assert_string_equal(cat->entries[2].description, "Ten thirty");
	catalog_free(cat);
}

static void test_first_directory_wins(void **state)
{
	(void)state;
	static const char *const dirs[] = { EXTRA, SHIPPED, NULL };
	static const char *const shipped_first[] = { SHIPPED, EXTRA, NULL };
	struct catalog *cat = load_ok("sbs", dirs);

	assert_int_equal(cat->n, 1);
	assert_int_equal(cat->entries[0].lo, 7000);
	assert_string_equal(cat->path, EXTRA "/sbs.ports");
	catalog_free(cat);
	cat = load_ok("sbs", shipped_first);
	assert_int_equal(cat->n, 13);
	catalog_free(cat);
	/* A catalog only the second directory has is still found. */
	cat = load_ok("lab", shipped_first);
	assert_int_equal(cat->n, 3);
	catalog_free(cat);
}

static void test_unknown_catalog_says_where_it_looked(void **state)
{
	(void)state;
	static const char *const dirs[] = { EXTRA, SHIPPED, NULL };
	char err[1024] = "";

	assert_null(catalog_load("nosuch", dirs, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown catalog 'nosuch'"));
	assert_non_null(strstr(err, "nosuch.ports"));
	assert_non_null(strstr(err, EXTRA));
	assert_non_null(strstr(err, SHIPPED));
}

static void test_names(void **state)
{
	(void)state;
	static const char *const dirs[] = { SHIPPED, NULL };
	static const char *const bad[] = { "", "../sbs", "a/b", "Sbs", "sbs.ports",
					   "s b", "abcdefghijklmnopqrstuvwxyz0123456" };
	char err[256];

	assert_true(catalog_name_valid("sbs"));
	assert_true(catalog_name_valid("my_site-2"));
	assert_false(catalog_name_valid(NULL));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(catalog_name_valid(bad[i]));
		err[0] = '\0';
		assert_null(catalog_load(bad[i], dirs, err, sizeof(err)));
		assert_non_null(strstr(err, "bad catalog name"));
	}
}

/* Load a malformed fixture and check the error names file:line and why. */
static void expect_bad(const char *name, unsigned line, const char *why)
{
	static const char *const dirs[] = { BAD, NULL };
	char err[1024] = "", where[256];

	assert_null(catalog_load(name, dirs, err, sizeof(err)));
	snprintf(where, sizeof(where), BAD "/%s.ports:%u: ", name, line);
	if (strncmp(err, where, strlen(where)) != 0 || !strstr(err, why))
		fail_msg("%s: error '%s' should start '%s' and say '%s'", name, err,
			 where, why);
}

static void test_malformed_lines(void **state)
{
	(void)state;
	expect_bad("inverted", 3, "inverted range 3619-3500");
	expect_bad("garbage", 1, "'14x3' is not a port");
	expect_bad("noservice", 1, "missing service name");
	expect_bad("bigport", 1, "'70000' is not a port 0-65535");
	expect_bad("overlap", 2, "overlap line 1");
	expect_bad("badservice", 1, "bad character '/'");
	expect_bad("comma", 1, "'1433,1434' is not a port");
	expect_bad("longdesc", 1, "description longer than 60");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sbs_has_exactly_the_listed_ports),
		cmocka_unit_test(test_ad_parses),
		cmocka_unit_test(test_format_details),
		cmocka_unit_test(test_first_directory_wins),
		cmocka_unit_test(test_unknown_catalog_says_where_it_looked),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_malformed_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
