/*
 * Unit tests for berthd's control socket (src/daemon/control.c) on the fake
 * loop and clock with real unix sockets: the reply's framing (end line ".",
 * dot-stuffed output lines), the deadline that a slow reader keeps pushing
 * forward and a stuck one runs into, malformed command lines (too long, a
 * NUL, EOF instead of a newline), and the private directory check.
 */
#include <errno.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/loop_fake.h"
#include "daemon/control.h"

#define FX_START_MS 1000u
#define FX_MAX_FD 4096

struct fx {
	struct loop_fake *fake;
	struct loop *loop;
	struct control *ctl;
	char dir[64];
	char path[108];
	int listen_fd;
	/* What the command function got and answers. */
	char last_line[1024];
	unsigned runs;
	const char *body;
	size_t body_len;
};

/* The command function: "fail" fails; anything else answers fx->body. */
static int fx_run(void *arg, const char *line, FILE *out, char *err,
		  size_t errlen)
{
	struct fx *fx = arg;
	fx->runs++;
	snprintf(fx->last_line, sizeof(fx->last_line), "%s", line);
	if (strcmp(line, "fail") == 0) {
		snprintf(err, errlen, "it failed\nbadly");
		return -1;
	}
	fwrite(fx->body, 1, fx->body_len, out);
	return 0;
}

/* The one fd the fake loop has registered beyond those in skip (n). */
static int registered_fd(struct fx *fx, const int *skip, size_t n)
{
	for (int fd = 0; fd < FX_MAX_FD; fd++) {
		if (loop_fake_interest(fx->fake, fd) < 0)
			continue;
		bool skipped = false;
		for (size_t i = 0; i < n; i++)
			skipped |= skip[i] == fd;
		if (!skipped)
			return fd;
	}
	return -1;
}

static struct fx *fx_new(void)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/berth-test-control-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/ctl.sock", fx->dir);
	fx->fake = loop_fake_new(FX_START_MS);
	assert_non_null(fx->fake);
	struct loop_config cfg = loop_fake_config(fx->fake);
	fx->loop = loop_new(&cfg);
	assert_non_null(fx->loop);
	char err[512] = "";
	fx->ctl = control_open(fx->loop, fx->path, false, fx_run, fx, err,
			       sizeof(err));
	if (!fx->ctl)
		fail_msg("control_open: %s", err);
	fx->listen_fd = registered_fd(fx, NULL, 0);
	assert_true(fx->listen_fd >= 0);
	return fx;
}

static void fx_free(struct fx *fx)
{
	control_close(fx->ctl);
	loop_free(fx->loop);
	loop_fake_free(fx->fake);
	assert_int_equal(rmdir(fx->dir), 0); /* the socket file is gone too */
	free(fx);
}

static void fx_run_once(struct fx *fx)
{
	assert_true(loop_run_once(fx->loop) >= 0);
}

/* Connect a client and let the control accept it; *server gets the fd
 * berthd's side reads and writes. */
