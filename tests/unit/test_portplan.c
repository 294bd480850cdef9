/* Unit tests for portplan: every way to give the dynamic range, every
 * rejection with its file:line and key, reservations and their origins,
 * the pool fit, and merging the plan into a (fake) kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/portplan.h"

#define SYSCTL BERTH_TEST_DATADIR "/plan_sysctl"
#define EXTRA BERTH_TEST_DATADIR "/plan_catalog_extra"
#define BAD BERTH_TEST_DATADIR "/plan_catalog_bad"
#define SHIPPED BERTH_SOURCE_DATADIR "/catalog"

static const struct plan_env fixture_env = { .sysctl_dir = SYSCTL };

static struct plan *build_ok(const struct plan_spec *spec)
{
	char err[1024] = "";
	struct plan *plan = plan_build(spec, &fixture_env, err, sizeof(err));
	if (!plan)
		fail_msg("plan_build failed: %s", err);
	return plan;
}

/* plan_build must fail with an error that starts with prefix (file:line,
 * section and key) and mentions why. */
static void expect_error(const struct plan_spec *spec, const char *prefix,
			 const char *why)
{
	char err[1024] = "";
	struct plan *plan = plan_build(spec, &fixture_env, err, sizeof(err));
	if (plan) {
		plan_free(plan);
		fail_msg("plan_build accepted a spec that '%s' should reject", why);
	}
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, why))
		fail_msg("error '%s' should start '%s' and say '%s'", err, prefix, why);
}

static void assert_range(const struct plan *p, unsigned lo, unsigned hi)
{
	assert_int_equal(p->dynamic_lo, lo);
	assert_int_equal(p->dynamic_hi, hi);
	assert_int_equal(portset_count(&p->dynamic), hi - lo + 1);
	assert_true(portset_has(&p->dynamic, (uint16_t)lo));
	assert_true(portset_has(&p->dynamic, (uint16_t)hi));
	if (lo > 0)
		assert_false(portset_has(&p->dynamic, (uint16_t)(lo - 1)));
	if (hi < 65535)
		assert_false(portset_has(&p->dynamic, (uint16_t)(hi + 1)));
}

static void test_default_range(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf" };
	struct plan *p = build_ok(&spec);

	assert_range(p, 49152, 65535);
	assert_string_equal(p->dynamic_how, "default (IANA 49152-65535)");
	assert_int_equal(portset_count(&p->allowed), 16384);
	assert_int_equal(p->nres, 0);
	assert_true(p->avoid_in_use);
	/* The kernel's list is read even without from_kernel, for check. */
	assert_true(p->kernel_read);
	assert_int_equal(portset_count(&p->kernel_reserved), 102);
	assert_true(portset_has(&p->kernel_reserved, 8080));
	/* So is its ephemeral range (32768 60999 in the fixture). */
	assert_int_equal(portset_count(&p->kernel_ephemeral), 60999 - 32768 + 1);
	assert_true(portset_has(&p->kernel_ephemeral, 32768));
	assert_false(portset_has(&p->kernel_ephemeral, 61000));
	assert_int_equal(portset_count(&p->reserved), 0);
	assert_string_equal(p->file, "berth.conf");
	plan_free(p);

	const struct plan_env gone = { .sysctl_dir = "/nonexistent/berth" };
	char err[256] = "";
	p = plan_build(&spec, &gone, err, sizeof(err));
	assert_non_null(p);
	assert_false(p->kernel_read);
	plan_free(p);
}

static void test_dynamic_range(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .dynamic_range = { "1024-5000", 3 } };
	struct plan *p = build_ok(&spec);
	assert_range(p, 1024, 5000);
	assert_string_equal(p->dynamic_how, "dynamic_range = 1024-5000 at berth.conf:3");
	plan_free(p);

	static const struct { const char *text, *why; } bad[] = {
		{ "5000-1024", "inverted range 5000-1024" },
		{ "abc", "'abc' is not a range A-B" },
		{ "1024-", "is not a range A-B" },
		{ "1024-70000", "out of range" },
		{ "0-100", "out of range" },
		{ "+1-100", "is not a range A-B" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		spec.dynamic_range.value = bad[i].text;
		expect_error(&spec, "berth.conf:3: [ports] dynamic_range: ", bad[i].why);
	}
}

