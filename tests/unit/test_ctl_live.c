/*
 * Unit tests for berthctl's live verbs (src/ctl/live.c) when berthd cannot be
 * reached: each way the control socket path can be wrong gets its own
 * message (no socket there, a stale socket, a regular file, a directory, an
 * empty path), and every one exits 2; and root's fallback path (/run/berth
 * when the XDG path is absent) is tried only when nothing, or a stale
 * socket, is at the path.
 * Real files in a temporary directory; no berthd, a forked child plays it.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl/ctl.h"

/* A temporary directory, a path in it for the control socket and one for
 * the fallback (standing in for /run/berth/berth.sock). */
struct fx {
	char dir[64];
	char path[108];
	char fallback[108];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/berth-ctl-live-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/berth.sock", fx->dir);
	snprintf(fx->fallback, sizeof(fx->fallback), "%s/run-berth.sock", fx->dir);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	struct stat st;
	if (lstat(fx->path, &st) == 0)
		assert_int_equal(S_ISDIR(st.st_mode) ? rmdir(fx->path)
						     : unlink(fx->path), 0);
	if (lstat(fx->fallback, &st) == 0)
		assert_int_equal(unlink(fx->fallback), 0);
	assert_int_equal(rmdir(fx->dir), 0);
	free(fx);
	return 0;
}

/* ctl_live("status") on path: its exit status and what it wrote to err. */
struct run {
	int rc;
	char *out, *err;
	size_t outlen, errlen;
};

static struct run live_status_or(const char *path, const char *fallback)
{
	struct run r = { 0 };
	FILE *out = open_memstream(&r.out, &r.outlen);
	FILE *err = open_memstream(&r.err, &r.errlen);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = ctl_live(path, fallback, "status", out, err);
	fclose(out);
	fclose(err);
	return r;
}

static struct run live_status(const char *path)
{
	return live_status_or(path, NULL);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* The run failed with exit 2, printed nothing to out and want to err. */
static void assert_refused(const struct run *r, const char *want)
{
	assert_int_equal(r->rc, CTL_ERROR);
	assert_int_equal(r->outlen, 0);
	if (!strstr(r->err, want))
		fail_msg("expected \"%s\" in: %s", want, r->err);
}

static void test_nothing_at_the_path(void **state)
{
	struct fx *fx = *state;
	struct run r = live_status(fx->path);
	char want[256];
	snprintf(want, sizeof(want), "berthd is not running: no control socket at %s",
		 fx->path);
	assert_refused(&r, want);
	run_free(&r);
}

/* A socket bound at path, listening when listening, else closed at once:
 * bound, never listened on, closed is what a crashed berthd leaves. */
static int bound_socket(const char *path, bool listening)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	if (listening) {
		assert_int_equal(listen(fd, 1), 0);
		return fd;
	}
	close(fd);
	return -1;
}

static void test_a_stale_socket(void **state)
{
	struct fx *fx = *state;
	bound_socket(fx->path, false);

	struct run r = live_status(fx->path);
	char want[256];
	snprintf(want, sizeof(want), "berthd is not running: %s is a stale control "
		 "socket nobody listens on", fx->path);
	assert_refused(&r, want);
	run_free(&r);
}

/* Linux refuses the connection to a file that is not a socket just as it
 * does to a stale socket: the message must still say what is there. */
static void test_a_regular_file(void **state)
{
	struct fx *fx = *state;
	int fd = open(fx->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);

	struct run r = live_status(fx->path);
	char want[256];
	snprintf(want, sizeof(want), "berthctl: %s is a regular file, not a socket "
		 "(is -s PATH or the config's [control] socket right?)", fx->path);
	assert_refused(&r, want);
	assert_null(strstr(r.err, "not running"));
	run_free(&r);
}

/* Read-only, the same file is refused with EACCES (unless we are root):
 * still a regular file, not a permission problem of some socket. */
static void test_a_read_only_regular_file(void **state)
{
	struct fx *fx = *state;
	int fd = open(fx->path, O_WRONLY | O_CREAT | O_EXCL, 0400);
	assert_true(fd >= 0);
	close(fd);

	struct run r = live_status(fx->path);
	char want[256];
	snprintf(want, sizeof(want), "%s is a regular file, not a socket", fx->path);
	assert_refused(&r, want);
	run_free(&r);
}

static void test_a_directory(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(mkdir(fx->path, 0700), 0);

	struct run r = live_status(fx->path);
	char want[256];
	snprintf(want, sizeof(want), "berthctl: %s is a directory, not a socket",
		 fx->path);
	assert_refused(&r, want);
	assert_null(strstr(r.err, "not running"));
	run_free(&r);
}

/* An empty sun_path would name an abstract socket; never try it. */
static void test_an_empty_path(void **state)
{
	(void)state;
	struct run r = live_status("");
	assert_refused(&r, "berthctl: the control socket path is empty");
	run_free(&r);
}