static int fx_connect(struct fx *fx, int *server)
{
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(c >= 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	memcpy(sun.sun_path, fx->path, strlen(fx->path) + 1);
	assert_int_equal(connect(c, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(loop_fake_inject(fx->fake, fx->listen_fd, LOOP_READ), 0);
	fx_run_once(fx);
	*server = registered_fd(fx, &fx->listen_fd, 1);
	assert_true(*server >= 0);
	return c;
}

/* Send bytes from the client and let the control read them. */
static void fx_send(struct fx *fx, int client, int server, const void *buf,
		    size_t len)
{
	assert_int_equal(send(client, buf, len, MSG_NOSIGNAL), (ssize_t)len);
	assert_int_equal(loop_fake_inject(fx->fake, server, LOOP_READ), 0);
	fx_run_once(fx);
}

/* Let the control write what it can of its reply (when still open). */
static void fx_writable(struct fx *fx, int server)
{
	if (loop_fake_inject(fx->fake, server, LOOP_WRITE) == 0)
		fx_run_once(fx);
}

/* Move the clock forward by ms and run an iteration (due timers fire). */
static void fx_advance(struct fx *fx, uint64_t ms)
{
	loop_fake_advance(fx->fake, ms);
	fx_run_once(fx);
}

/* A growing byte buffer for what the client reads. */
struct buf {
	char *p;
	size_t len, cap;
};

/* Read up to max bytes the client has now; returns true at EOF. */
static bool read_some(int client, struct buf *b, size_t max)
{
	while (max > 0) {
		if (b->cap - b->len < 65536) {
			b->cap = b->cap * 2 + 65536;
			b->p = realloc(b->p, b->cap + 1);
			assert_non_null(b->p);
		}
		size_t want = max < 65536 ? max : 65536;
		ssize_t n = recv(client, b->p + b->len, want, MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0) {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
			return false;
		}
		b->len += (size_t)n;
		b->p[b->len] = '\0';
		max -= (size_t)n;
	}
	return false;
}

/* The whole reply to line for a client that reads at once. */
static char *ask(struct fx *fx, const void *line, size_t len)
{
	int server;
	int c = fx_connect(fx, &server);
	fx_send(fx, c, server, line, len);
	struct buf b = { 0 };
	for (int i = 0; i < 100 && !read_some(c, &b, SIZE_MAX); i++)
		fx_writable(fx, server);
	close(c);
	assert_non_null(b.p);
	return b.p;
}

/* ---- the reply's framing ------------------------------------------------ */

static void test_reply_ends_with_the_end_line(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	fx->body = "one\ntwo\n";
	fx->body_len = strlen(fx->body);
	char *r = ask(fx, "status\n", 7);
	assert_string_equal(r, "ok\none\ntwo\n.\n");
	assert_string_equal(fx->last_line, "status");
	free(r);

	r = ask(fx, "fail\n", 5);
	assert_string_equal(r, "error: it failed?badly\n.\n"); /* one line */
	free(r);
	fx_free(fx);
}

static void test_output_lines_starting_with_a_dot_are_stuffed(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	fx->body = ".\n..\n.x\nmid.dle\nno newline";
	fx->body_len = strlen(fx->body);
	char *r = ask(fx, "status\n", 7);
	assert_string_equal(r, "ok\n..\n...\n..x\nmid.dle\nno newline\n.\n");
	free(r);
	fx_free(fx);
}

/* ---- deadlines ------------------------------------------------------------ */

/* A body much larger than the kernel's socket buffers. */
static char *big_body(size_t *len)
{
	size_t cap = 4u << 20, n = 0;
	char *p = malloc(cap);
	assert_non_null(p);
	for (unsigned i = 0; n + 32 < cap; i++)
		n += (size_t)snprintf(p + n, cap - n, "line %u\n", i);
	*len = n;
	return p;
}

static void test_a_slow_reader_gets_the_whole_reply(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	size_t len;
	char *body = big_body(&len);
	fx->body = body;
	fx->body_len = len;
	int server;
	int c = fx_connect(fx, &server);
	fx_send(fx, c, server, "pool\n", 5);
	fx_writable(fx, server);

	/*
	 * Every 4 s the client takes 64 kB: far longer than the 5 s deadline in
	 * all, but never 5 s without progress.  Every other round the control
	 * hears the socket is writable; in the others only the shrinking
	 * kernel queue shows the client is reading.
	 */
	struct buf b = { 0 };
	bool eof = false;
	for (unsigned round = 0; round < 1000 && !eof; round++) {
		eof = read_some(c, &b, 65536);
		if (round % 2)
			fx_writable(fx, server);
		fx_advance(fx, 4000);
	}
	assert_true(eof);
	assert_true(loop_fake_time(fx->fake) - FX_START_MS > 20000);
	assert_int_equal(b.len, 3 + len + 2);
	assert_memory_equal(b.p, "ok\n", 3);
	assert_memory_equal(b.p + 3, body, len);
	assert_string_equal(b.p + 3 + len, ".\n");
	free(b.p);
	close(c);
	free(body);
	fx_free(fx);
}

static void test_a_stuck_reader_is_dropped_without_the_end_line(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	size_t len;
	char *body = big_body(&len);
	fx->body = body;
	fx->body_len = len;
	int server;
	int c = fx_connect(fx, &server);
	fx_send(fx, c, server, "pool\n", 5);
	fx_writable(fx, server);
	fx_advance(fx, 4999);
	assert_true(loop_fake_interest(fx->fake, server) >= 0);
	fx_advance(fx, 2);
	assert_true(loop_fake_interest(fx->fake, server) < 0);

	struct buf b = { 0 };
	assert_true(read_some(c, &b, SIZE_MAX));
	assert_true(b.len > 3 && b.len < 3 + len);
	assert_memory_equal(b.p, "ok\n", 3);
	assert_true(strcmp(b.p + b.len - 3, "\n.\n") != 0);
	free(b.p);
	close(c);
	free(body);
	fx_free(fx);
}

static void test_a_silent_client_is_dropped_after_the_deadline(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	int server;
	int c = fx_connect(fx, &server);
	fx_advance(fx, 4999);
	assert_true(loop_fake_interest(fx->fake, server) >= 0);
	fx_advance(fx, 2);
	assert_true(loop_fake_interest(fx->fake, server) < 0);
	assert_int_equal(fx->runs, 0);
	close(c);
	fx_free(fx);
}

/* ---- malformed command lines ---------------------------------------------- */

/* Read the whole reply (the client's side is done sending). */
static char *reply_of(struct fx *fx, int c, int server)
{
	struct buf b = { 0 };
	for (int i = 0; i < 100 && !read_some(c, &b, SIZE_MAX); i++)
		fx_writable(fx, server);
	assert_non_null(b.p);
	return b.p;
}

static void test_a_line_too_long_gets_an_error(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	char line[600];
	memset(line, 'a', sizeof(line));
	char *r = ask(fx, line, sizeof(line));
	assert_string_equal(r, "error: line too long\n.\n");
	assert_int_equal(fx->runs, 0);
	free(r);
	fx_free(fx);
}

static void test_a_nul_in_the_line_gets_an_error(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	char *r = ask(fx, "status\0junk\n", 12);
	assert_string_equal(r, "error: NUL in command\n.\n");
	assert_int_equal(fx->runs, 0);
	free(r);
	/* Even before the newline arrives. */
	r = ask(fx, "sta\0", 4);
	assert_string_equal(r, "error: NUL in command\n.\n");
	free(r);
	fx_free(fx);
}

static void test_eof_ends_the_line(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	fx->body = "up\n";
	fx->body_len = 3;
	int server;
	int c = fx_connect(fx, &server);
	fx_send(fx, c, server, "status", 6);
	assert_int_equal(fx->runs, 0);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(loop_fake_inject(fx->fake, server, LOOP_READ), 0);
	fx_run_once(fx);
	assert_int_equal(fx->runs, 1);
	assert_string_equal(fx->last_line, "status");
	char *r = reply_of(fx, c, server);
	assert_string_equal(r, "ok\nup\n.\n");
	free(r);
	close(c);

	/* A client that asks nothing and goes gets nothing. */
	c = fx_connect(fx, &server);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(loop_fake_inject(fx->fake, server, LOOP_READ), 0);
	fx_run_once(fx);
	assert_true(loop_fake_interest(fx->fake, server) < 0);
	struct buf b = { 0 };
	assert_true(read_some(c, &b, SIZE_MAX));
	assert_int_equal(b.len, 0);
	assert_int_equal(fx->runs, 1);
	free(b.p);
	close(c);
	fx_free(fx);
}

/* ---- the private directory of the /tmp fallback -------------------------- */

static void test_check_dir(void **state)
{
	(void)state;
	char base[] = "/tmp/berth-test-dir-XXXXXX";
	assert_non_null(mkdtemp(base));
	char dir[128], file[128], link[128], err[512];
	snprintf(dir, sizeof(dir), "%s/d", base);
	snprintf(file, sizeof(file), "%s/f", base);
	snprintf(link, sizeof(link), "%s/l", base);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(control_check_dir(dir, geteuid(), err, sizeof(err)), 0);

	/* Anyone may write: someone else could swap the socket. */
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(control_check_dir(dir, geteuid(), err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, "mode 0777"));
	assert_int_equal(chmod(dir, 0720), 0);
	assert_int_equal(control_check_dir(dir, geteuid(), err, sizeof(err)), -EPERM);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(control_check_dir(dir, geteuid(), err, sizeof(err)), 0);

	/* Someone else's. */
	assert_int_equal(control_check_dir(dir, geteuid() + 1, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "owner uid"));

	/* Not a directory, or a link to one. */
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(control_check_dir(file, geteuid(), err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "a regular file"));
	assert_int_equal(symlink(dir, link), 0);
	assert_int_equal(control_check_dir(link, geteuid(), err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "a symbolic link"));

	/* control_open() with private_dir refuses a shared directory... */
	struct loop_fake *fake = loop_fake_new(FX_START_MS);
	struct loop_config cfg = loop_fake_config(fake);
	struct loop *l = loop_new(&cfg);
	assert_non_null(l);
	char path[200];
	snprintf(path, sizeof(path), "%s/berth.sock", dir);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_null(control_open(l, path, true, fx_run, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "not private"));
	assert_int_equal(access(path, F_OK), -1);
	/* ... and a symbolic link, but takes the directory it creates. */
	snprintf(path, sizeof(path), "%s/berth.sock", link);
	assert_null(control_open(l, path, true, fx_run, NULL, err, sizeof(err)));
	char fresh[100];
	snprintf(fresh, sizeof(fresh), "%s/new", base);
	snprintf(path, sizeof(path), "%s/berth.sock", fresh);
	struct control *c = control_open(l, path, true, fx_run, NULL, err, sizeof(err));
	if (!c)
		fail_msg("control_open: %s", err);
	control_close(c);
	loop_free(l);
	loop_fake_free(fake);

	assert_int_equal(rmdir(fresh), 0);
	assert_int_equal(unlink(link), 0);
	assert_int_equal(unlink(file), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(rmdir(base), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_ends_with_the_end_line),
		cmocka_unit_test(test_output_lines_starting_with_a_dot_are_stuffed),
		cmocka_unit_test(test_a_slow_reader_gets_the_whole_reply),
		cmocka_unit_test(test_a_stuck_reader_is_dropped_without_the_end_line),
		cmocka_unit_test(test_a_silent_client_is_dropped_after_the_deadline),
		cmocka_unit_test(test_a_line_too_long_gets_an_error),
		cmocka_unit_test(test_a_nul_in_the_line_gets_an_error),
		cmocka_unit_test(test_eof_ends_the_line),
		cmocka_unit_test(test_check_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