static void test_netsh_form(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .dynamic_start = { "10000", 3 },
				  .dynamic_count = { "5000", 4 } };
	struct plan *p = build_ok(&spec);
	assert_range(p, 10000, 14999);
	assert_non_null(strstr(p->dynamic_how, "dynamic_count = 5000"));
	plan_free(p);

	/* A count alone starts at 49152; a start alone runs to 65535. */
	struct plan_spec only_count = { .file = "berth.conf",
					.dynamic_count = { "1000", 4 } };
	p = build_ok(&only_count);
	assert_range(p, 49152, 50151);
	plan_free(p);
	struct plan_spec only_start = { .file = "berth.conf",
					.dynamic_start = { "60000", 3 } };
	p = build_ok(&only_start);
	assert_range(p, 60000, 65535);
	plan_free(p);
	/* The whole of 65535 is reachable exactly. */
	spec.dynamic_start.value = "60000";
	spec.dynamic_count.value = "5536";
	p = build_ok(&spec);
	assert_range(p, 60000, 65535);
	plan_free(p);

	spec.dynamic_count.value = "5537";
	expect_error(&spec, "berth.conf:4: [ports] dynamic_count: ", "run past 65535");
	spec.dynamic_count.value = "0";
	expect_error(&spec, "berth.conf:4: [ports] dynamic_count: ", "out of range");
	spec.dynamic_count.value = "many";
	expect_error(&spec, "berth.conf:4: [ports] dynamic_count: ", "'many' is not a number");
	spec.dynamic_count.value = "100";
	spec.dynamic_start.value = "70000";
	expect_error(&spec, "berth.conf:3: [ports] dynamic_start: ", "out of range");
}

static void test_max_user_port_legacy_and_count(void **state)
{
	(void)state;
	struct plan_spec legacy = { .file = "berth.conf",
				    .max_user_port = { "5000", 4 },
				    .max_user_port_semantics = { "legacy", 5 } };
	struct plan *p = build_ok(&legacy);
	assert_range(p, 1024, 5000);
	assert_int_equal(portset_count(&p->allowed), 3977);
	assert_string_equal(p->dynamic_how,
			    "max_user_port = 5000 (legacy: 1024..N) at berth.conf:4");
	plan_free(p);

	struct plan_spec count = { .file = "berth.conf",
				   .max_user_port = { "16384", 4 },
				   .max_user_port_semantics = { "count", 5 } };
	p = build_ok(&count);
	assert_range(p, 49152, 65535);
	assert_int_equal(portset_count(&p->allowed), 16384);
	assert_non_null(strstr(p->dynamic_how, "count"));
	plan_free(p);

	/* count semantics start at dynamic_start when it is given. */
	count.dynamic_start = (struct plan_setting){ "10000", 3 };
	count.max_user_port.value = "1000";
	p = build_ok(&count);
	assert_range(p, 10000, 10999);
	plan_free(p);
	count.max_user_port.value = "55537";
	expect_error(&count, "berth.conf:4: [ports] max_user_port: ", "run past 65535");
	count.dynamic_start = (struct plan_setting){ 0 };
	count.max_user_port.value = "16385";
	expect_error(&count, "berth.conf:4: [ports] max_user_port: ", "run past 65535");

	legacy.max_user_port.value = "70000";
	expect_error(&legacy, "berth.conf:4: [ports] max_user_port: ", "out of range 1025-65535");
	legacy.max_user_port.value = "1024";
	expect_error(&legacy, "berth.conf:4: [ports] max_user_port: ", "out of range 1025-65535");
	legacy.max_user_port.value = "5000x";
	expect_error(&legacy, "berth.conf:4: [ports] max_user_port: ", "'5000x' is not a number");
	legacy.max_user_port.value = "5000";
	legacy.max_user_port_semantics.value = "sometimes";
	expect_error(&legacy, "berth.conf:5: [ports] max_user_port_semantics: ",
		     "unknown semantics 'sometimes' (say legacy or count)");
}

