/*
 * Unit tests for `berthctl check` on hand-built plans and a fake /proc:
 * the socket tables of tests/unit/data/proc_basic plus process directories
 * made in a temp dir.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/portplan.h"
#include "ctl/ctl.h"

struct fixture {
	char root[PATH_MAX]; /* fake proc_root */
	struct plan *plan;
	char *out, *err;
	size_t out_len, err_len;
};

static void make_path(const struct fixture *f, char *buf, size_t len,
		      const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", f->root, rel);
	assert_true(n > 0 && (size_t)n < len);
}

static void make_dir(const struct fixture *f, const char *rel)
{
	char p[PATH_MAX];
	make_path(f, p, sizeof(p), rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void make_link(const struct fixture *f, const char *rel,
		      const char *target)
{
	char p[PATH_MAX];
	make_path(f, p, sizeof(p), rel);
	assert_int_equal(symlink(target, p), 0);
}

static void make_file(const struct fixture *f, const char *rel,
		      const char *text)
{
	char p[PATH_MAX];
	make_path(f, p, sizeof(p), rel);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/*
 * The fake /proc: the fixture socket tables, berthd (pid 100) holding
 * 5300/tcp and 5300/udp, charon (pid 200) holding 4500/udp, 4500/tcp over
 * IPv6 owned by no visible process, and one process whose fds cannot be
 * read.
 */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/berth-check-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	*state = f;
	make_link(f, "net", BERTH_TEST_DATADIR "/proc_basic/net");
	make_dir(f, "100");
	make_dir(f, "100/fd");
	make_link(f, "100/fd/3", "socket:[1001]");
	make_link(f, "100/fd/4", "socket:[3001]");
	make_file(f, "100/comm", "berthd\n");
	make_dir(f, "200");
	make_dir(f, "200/fd");
	make_link(f, "200/fd/9", "socket:[3002]");
	make_file(f, "200/comm", "charon\n");
	/* Root ignores directory modes, so a file stands in for an fd
	 * directory that cannot be opened. */
	make_dir(f, "300");
	make_file(f, "300/fd", "");

	f->plan = calloc(1, sizeof(*f->plan));
	if (!f->plan)
		return -1;
	*f->plan = (struct plan){
		.file = "test.conf",
		.dynamic_lo = 49152,
		.dynamic_hi = 65535,
		.kernel_read = true,
	};
	portset_add_range(&f->plan->dynamic, 49152, 65535);
	f->plan->allowed = f->plan->dynamic;
	f->plan->pool_room = f->plan->allowed;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (f->plan)
		free(f->plan->res);
	free(f->plan);
	free(f->out);
	free(f->err);
	free(f);
	return rc;
}

static void reserve(struct plan *plan, const char *list)
{
	char err[128] = "";
	if (portset_parse(&plan->reserved, list, err, sizeof(err)) != 0)
		fail_msg("bad list '%s': %s", list, err);
	portset_diff(&plan->allowed, &plan->reserved);
	portset_diff(&plan->pool_room, &plan->reserved);
}

static void kernel_reserves(struct plan *plan, const char *list)
{
	char err[128] = "";
	if (portset_parse(&plan->kernel_reserved, list, err, sizeof(err)) != 0)
		fail_msg("bad list '%s': %s", list, err);
}

/* Run check against the fixture and keep what it printed. */
static int run_check(struct fixture *f, const char *proc_root)
{
	FILE *out = open_memstream(&f->out, &f->out_len);
	FILE *err = open_memstream(&f->err, &f->err_len);
	assert_non_null(out);
	assert_non_null(err);
	int rc = ctl_check(f->plan, proc_root ? proc_root : f->root, out, err);
	assert_int_equal(fclose(out), 0);
	assert_int_equal(fclose(err), 0);
	return rc;
}

static void expect_in(const char *text, const char *part)
{
	if (!strstr(text, part))
		fail_msg("expected '%s' in:\n%s", part, text);
}

static void expect_not_in(const char *text, const char *part)
{
	if (strstr(text, part))
		fail_msg("did not expect '%s' in:\n%s", part, text);
}

static void test_clean(void **state)
{
	struct fixture *f = *state;

	reserve(f->plan, "1433-1434, 3343");
	kernel_reserves(f->plan, "1433-1434,3343,8080");
	f->plan->pool_size = 2500;
	assert_int_equal(run_check(f, NULL), CTL_OK);
	assert_string_equal(f->out, "ok: no conflicts\n");
	assert_string_equal(f->err, "");
}

static void test_held_reserved_ports(void **state)
{
	struct fixture *f = *state;
	struct plan_reservation res[] = {
		{ .lo = 4500, .hi = 4500, .origin = PLAN_ORIGIN_CATALOG,
		  .catalog = "sbs", .service = "ipsec-nat-t IPsec NAT traversal" },
		{ .lo = 5300, .hi = 5300, .origin = PLAN_ORIGIN_CONFIG,
		  .line = 7 },
		{ .lo = 50000, .hi = 50001, .origin = PLAN_ORIGIN_KERNEL },
	};

	f->plan->res = malloc(sizeof(res));
	assert_non_null(f->plan->res);
	memcpy(f->plan->res, res, sizeof(res));
	f->plan->nres = 3;
	/* 1433 is reserved but free; 50001 is only in TIME_WAIT. */
	reserve(f->plan, "1433, 4500, 5300, 50000-50001");
	kernel_reserves(f->plan, "1433,4500,5300,50000-50001");
	assert_int_equal(run_check(f, NULL), CTL_FINDING);
	/* 5300 lies outside the dynamic range: berthd listens there, whatever
	 * this config's services are, since its pool draws only from it. */
	assert_string_equal(f->out,
		"in use: reserved port 4500/tcp (catalog sbs: ipsec-nat-t IPsec "
		"NAT traversal) is held by an unknown process on "
		"[::ffff:127.0.0.1]:4500 (listen)\n"
		"in use: reserved port 4500/udp (catalog sbs: ipsec-nat-t IPsec "
		"NAT traversal) is held by pid 200 (charon) on 0.0.0.0:4500 "
		"(bound)\n"
		"in use: reserved port 5300/tcp (config test.conf:7) is held by "
		"pid 100 (berthd) on 127.0.0.1:5300 (listen)\n"
		"in use: reserved port 5300/udp (config test.conf:7) is held by "
		"pid 100 (berthd) on 127.0.0.1:5300 (bound)\n"
		"conflict: reserved port 50000/tcp (kernel ip_local_reserved_ports) "
		"is held by an unknown process on 127.0.0.1:50000 (established): "
		"a connection with no listener on the port, so a port allocator "
		"handed it out (or a service kept it after closing its "
		"listener)\n"
		"note: a socket listening on a reserved port is taken to be the "
		"service the port is kept for; check that each program \"in "
		"use\" names is that service\n");
	expect_in(f->err, "some owners are hidden");
	expect_in(f->err, "run as root");
}

/* Replace the fixture's socket tables with net/tcp and net/udp of its own. */
static void own_tables(struct fixture *f, const char *tcp, const char *udp)
{
	static const char head[] =
		"  sl  local_address rem_address   st tx_queue rx_queue tr "
		"tm->when retrnsmt   uid  timeout inode\n";
	char p[PATH_MAX], text[1024];

	make_path(f, p, sizeof(p), "net");
	assert_int_equal(unlink(p), 0);
	make_dir(f, "net");
	snprintf(text, sizeof(text), "%s%s", head, tcp);
	make_file(f, "net/tcp", text);
	snprintf(text, sizeof(text), "%s%s", head, udp);
	make_file(f, "net/udp", text);
}

/* Give pid's fd N the socket inode. */
static void owns(struct fixture *f, int pid, int fd, unsigned inode)
{
	char rel[64], target[64];
	snprintf(rel, sizeof(rel), "%d/fd/%d", pid, fd);
	snprintf(target, sizeof(target), "socket:[%u]", inode);
	make_link(f, rel, target);
}

/*
 * Unconnected UDP sockets on reserved ports of the dynamic range: berthd's
 * on a port its services listen on is in use, on any other its pool (a
 * conflict); one whose owner is hidden could be the pool (unknown); another
 * program's is in use, said to be maybe the kernel's pick when the kernel
 * hands that port out.  A TCP listener of berthd's is never its pool.
 */
static void test_pool_and_listeners(void **state)
{
	struct fixture *f = *state;

	own_tables(f,
		/* berthd listens on 127.0.0.1:50010 */
		"   0: 0100007F:C35A 00000000:0000 0A 00000000:00000000 "
		"00:00000000 00000000     0        0 1001 1 0\n",
		/* berthd 50010 and 50011, hidden 50012, charon 50013 and 4500 */
		"   1: 0100007F:C35A 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3001 2 0\n"
		"   2: 00000000:C35B 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3005 2 0\n"
		"   3: 00000000:C35C 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3006 2 0\n"
		"   4: 00000000:C35D 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3007 2 0\n"
		"   5: 00000000:1194 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3002 2 0\n");
	owns(f, 100, 5, 3005);
	owns(f, 200, 10, 3007);
	reserve(f->plan, "4500, 50010-50013");
	kernel_reserves(f->plan, "4500, 50010-50012");
	portset_add_range(&f->plan->kernel_ephemeral, 32768, 60999);
	portset_add(&f->plan->listen, 50010);
	assert_int_equal(run_check(f, NULL), CTL_FINDING);
	assert_string_equal(f->out,
		"in use: reserved port 4500/udp is held by pid 200 (charon) on "
		"0.0.0.0:4500 (bound)\n"
		"in use: reserved port 50010/tcp is held by pid 100 (berthd) on "
		"127.0.0.1:50010 (listen)\n"
		"in use: reserved port 50010/udp is held by pid 100 (berthd) on "
		"127.0.0.1:50010 (bound)\n"
		"conflict: reserved port 50011/udp is held by pid 100 (berthd) on "
		"0.0.0.0:50011 (bound): no service of this config listens there, "
		"so berthd's pool took it; \"berthctl release 50011\" gives it "
		"back\n"
		"unknown: reserved port 50012/udp is held by an unknown process on "
		"0.0.0.0:50012 (bound): berthd's pool draws from this range and "
		"only root may see whose socket it is; run as root\n"
		"in use: reserved port 50013/udp is held by pid 200 (charon) on "
		"0.0.0.0:50013 (bound): the kernel does not reserve the port and "
		"hands out its range, so this may be a client's port, not a "
		"service\n"
		"note: a socket listening on a reserved port is taken to be the "
		"service the port is kept for; check that each program \"in "
		"use\" names is that service\n"
		"warning: the kernel does not reserve 1 of the plan's reserved "
		"ports (50013), so it may hand them out as ephemeral ports; run "
		"\"berthctl apply\" as root\n");
	expect_in(f->err, "run as root");

	/* The same berthd socket on 50010 with no service of this config on
	 * it: a TCP listener is still in use, the UDP socket is the pool. */
	free(f->out);
	free(f->err);
	portset_clear(&f->plan->listen);
	assert_int_equal(run_check(f, NULL), CTL_FINDING);
	expect_in(f->out, "in use: reserved port 50010/tcp is held by pid 100 "
			  "(berthd) on 127.0.0.1:50010 (listen)\n");
	expect_in(f->out, "conflict: reserved port 50010/udp is held by pid 100 "
			  "(berthd) on 127.0.0.1:50010 (bound): no service");
}

/*
 * Connections: one a listener on the reserved port accepted (served, not
 * shown), one whose client end sits on a reserved port (a conflict), and
 * connected UDP sockets, one on a port where an unconnected socket also
 * listens (served) and one alone (a conflict).
 */
static void test_connections(void **state)
{
	struct fixture *f = *state;

	own_tables(f,
		/* 127.0.0.1:88 listen; 127.0.0.1:88 <- :50000; :4501 -> :53 */
		"   0: 0100007F:0058 00000000:0000 0A 00000000:00000000 "
		"00:00000000 00000000     0        0 1001 1 0\n"
		"   1: 0100007F:0058 0100007F:C350 01 00000000:00000000 "
		"00:00000000 00000000     0        0 1003 1 0\n"
		"   2: 0100007F:1195 0100007F:0035 01 00000000:00000000 "
		"00:00000000 00000000     0        0 3001 1 0\n",
		/* 0.0.0.0:88 bound, 127.0.0.1:88 -> :5000, :464 -> :53 */
		"   3: 00000000:0058 00000000:0000 07 00000000:00000000 "
		"00:00000000 00000000     0        0 3002 2 0\n"
		"   4: 0100007F:0058 0100007F:1388 01 00000000:00000000 "
		"00:00000000 00000000     0        0 1002 2 0\n"
		"   5: 0100007F:01D0 0100007F:0035 01 00000000:00000000 "
		"00:00000000 00000000     0        0 3003 2 0\n");
	reserve(f->plan, "88, 464, 4501, 50000");
	portset_add(&f->plan->listen, 88);
	kernel_reserves(f->plan, "88, 464, 4501, 50000");
	assert_int_equal(run_check(f, NULL), CTL_FINDING);
	expect_in(f->out, "in use: reserved port 88/tcp is held by pid 100 "
			  "(berthd) on 127.0.0.1:88 (listen)\n");
	expect_in(f->out, "in use: reserved port 88/udp is held by pid 200 "
			  "(charon) on 0.0.0.0:88 (bound)\n");
	expect_in(f->out, "conflict: reserved port 464/udp is held by an "
			  "unknown process on 127.0.0.1:464 (connected): a "
			  "connection with no listener on the port");
	/* berthd's own connections are judged like anyone's. */
	expect_in(f->out, "conflict: reserved port 4501/tcp is held by pid 100 "
			  "(berthd) on 127.0.0.1:4501 (established): a "
			  "connection with no listener on the port");
	/* The accepted TCP connection and the connected UDP socket on 88 are
	 * the listeners' own traffic: neither is a line of its own. */
	expect_not_in(f->out, "(established)\nin use");
	expect_not_in(f->out, "88 (established)");
	expect_not_in(f->out, "88 (connected)");
	expect_not_in(f->out, "50000");
}

static void test_reservation_without_origin(void **state)
{
	struct fixture *f = *state;

	/* A plan with no res entries still names port, protocol and owner. */
	reserve(f->plan, "4500");
	kernel_reserves(f->plan, "4500");
	assert_int_equal(run_check(f, NULL), CTL_OK);
	expect_in(f->out, "in use: reserved port 4500/udp is held by pid 200 "
			  "(charon)");
	expect_in(f->out, "ok: no conflicts\n");
}

static void test_pool_does_not_fit(void **state)
{
	struct fixture *f = *state;

	portset_clear(&f->plan->dynamic);
	portset_add_range(&f->plan->dynamic, 60000, 61999);
	f->plan->dynamic_lo = 60000;
	f->plan->dynamic_hi = 61999;
	f->plan->allowed = f->plan->dynamic;
	f->plan->pool_room = f->plan->dynamic;
	reserve(f->plan, "61000-61099");
	kernel_reserves(f->plan, "61000-61099");
	f->plan->pool_size = 1901;
	f->plan->pool_size_line = 9;
	assert_int_equal(run_check(f, NULL), CTL_FINDING);
	expect_in(f->out, "conflict: pool size 1901 (test.conf:9) does not fit");
	expect_in(f->out, "only 1900 ports");
	expect_in(f->out, "60000-61999");
	expect_not_in(f->out, "ok:");

	/* Exactly full is fine. */
	free(f->out);
	free(f->err);
	f->plan->pool_size = 1900;
	assert_int_equal(run_check(f, NULL), CTL_OK);
	assert_string_equal(f->out, "ok: no conflicts\n");
}

static void test_kernel_out_of_sync(void **state)
{
	struct fixture *f = *state;

	reserve(f->plan, "1433-1434, 3343, 8080, 9000-9100");
	kernel_reserves(f->plan, "1433, 9000-9049");
	assert_int_equal(run_check(f, NULL), CTL_OK);
	expect_in(f->out, "warning: the kernel does not reserve 54 of the plan's "
			  "reserved ports (1434, 3343, 8080, 9050-9100)");
	expect_in(f->out, "berthctl apply");
	expect_in(f->out, "ok: no conflicts\n");
}

static void test_kernel_unreadable(void **state)
{
	struct fixture *f = *state;

	reserve(f->plan, "1433");
	f->plan->kernel_read = false;
	assert_int_equal(run_check(f, NULL), CTL_OK);
	expect_in(f->out, "could not be read");
	expect_in(f->out, "berthctl apply");
	expect_in(f->out, "ok: no conflicts\n");
}

static void test_bad_proc_root(void **state)
{
	struct fixture *f = *state;

	reserve(f->plan, "4500");
	assert_int_equal(run_check(f, BERTH_TEST_DATADIR "/no_such_proc"),
			 CTL_ERROR);
	expect_in(f->err, "no_such_proc/net");
	assert_string_equal(f->out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_reserved_ports, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pool_and_listeners, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_connections, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reservation_without_origin,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_does_not_fit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kernel_out_of_sync, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kernel_unreadable, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_proc_root, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
