/*
 * Unit tests for procnet: parsing fixture /proc/net files (IPv4 and IPv6
 * address decoding, states, malformed lines), the ports-in-use set, and
 * owner lookup through a fake process tree built in a temp dir.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/procnet.h"

#define BASIC BERTH_TEST_DATADIR "/proc_basic"

/* Find the socket with this inode in a list, failing the test if absent. */
static const struct procnet_sock *by_inode(const struct procnet_sock *v,
					   size_t n, uint64_t inode)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].inode == inode)
			return &v[i];
	fail_msg("no socket with inode %llu", (unsigned long long)inode);
	return NULL;
}

static void expect_sock(const struct procnet_sock *v, size_t n, uint64_t inode,
			int proto, int family, const char *addr, uint16_t port,
			const char *state)
{
	const struct procnet_sock *s = by_inode(v, n, inode);
	assert_int_equal(s->proto, proto);
	assert_int_equal(s->family, family);
	assert_string_equal(s->addr, addr);
	assert_int_equal(s->port, port);
	assert_string_equal(procnet_state_name(s), state);
	assert_int_equal(s->pid, -1);
	assert_string_equal(s->comm, "");
}

static void test_list_decodes_every_family(void **state)
{
	(void)state;
	struct procnet_sock *v = NULL;
	size_t n = 0;
	struct procnet_stats st = { 0 };

	assert_int_equal(procnet_list(BASIC, PROCNET_TCP | PROCNET_UDP, &v, &n,
				      &st), 0);
	assert_int_equal(n, 11);
	assert_int_equal(st.malformed, 3);
	assert_int_equal(st.missing_files, 0);

	expect_sock(v, n, 1001, IPPROTO_TCP, AF_INET, "127.0.0.1", 5300, "listen");
	expect_sock(v, n, 1002, IPPROTO_TCP, AF_INET, "0.0.0.0", 22, "listen");
	expect_sock(v, n, 1003, IPPROTO_TCP, AF_INET, "127.0.0.1", 50000,
		    "established");
	expect_sock(v, n, 0, IPPROTO_TCP, AF_INET, "127.0.0.1", 50001,
		    "time-wait");
	expect_sock(v, n, 2001, IPPROTO_TCP, AF_INET6, "::1", 53, "listen");
	expect_sock(v, n, 2002, IPPROTO_TCP, AF_INET6, "::ffff:127.0.0.1", 4500,
		    "listen");
	expect_sock(v, n, 2003, IPPROTO_TCP, AF_INET6, "2001:db8::1", 443,
		    "established");
	expect_sock(v, n, 3001, IPPROTO_UDP, AF_INET, "127.0.0.1", 5300, "bound");
	expect_sock(v, n, 3002, IPPROTO_UDP, AF_INET, "0.0.0.0", 4500, "bound");
	/* Lower-case hex is accepted as well. */
	expect_sock(v, n, 3003, IPPROTO_UDP, AF_INET, "127.0.0.1", 54321,
		    "connected");
	expect_sock(v, n, 4001, IPPROTO_UDP, AF_INET6, "::", 5353, "bound");
	free(v);
}

static void test_list_filters_by_protocol(void **state)
{
	(void)state;
	struct procnet_sock *v = NULL;
	size_t n = 0;

	assert_int_equal(procnet_list(BASIC, PROCNET_UDP, &v, &n, NULL), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].proto, IPPROTO_UDP);
	free(v);

	assert_int_equal(procnet_list(BASIC, PROCNET_TCP, &v, &n, NULL), 0);
	assert_int_equal(n, 7);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].proto, IPPROTO_TCP);
	free(v);

	assert_int_equal(procnet_list(BASIC, 0, &v, &n, NULL), -EINVAL);
	assert_null(v);
	assert_int_equal(n, 0);
}

static void test_missing_files(void **state)
{
	(void)state;
	struct procnet_sock *v = NULL;
	size_t n = 0;
	struct procnet_stats st = { 0 };

	/* No IPv6: the v6 files are missing, which is not an error. */
	assert_int_equal(procnet_list(BERTH_TEST_DATADIR "/proc_v4only",
				      PROCNET_TCP | PROCNET_UDP, &v, &n, &st), 0);
	assert_int_equal(n, 7);
	assert_int_equal(st.missing_files, 2);
	free(v);

	/* Nothing at all: a wrong proc_root must not pass for "no sockets". */
	assert_int_equal(procnet_list(BERTH_TEST_DATADIR "/no_such_proc",
				      PROCNET_UDP, &v, &n, NULL), -ENOENT);
	assert_null(v);
	assert_int_equal(n, 0);
}