static void test_max_user_port_needs_semantics(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .max_user_port = { "5000", 4 } };
	expect_error(&spec, "berth.conf:4: [ports] max_user_port: ",
		     "max_user_port_semantics is not set");
	char err[512] = "";
	assert_null(plan_build(&spec, &fixture_env, err, sizeof(err)));
	assert_non_null(strstr(err, "legacy"));
	assert_non_null(strstr(err, "count"));

	struct plan_spec only_sem = { .file = "berth.conf",
				      .max_user_port_semantics = { "count", 5 } };
	expect_error(&only_sem, "berth.conf:5: [ports] max_user_port_semantics: ",
		     "without max_user_port");
}

static void test_two_forms_conflict(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .dynamic_range = { "1024-5000", 3 },
				  .dynamic_start = { "10000", 4 } };
	expect_error(&spec, "berth.conf:4: [ports] dynamic_start: ",
		     "conflicts with dynamic_range at berth.conf:3");

	struct plan_spec kern = { .file = "berth.conf",
				  .dynamic_range = { "1024-5000", 9 },
				  .from_kernel = { "yes", 6 } };
	expect_error(&kern, "berth.conf:9: [ports] dynamic_range: ",
		     "conflicts with from_kernel at berth.conf:6");
	/* from_kernel = no gives no range, so it conflicts with nothing. */
	kern.from_kernel.value = "no";
	struct plan *p = build_ok(&kern);
	assert_range(p, 1024, 5000);
	plan_free(p);

	struct plan_spec mup = { .file = "berth.conf",
				 .max_user_port = { "16384", 4 },
				 .max_user_port_semantics = { "count", 5 },
				 .dynamic_count = { "100", 6 } };
	expect_error(&mup, "berth.conf:6: [ports] dynamic_count: ",
		     "conflicts with max_user_port at berth.conf:4");

	struct plan_spec legacy_start = { .file = "berth.conf",
					  .max_user_port = { "5000", 4 },
					  .max_user_port_semantics = { "legacy", 5 },
					  .dynamic_start = { "2000", 7 } };
	expect_error(&legacy_start, "berth.conf:7: [ports] dynamic_start: ",
		     "conflicts with max_user_port at berth.conf:4");
}

static void test_from_kernel(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf", .from_kernel = { "yes", 6 } };
	struct plan *p = build_ok(&spec);

	assert_range(p, 32768, 60999);
	assert_non_null(strstr(p->dynamic_how, "kernel ip_local_port_range"));
	assert_int_equal(p->nres, 2);
	assert_int_equal(p->res[0].lo, 8080);
	assert_int_equal(p->res[0].hi, 8080);
	assert_int_equal(p->res[0].origin, PLAN_ORIGIN_KERNEL);
	assert_int_equal(p->res[1].lo, 9000);
	assert_int_equal(p->res[1].hi, 9100);
	assert_int_equal(p->res[1].origin, PLAN_ORIGIN_KERNEL);
	assert_int_equal(portset_count(&p->reserved), 102);
	assert_int_equal(portset_count(&p->allowed), 60999 - 32768 + 1);
	plan_free(p);

	const struct plan_env gone = { .sysctl_dir = "/nonexistent/berth" };
	char err[1024] = "";
	assert_null(plan_build(&spec, &gone, err, sizeof(err)));
	assert_non_null(strstr(err, "berth.conf:6: [ports] from_kernel: cannot read "
				    "/nonexistent/berth/ip_local_port_range"));

	spec.from_kernel.value = "maybe";
	expect_error(&spec, "berth.conf:6: [ports] from_kernel: ", "'maybe' is not yes or no");
}

