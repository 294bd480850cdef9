/* Unit tests for berthctl's show and apply verbs: exact output, usage
 * errors and exit statuses. */
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
#include "ctl/ctl.h"

#define SYSCTL BERTH_TEST_DATADIR "/plan_sysctl"
#define EXTRA BERTH_TEST_DATADIR "/plan_catalog_extra"

static struct plan *build(const struct plan_spec *spec)
{
	const struct plan_env env = { .sysctl_dir = SYSCTL };
	char err[1024] = "";
	struct plan *plan = plan_build(spec, &env, err, sizeof(err));
	if (!plan)
		fail_msg("plan_build failed: %s", err);
	return plan;
}

/* Captured output of one verb run. */
struct run {
	int rc;
	char *out, *err;
	size_t outlen, errlen;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static struct run show_dynamicport(const struct plan *plan, const char *proto)
{
	struct run r = { 0 };
	FILE *out = open_memstream(&r.out, &r.outlen);
	FILE *err = open_memstream(&r.err, &r.errlen);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = ctl_show_dynamicport(plan, proto, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static struct run show_reserved(const struct plan *plan)
{
	struct run r = { 0 };
	FILE *out = open_memstream(&r.out, &r.outlen);
	FILE *err = open_memstream(&r.err, &r.errlen);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = ctl_show_reserved(plan, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static struct run apply(const struct plan *plan, const char *dir, int dry_run)
{
	struct run r = { 0 };
	FILE *out = open_memstream(&r.out, &r.outlen);
	FILE *err = open_memstream(&r.err, &r.errlen);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = ctl_apply(plan, dir, dry_run, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static void test_show_dynamicport(void **state)
{
	(void)state;
	struct plan_spec dflt = { .file = "berth.conf" };
	struct plan *p = build(&dflt);
	struct run r = show_dynamicport(p, "udp");

	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out, "Protocol udp Dynamic Port Range\n"
				   "---------------------------------\n"
				   "Start Port      : 49152\n"
				   "Number of Ports : 16384\n");
	assert_string_equal(r.err, "");
	run_free(&r);
	plan_free(p);

	struct plan_spec legacy = { .file = "berth.conf",
				    .max_user_port = { "5000", 4 },
				    .max_user_port_semantics = { "legacy", 5 } };
	p = build(&legacy);
	r = show_dynamicport(p, "tcp");
	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out, "Protocol tcp Dynamic Port Range\n"
				   "---------------------------------\n"
				   "Start Port      : 1024\n"
				   "Number of Ports : 3977\n");
	run_free(&r);
	r = show_dynamicport(p, "TCP");
	assert_int_equal(r.rc, CTL_OK);
	assert_non_null(strstr(r.out, "Protocol tcp Dynamic Port Range\n"));
	run_free(&r);

	r = show_dynamicport(p, "icmp");
	assert_int_equal(r.rc, CTL_ERROR);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "tcp or udp, not 'icmp'"));
	run_free(&r);
	plan_free(p);
}

static void test_show_reserved(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .from_kernel = { "yes", 6 },
				  .reserved = { "40000-40009, 1433", 7 },
				  .reserved_catalog = { "lab", 8 },
				  .catalog_dir = { EXTRA, 9 } };
	struct plan *p = build(&spec);
	struct run r = show_reserved(p);

	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out,
		"Reserved Port Ranges\n"
		"\n"
		"Start Port    End Port    Origin\n"
		"----------    --------    ------\n"
		"      1433        1433    config (berth.conf:7)\n"
		"      8080        8080    kernel\n"
		"      9000        9100    kernel\n"
		"     10000       10009    catalog lab: lab-a (Lab service A)\n"
		"     10020       10020    catalog lab: lab-b\n"
		"     10030       10030    catalog lab: lab.c_d (Ten thirty)\n"
		"     40000       40009    config (berth.conf:7)\n"
		"\n"
		"125 ports reserved, 10 of them inside the dynamic range 32768-60999\n");
	run_free(&r);
	plan_free(p);

	struct plan_spec none = { .file = "berth.conf" };
	p = build(&none);
	r = show_reserved(p);
	assert_int_equal(r.rc, CTL_OK);
	assert_non_null(strstr(r.out, "\n0 ports reserved, 0 of them inside the "
				      "dynamic range 49152-65535\n"));
	run_free(&r);
	plan_free(p);
}

/* A private, writable copy of the fixture sysctl dir (caller frees). */
static char *copy_sysctl(void)
{
	static const char *const names[] = { "ip_local_port_range",
					     "ip_local_reserved_ports" };
	char *dir = strdup("/tmp/berth-ctl-XXXXXX");
	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < 2; i++) {
		char from[512], to[512], buf[256];
		snprintf(from, sizeof(from), SYSCTL "/%s", names[i]);
		snprintf(to, sizeof(to), "%s/%s", dir, names[i]);
		FILE *in = fopen(from, "r"), *out = fopen(to, "w");
		assert_non_null(in);
		assert_non_null(out);
		size_t n = fread(buf, 1, sizeof(buf), in);
		assert_int_equal(fwrite(buf, 1, n, out), n);
		fclose(in);
		assert_int_equal(fclose(out), 0);
	}
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

static void test_apply(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf",
				  .reserved = { "1433, 40000-40009, 8080", 7 } };
	struct plan *p = build(&spec);
	char *dir = copy_sysctl();
	char expect[512];

	struct run r = apply(p, dir, 1);
	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out, "reserve 1433\n"
				   "reserve 40000-40009\n"
				   "(dry run: nothing written)\n");
	run_free(&r);

	r = apply(p, dir, 0);
	assert_int_equal(r.rc, CTL_OK);
	snprintf(expect, sizeof(expect),
		 "reserve 1433\nreserve 40000-40009\n"
		 "11 ports added to %s/ip_local_reserved_ports\n", dir);
	assert_string_equal(r.out, expect);
	run_free(&r);

	r = apply(p, dir, 0);
	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out, "nothing to add: the kernel already reserves "
				   "every planned port\n");
	run_free(&r);
	r = apply(p, dir, 1);
	assert_string_equal(r.out, "nothing to add: the kernel already reserves "
				   "every planned port\n(dry run: nothing written)\n");
	run_free(&r);
	remove_sysctl(dir);
	plan_free(p);
}

/*
 * Without permission to write, apply exits 2 and says to run as root or use
 * --dry-run.  Root ignores file modes, so the child drops to nobody first.
 */
static void test_apply_permission(void **state)
{
	(void)state;
	struct plan_spec spec = { .file = "berth.conf", .reserved = { "4500", 7 } };
	struct plan *p = build(&spec);
	char *dir = copy_sysctl();
	char path[512], msg[1024] = "";
	int fds[2], status = 0;

	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(path, 0444), 0);
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(100);
		FILE *err = fdopen(fds[1], "w");
		int rc = err ? ctl_apply(p, dir, 0, stdout, err) : 101;
		_exit(err && fclose(err) == 0 ? rc : 102);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], msg, sizeof(msg) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(n > 0);
	msg[n] = '\0';
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), CTL_ERROR);
	assert_non_null(strstr(msg, "berthctl: apply: cannot write "));
	assert_non_null(strstr(msg, "run berthctl apply as root, or use --dry-run"));
	remove_sysctl(dir);
	plan_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_show_dynamicport),
		cmocka_unit_test(test_show_reserved),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_apply_permission),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