static void test_malformed_lines_are_skipped(void **state)
{
	(void)state;
	struct procnet_sock *v = NULL;
	size_t n = 0;
	struct procnet_stats st = { 0 };

	assert_int_equal(procnet_list(BERTH_TEST_DATADIR "/proc_malformed",
				      PROCNET_UDP, &v, &n, &st), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].inode, 5001);
	assert_int_equal(v[0].port, 53);
	/* Nine bad lines in udp, three in udp6 (one an IPv4 address, one
	 * 5000 characters long); the blank line is not counted. */
	assert_int_equal(st.malformed, 12);
	free(v);
}

static void test_ports_in_use(void **state)
{
	(void)state;
	struct portset set, want;
	char err[64];
	struct procnet_stats st = { 0 };

	assert_int_equal(procnet_ports_in_use(BASIC, IPPROTO_TCP, &set, &st), 0);
	portset_clear(&want);
	/* 50001 is only in TIME_WAIT and so does not count. */
	assert_int_equal(portset_parse(&want, "22 53 443 4500 5300 50000", err,
				       sizeof(err)), 0);
	assert_int_equal(portset_count(&set), portset_count(&want));
	portset_diff(&set, &want);
	assert_int_equal(portset_count(&set), 0);
	assert_int_equal(st.malformed, 2);

	/* The set is cleared first, not added to. */
	portset_add(&set, 7);
	assert_int_equal(procnet_ports_in_use(BASIC, IPPROTO_UDP, &set, NULL), 0);
	portset_clear(&want);
	assert_int_equal(portset_parse(&want, "4500 5300 5353 54321", err,
				       sizeof(err)), 0);
	assert_int_equal(portset_count(&set), 4);
	portset_diff(&want, &set);
	assert_int_equal(portset_count(&want), 0);

	assert_int_equal(procnet_ports_in_use(BASIC, IPPROTO_SCTP, &set, NULL),
			 -EINVAL);
	assert_int_equal(procnet_ports_in_use(BERTH_TEST_DATADIR "/no_such_proc",
					      IPPROTO_TCP, &set, NULL), -ENOENT);
}

static void test_holds(void **state)
{
	(void)state;
	struct procnet_sock s = { .proto = IPPROTO_TCP };

	s.state = PROCNET_LISTEN;
	assert_true(procnet_holds(&s));
	s.state = PROCNET_ESTABLISHED;
	assert_true(procnet_holds(&s));
	s.state = PROCNET_CLOSE_WAIT;
	assert_true(procnet_holds(&s));
	s.state = PROCNET_TIME_WAIT;
	assert_false(procnet_holds(&s));
	s.proto = IPPROTO_UDP;
	s.state = PROCNET_CLOSE;
	assert_true(procnet_holds(&s));
	assert_string_equal(procnet_proto_name(&s), "udp");
	s.proto = IPPROTO_TCP;
	s.state = 0x42;
	assert_string_equal(procnet_state_name(&s), "unknown");
	assert_string_equal(procnet_proto_name(&s), "tcp");
}

/* A fake process tree in a temp dir, removed after each test. */
struct tree {
	char root[PATH_MAX];
};

static void tree_path(const struct tree *t, char *buf, size_t len,
		      const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", t->root, rel);
	assert_true(n > 0 && (size_t)n < len);
}