static void test_reserved_as_written(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .reserved = { "4500-4500, 1433-1434 3343", 7 } };
	struct plan *p = build_ok(&spec);
	char buf[128];

	assert_int_equal(p->nres, 3);
	assert_int_equal(p->res[0].lo, 1433);
	assert_int_equal(p->res[0].hi, 1434);
	assert_int_equal(p->res[1].lo, 3343);
	assert_int_equal(p->res[2].lo, 4500);
	assert_int_equal(p->res[2].hi, 4500);
	for (size_t i = 0; i < p->nres; i++) {
		assert_int_equal(p->res[i].origin, PLAN_ORIGIN_CONFIG);
		assert_int_equal(p->res[i].line, 7);
	}
	assert_int_equal(portset_count(&p->reserved), 4);
	plan_origin_describe(&p->res[0], p->file, buf, sizeof(buf));
	assert_string_equal(buf, "config (berth.conf:7)");
	plan_free(p);

	/* Ranges are read back whole, however long their digits run. */
	spec.reserved.value = "000000000000000000000000000000000000001433-0001434";
	p = build_ok(&spec);
	assert_int_equal(p->nres, 1);
	assert_int_equal(p->res[0].lo, 1433);
	assert_int_equal(p->res[0].hi, 1434);
	plan_free(p);

	spec.reserved.value = "1433, 5000-4000";
	expect_error(&spec, "berth.conf:7: [ports] reserved: ", "inverted range 5000-4000");
	spec.reserved.value = "12x";
	expect_error(&spec, "berth.conf:7: [ports] reserved: ", "garbage '12x'");
	spec.reserved.value = "70000";
	expect_error(&spec, "berth.conf:7: [ports] reserved: ", "out of range");
	spec.reserved.value = "4500, 0";
	expect_error(&spec, "berth.conf:7: [ports] reserved: ",
		     "port 0 cannot be reserved (ports are 1-65535)");
	spec.reserved.value = "0-1023";
	expect_error(&spec, "berth.conf:7: [ports] reserved: ", "port 0 cannot");
}

static void test_allowed_is_dynamic_minus_reserved(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .dynamic_range = { "10000-10099", 3 },
				  .reserved = { "10010-10019, 10050, 20000", 7 } };
	struct plan *p = build_ok(&spec);

	assert_int_equal(portset_count(&p->reserved), 12);
	assert_int_equal(portset_count(&p->allowed), 89);
	assert_true(portset_has(&p->allowed, 10000));
	assert_true(portset_has(&p->allowed, 10009));
	assert_false(portset_has(&p->allowed, 10010));
	assert_false(portset_has(&p->allowed, 10019));
	assert_true(portset_has(&p->allowed, 10020));
	assert_false(portset_has(&p->allowed, 10050));
	assert_false(portset_has(&p->allowed, 20000));
	plan_free(p);
}

static void test_catalogs(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .reserved_catalog = { "sbs, ad", 8 } };
	struct plan *p = build_ok(&spec);
	char buf[160];
	size_t nat_t = 0;

	/* sbs and ad share only 4500. */
	assert_int_equal(p->nres, 13 + 15);
	assert_int_equal(portset_count(&p->reserved), 138 + 18 - 1);
	for (size_t i = 1; i < p->nres; i++)
		assert_true(p->res[i - 1].lo <= p->res[i].lo);
	for (size_t i = 0; i < p->nres; i++) {
		assert_int_equal(p->res[i].origin, PLAN_ORIGIN_CATALOG);
		if (p->res[i].lo != 4500)
			continue;
		plan_origin_describe(&p->res[i], p->file, buf, sizeof(buf));
		assert_string_equal(buf, nat_t++ == 0 ?
				    "catalog ad: ipsec-nat-t (IPsec NAT traversal)" :
				    "catalog sbs: ipsec-nat-t (IPsec NAT traversal)");
	}
	assert_int_equal(nat_t, 2);
	plan_free(p);

	spec.reserved_catalog.value = "sbs nosuch";
	expect_error(&spec, "berth.conf:8: [ports] reserved_catalog: ",
		     "unknown catalog 'nosuch' (looked for nosuch.ports in " SHIPPED);
	spec.reserved_catalog.value = "../etc/passwd";
	expect_error(&spec, "berth.conf:8: [ports] reserved_catalog: ", "bad catalog name");
	spec.reserved_catalog.value = "sbs,sbs";
	expect_error(&spec, "berth.conf:8: [ports] reserved_catalog: ", "named twice");
}