/* Nothing at the path nor at the fallback: the message names both. */
static void test_nothing_at_the_path_nor_the_fallback(void **state)
{
	struct fx *fx = *state;
	struct run r = live_status_or(fx->path, fx->fallback);
	char want[512];
	snprintf(want, sizeof(want), "berthctl: berthd is not running: no control "
		 "socket at %s nor at %s (is berthd using another config? try -c "
		 "FILE or -s PATH)\n", fx->path, fx->fallback);
	assert_refused(&r, want);
	run_free(&r);
}

/* A berthd in a child on the fallback: answers one "status" with "ok",
 * one output line and the end line, then exits 0 if the command was right.
 * A child nobody connects to dies of SIGALRM after 10 s, so a failing test
 * fails instead of hanging in waitpid(). */
static pid_t fake_berthd(int listen_fd)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		close(listen_fd);
		return pid;
	}
	alarm(10);
	int c = accept(listen_fd, NULL, NULL);
	char line[16] = "";
	/* berthctl sends the line with one send(), which a unix stream socket
	 * hands over whole. */
	ssize_t got = c < 0 ? -1 : recv(c, line, sizeof(line) - 1, 0);
	static const char reply[] = "ok\nberthd on the fallback\n.\n";
	bool sent = c >= 0 && write(c, reply, sizeof(reply) - 1) ==
			      (ssize_t)sizeof(reply) - 1;
	_exit(sent && got == 7 && strcmp(line, "status\n") == 0 ? 0 : 1);
}

/* A fake berthd on the fallback: berthctl reaches it, and it got the
 * right command. */
static void expect_fallback_reached(struct fx *fx)
{
	pid_t pid = fake_berthd(bound_socket(fx->fallback, true));

	struct run r = live_status_or(fx->path, fx->fallback);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(r.rc, CTL_OK);
	assert_string_equal(r.out, "berthd on the fallback\n");
	assert_string_equal(r.err, "");
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	run_free(&r);
}

/* Nothing at the path, berthd on the fallback: berthctl reaches it. */
static void test_the_fallback_when_nothing_is_at_the_path(void **state)
{
	expect_fallback_reached(*state);
}

/* A stale socket at the fallback: said so, and where nothing was. */
static void test_a_stale_fallback(void **state)
{
	struct fx *fx = *state;
	bound_socket(fx->fallback, false);

	struct run r = live_status_or(fx->path, fx->fallback);
	char want[512];
	snprintf(want, sizeof(want), "berthctl: berthd is not running: no control "
		 "socket at %s, and %s is a stale control socket nobody listens "
		 "on\n", fx->path, fx->fallback);
	assert_refused(&r, want);
	run_free(&r);
}

/* A stale socket at the path (a berthd that was killed) and berthd on the
 * fallback: berthctl reaches it. */
static void test_the_fallback_past_a_stale_socket(void **state)
{
	struct fx *fx = *state;
	bound_socket(fx->path, false);
	expect_fallback_reached(fx);
}

/* Stale sockets at both: the message names both. */
static void test_stale_sockets_at_both(void **state)
{
	struct fx *fx = *state;
	bound_socket(fx->path, false);
	bound_socket(fx->fallback, false);

	struct run r = live_status_or(fx->path, fx->fallback);
	char want[512];
	snprintf(want, sizeof(want), "berthd is not running: %s is a stale control "
		 "socket nobody listens on, and %s is a stale control socket "
		 "nobody listens on\n", fx->path, fx->fallback);
	assert_refused(&r, want);
	run_free(&r);
}

/* Something at the path that is no socket at all is a mistake to show,
 * not a reason to look elsewhere. */
static void test_no_fallback_past_a_regular_file(void **state)
{
	struct fx *fx = *state;
	FILE *fp = fopen(fx->path, "w");
	assert_non_null(fp);
	assert_int_equal(fclose(fp), 0);
	bound_socket(fx->fallback, false);

	struct run r = live_status_or(fx->path, fx->fallback);
	char want[256];
	snprintf(want, sizeof(want), "%s is a regular file, not a socket",
		 fx->path);
	assert_refused(&r, want);
	assert_null(strstr(r.err, fx->fallback));
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nothing_at_the_path,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_a_stale_socket,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_a_regular_file,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_a_read_only_regular_file,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_a_directory,
						fx_setup, fx_teardown),
		cmocka_unit_test(test_an_empty_path),
		cmocka_unit_test_setup_teardown(test_nothing_at_the_path_nor_the_fallback,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_the_fallback_when_nothing_is_at_the_path,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_a_stale_fallback,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_the_fallback_past_a_stale_socket,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stale_sockets_at_both,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_fallback_past_a_regular_file,
						fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