static void tree_mkdir(const struct tree *t, const char *rel)
{
	char p[PATH_MAX];
	tree_path(t, p, sizeof(p), rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void tree_file(const struct tree *t, const char *rel, const char *text)
{
	char p[PATH_MAX];
	tree_path(t, p, sizeof(p), rel);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
}

static void tree_link(const struct tree *t, const char *rel, const char *target)
{
	char p[PATH_MAX];
	tree_path(t, p, sizeof(p), rel);
	assert_int_equal(symlink(target, p), 0);
}

/* One fake process: PID/fd/ with the given links and, if comm is not
 * NULL, PID/comm. */
static void tree_process(const struct tree *t, const char *pid,
			 const char *comm, const char *const *links)
{
	char rel[64];
	tree_mkdir(t, pid);
	snprintf(rel, sizeof(rel), "%s/fd", pid);
	tree_mkdir(t, rel);
	for (int fd = 0; links[fd]; fd++) {
		snprintf(rel, sizeof(rel), "%s/fd/%d", pid, fd + 3);
		tree_link(t, rel, links[fd]);
	}
	if (comm) {
		snprintf(rel, sizeof(rel), "%s/comm", pid);
		tree_file(t, rel, comm);
	}
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	snprintf(t->root, sizeof(t->root), "%s/berth-procnet-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(t->root)) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;
	int rc = nftw(t->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return rc;
}

static void test_owners(void **state)
{
	const struct tree *t = *state;
	struct procnet_sock *v = NULL;
	size_t n = 0;
	struct procnet_stats st = { 0 };

	tree_process(t, "100", "berthd\n", (const char *const[]){
		"socket:[1001]", "/dev/null", "socket:[3001]", "pipe:[1001]",
		NULL });
	/* A socket shared after fork: the lower pid is reported. */
	tree_process(t, "200", "charon\n", (const char *const[]){
		"socket:[3002]", NULL });
	tree_process(t, "50", "starter\n", (const char *const[]){
		"socket:[3002]", "socket:[99999]", NULL });
	/* No comm file: the owner is still known, its name is not. */
	tree_process(t, "500", NULL, (const char *const[]){
		"socket:[2001]", NULL });
	tree_process(t, "600", "averyveryverylongname\n", (const char *const[]){
		"socket:[4001]", "socket:[12x]", "socket:[2002", NULL });
	/* A process whose fd directory cannot be opened.  A mode-000
	 * directory would do for ordinary users, but root ignores modes, so
	 * a plain file stands in for it. */
	tree_mkdir(t, "300");
	tree_file(t, "300/fd", "");
	/* A process that exited: no fd directory at all; not hidden. */
	tree_mkdir(t, "400");
	/* Not a pid: never scanned. */
	tree_mkdir(t, "self");
	tree_mkdir(t, "self/fd");
	tree_link(t, "self/fd/3", "socket:[1003]");

	assert_int_equal(procnet_list(BASIC, PROCNET_TCP | PROCNET_UDP, &v, &n,
				      NULL), 0);
	assert_int_equal(procnet_owners(t->root, v, n, &st), 0);

	const struct procnet_sock *s = by_inode(v, n, 1001);
	assert_int_equal(s->pid, 100);
	assert_string_equal(s->comm, "berthd");
	s = by_inode(v, n, 3001);
	assert_int_equal(s->pid, 100);
	s = by_inode(v, n, 3002);
	assert_int_equal(s->pid, 50);
	assert_string_equal(s->comm, "starter");
	s = by_inode(v, n, 2001);
	assert_int_equal(s->pid, 500);
	assert_string_equal(s->comm, "?");
	s = by_inode(v, n, 4001);
	assert_int_equal(s->pid, 600);
	assert_string_equal(s->comm, "averyveryverylo");
	/* Malformed links name nothing. */
	s = by_inode(v, n, 2002);
	assert_int_equal(s->pid, -1);
	s = by_inode(v, n, 1003);
	assert_int_equal(s->pid, -1);
	assert_string_equal(s->comm, "");
	s = by_inode(v, n, 0);
	assert_int_equal(s->pid, -1);

	assert_int_equal(st.hidden_procs, 1);
	/* 11 sockets: 5 owned, 1 TIME_WAIT that no one can own, 5 unowned
	 * (1002, 1003, 2002, 2003, 3003). */
	assert_int_equal(st.unowned, 5);
	free(v);
}

static void test_owners_of_a_subset(void **state)
{
	const struct tree *t = *state;
	struct procnet_sock one = { .inode = 3002, .pid = 4242 };

	tree_process(t, "200", "charon\n", (const char *const[]){
		"socket:[3002]", NULL });
	assert_int_equal(procnet_owners(t->root, &one, 1, NULL), 0);
	assert_int_equal(one.pid, 200);
	assert_string_equal(one.comm, "charon");

	/* A stale pid from an earlier lookup is not kept. */
	one.inode = 77;
	assert_int_equal(procnet_owners(t->root, &one, 1, NULL), 0);
	assert_int_equal(one.pid, -1);

	assert_int_equal(procnet_owners(t->root, NULL, 0, NULL), 0);
	one.pid = 4242;
	assert_true(procnet_owners(BERTH_TEST_DATADIR "/no_such_proc", &one, 1,
				   NULL) < 0);
	assert_int_equal(one.pid, 4242);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_decodes_every_family),
		cmocka_unit_test(test_list_filters_by_protocol),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_malformed_lines_are_skipped),
		cmocka_unit_test(test_ports_in_use),
		cmocka_unit_test(test_holds),
		cmocka_unit_test_setup_teardown(test_owners, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_owners_of_a_subset,
						tree_setup, tree_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