static void test_catalog_dir(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .reserved_catalog = { "sbs, ad", 8 },
				  .catalog_dir = { EXTRA, 9 } };
	struct plan *p = build_ok(&spec);

	/* The site's sbs wins over the shipped one; ad still comes from the
	 * shipped catalogs. */
	assert_true(portset_has(&p->reserved, 7000));
	assert_false(portset_has(&p->reserved, 1433));
	assert_true(portset_has(&p->reserved, 88));
	plan_free(p);

	/* A relative catalog_dir sits next to the config file. */
	spec.file = BERTH_TEST_DATADIR "/berth.conf";
	spec.catalog_dir.value = "plan_catalog_extra";
	p = build_ok(&spec);
	assert_true(portset_has(&p->reserved, 7000));
	plan_free(p);

	spec.file = "berth.conf";
	spec.catalog_dir.value = "/nonexistent/berth";
	expect_error(&spec, "berth.conf:9: [ports] catalog_dir: ", "/nonexistent/berth");
	spec.catalog_dir.value = BAD;
	spec.reserved_catalog.value = "inverted";
	expect_error(&spec, "berth.conf:8: [ports] reserved_catalog: ",
		     BAD "/inverted.ports:3: inverted range 3619-3500");
}

static void test_pool_fit(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .dynamic_range = { "10000-10099", 3 },
				  .reserved = { "10000-10009, 30000", 7 },
				  .pool_size = 91, .pool_size_line = 12 };
	char err[512] = "";

	assert_null(plan_build(&spec, &fixture_env, err, sizeof(err)));
	assert_string_equal(err, "berth.conf:12: [pool] size: 91 sockets do not fit in "
				 "the 90 ports the plan leaves to the pool (dynamic "
				 "10000-10099, 10 of them reserved, 0 a listen port of "
				 "the config's services)");
	spec.pool_size = 90;
	struct plan *p = build_ok(&spec);
	assert_int_equal(p->pool_size, 90);
	assert_int_equal(p->pool_size_line, 12);
	plan_free(p);

	/* A listen port of the config's own services is no room for the pool
	 * (reserved or outside the range, it takes nothing away). */
	portset_add(&spec.listen, 10050);
	portset_add(&spec.listen, 10005);
	portset_add(&spec.listen, 53);
	assert_null(plan_build(&spec, &fixture_env, err, sizeof(err)));
	assert_string_equal(err, "berth.conf:12: [pool] size: 90 sockets do not fit in "
				 "the 89 ports the plan leaves to the pool (dynamic "
				 "10000-10099, 10 of them reserved, 1 a listen port of "
				 "the config's services)");
	spec.pool_size = 89;
	p = build_ok(&spec);
	assert_int_equal(portset_count(&p->allowed), 90);
	assert_int_equal(portset_count(&p->pool_room), 89);
	assert_false(portset_has(&p->pool_room, 10050));
	/* berthctl check reads them from the plan: reserved 10005 and 53
	 * included. */
	assert_int_equal(portset_count(&p->listen), 3);
	assert_true(portset_has(&p->listen, 10005));
	assert_true(portset_has(&p->listen, 53));
	plan_free(p);
}

static void test_avoid_in_use(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf", .avoid_in_use = { "no", 10 } };
	struct plan *p = build_ok(&spec);
	assert_false(p->avoid_in_use);
	plan_free(p);
	spec.avoid_in_use.value = "YES";
	p = build_ok(&spec);
	assert_true(p->avoid_in_use);
	plan_free(p);
	spec.avoid_in_use.value = "perhaps";
	expect_error(&spec, "berth.conf:10: [ports] avoid_in_use: ", "'perhaps' is not yes or no");
}

/* Copy one fixture file into dir. */
static void copy_file(const char *dir, const char *name)
{
	char from[512], to[512], buf[256];
	snprintf(from, sizeof(from), SYSCTL "/%s", name);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	FILE *in = fopen(from, "r"), *out = fopen(to, "w");
	assert_non_null(in);
	assert_non_null(out);
	size_t n = fread(buf, 1, sizeof(buf), in);
	assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* A private, writable copy of the fixture sysctl dir (caller frees). */
static char *copy_sysctl(void)
{
	char *dir = strdup("/tmp/berth-plan-XXXXXX");
	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	copy_file(dir, "ip_local_port_range");
	copy_file(dir, "ip_local_reserved_ports");
	return dir;
}

static void remove_sysctl(char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/ip_local_port_range", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	unlink(path);
	rmdir(dir);
	free(dir);
}

/* The kernel list in dir, as text. */
static void read_reserved(const char *dir, char *buf, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_kernel_apply(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .reserved = { "1433-1434, 3343, 4500, 8080", 7 } };
	struct plan *p = build_ok(&spec);
	char *dir = copy_sysctl();
	struct portset added;
	char err[1024] = "", text[256];

	/* A dry run reports what is new and writes nothing. */
	assert_int_equal(plan_kernel_apply(p, dir, true, &added, err, sizeof(err)), 0);
	assert_int_equal(portset_count(&added), 4);
	assert_true(portset_has(&added, 1433));
	assert_true(portset_has(&added, 4500));
	assert_false(portset_has(&added, 8080)); /* the kernel has it already */
	read_reserved(dir, text, sizeof(text));
	assert_string_equal(text, "8080,9000-9100\n");

	assert_int_equal(plan_kernel_apply(p, dir, false, &added, err, sizeof(err)), 0);
	assert_int_equal(portset_count(&added), 4);
	read_reserved(dir, text, sizeof(text));
	assert_string_equal(text, "1433-1434,3343,4500,8080,9000-9100\n");

	/* Idempotent: a second run finds nothing to add. */
	assert_int_equal(plan_kernel_apply(p, dir, false, &added, err, sizeof(err)), 0);
	assert_int_equal(portset_count(&added), 0);
	read_reserved(dir, text, sizeof(text));
	assert_string_equal(text, "1433-1434,3343,4500,8080,9000-9100\n");

	assert_int_equal(plan_kernel_apply(p, "/nonexistent/berth", true, &added,
					   err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/berth/ip_local_reserved_ports"));
	remove_sysctl(dir);
	plan_free(p);
}

/*
 * Writing without permission must fail with a message that says what to do.
 * The tests may run as root, which ignores file modes, so the attempt runs
 * in a child that first gives up root for the nobody user.
 */
static void test_kernel_apply_permission(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf", .reserved = { "4500", 7 } };
	struct plan *p = build_ok(&spec);
	char *dir = copy_sysctl();
	char path[512], err[1024] = "";
	int fds[2], status = 0;

	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(path, 0444), 0);
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct portset added;
		char msg[1024] = "";
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(100);
		int rc = plan_kernel_apply(p, dir, false, &added, msg, sizeof(msg));
		ssize_t w = write(fds[1], msg, strlen(msg));
		_exit(w < 0 ? 101 : -rc);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], err, sizeof(err) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(n > 0);
	err[n] = '\0';
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), EACCES);
	assert_non_null(strstr(err, "as root"));
	assert_non_null(strstr(err, "--dry-run"));
	assert_non_null(strstr(err, path));
	remove_sysctl(dir);
	plan_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_range),
		cmocka_unit_test(test_dynamic_range),
		cmocka_unit_test(test_netsh_form),
		cmocka_unit_test(test_max_user_port_legacy_and_count),
		cmocka_unit_test(test_max_user_port_needs_semantics),
		cmocka_unit_test(test_two_forms_conflict),
		cmocka_unit_test(test_from_kernel),
		cmocka_unit_test(test_reserved_as_written),
		cmocka_unit_test(test_allowed_is_dynamic_minus_reserved),
		cmocka_unit_test(test_catalogs),
		cmocka_unit_test(test_catalog_dir),
		cmocka_unit_test(test_pool_fit),
		cmocka_unit_test(test_avoid_in_use),
		cmocka_unit_test(test_kernel_apply),
		cmocka_unit_test(test_kernel_apply_permission),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
