/*
 * Unit tests for the lingering close, on the fake loop and clock with real
 * loopback sockets.  A session closed while the kernel still holds output
 * for its peer (not yet sent or acknowledged) must not close() at once:
 * with input unread, or input arriving later, the kernel sends an RST and
 * throws that output away.  It shuts its write side, the peer reads the
 * whole answer and a clean EOF, and the session discards input until the
 * peer's EOF or SESS_LINGER_MS.  With no output at risk it closes at once,
 * so a client that only sends (a slowloris being evicted) never lingers.
 * Every test ends by checking that no fd leaked.
 */
#include "session_fixture.h"

static const uint8_t REQ[] = { 0x00, 0x03, 'a', 'b', 'c' };
static const uint8_t MORE[100] = { 'm' };

/* Answers larger than the client's window; the session's send buffer is
 * set to hold SMALL_ANSWER whole. */
#define SMALL_ANSWER 20000u
#define BIG_ANSWER 200000u
#define SERVER_SNDBUF (64 * 1024)

static uint8_t answer[BIG_ANSWER + 2];

static struct fx *setup_with(const struct sess_limits *lim)
{
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	fx_listen_tcp(fx, &svc, lim, NULL, false);
	return fx;
}

static struct fx *setup(void)
{
	return setup_with(NULL);
}

/* A client with a small receive window, connected and accepted; *s is its
 * session, with a send buffer of SERVER_SNDBUF. */
static int small_window_client(struct fx *fx, struct sess **s)
{
	int c = socket(fx->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	int small = 4096, big = SERVER_SNDBUF;
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small,
				    sizeof(small)), 0);
	assert_int_equal(connect(c, (struct sockaddr *)&fx->addr, fx->addrlen), 0);
	fx_accept(fx);
	*s = fx_sess_of(fx, c);
	assert_non_null(*s);
	assert_int_equal(setsockopt(sess_fd(*s), SOL_SOCKET, SO_SNDBUF, &big,
				    sizeof(big)), 0);
	return c;
}

/* Queue a framed answer of n bytes of body. */
static void send_answer(struct sess *s, size_t n)
{
	answer[0] = (uint8_t)(n >> 8);
	answer[1] = (uint8_t)n;
	memset(answer + 2, 'z', n);
	assert_int_equal(sess_send(s, answer, n + 2), 0);
}

/* A small-window client whose request gets SMALL_ANSWER, then the
 * service closes: the session lingers.  Returns the client; *s its session. */
static int answered_and_closed(struct fx *fx, struct sess **s)
{
	int c = small_window_client(fx, s);
	fx_send(fx, c, *s, REQ, sizeof(REQ));
	send_answer(*s, SMALL_ANSWER);
	sess_close(*s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	return c;
}

/*
 * Read from c until EOF or an error, 1 KiB at a time, telling the loop
 * between reads that sfd is writable (ignored once it no longer watches
 * sfd).  Returns the last recv() result; *got counts the bytes.
 */
static ssize_t read_to_end(struct fx *fx, int c, int sfd, size_t *got)
{
	uint8_t buf[1024];
	for (unsigned spins = 0;; spins++) {
		assert_true(spins < 1000000);
		ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			*got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return n;
		(void)loop_fake_inject(fx->fake, sfd, LOOP_WRITE);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
}

static void test_queued_answer_lingers_until_eof(void **state)
{
	(void)state;
	struct fx *fx = setup();
	struct sess *s;
	int c = small_window_client(fx, &s);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(send(c, MORE, sizeof(MORE), 0), (ssize_t)sizeof(MORE));
	send_answer(s, SMALL_ANSWER);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->closes, 1);
	/* Lingering: listed as closing, its fd watched for input only. */
	assert_ptr_equal(sess_first(fx->lst), s);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_CLOSING);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	/* More input is discarded, and the session stays. */
	assert_int_equal(send(c, REQ, sizeof(REQ), 0), (ssize_t)sizeof(REQ));
	fx_wake(fx, sess_fd(s), LOOP_READ);
	assert_int_equal(fx->requests, 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	/* The whole answer, then the FIN. */
	size_t got = 0;
	assert_int_equal(read_to_end(fx, c, sess_fd(s), &got), 0);
	assert_int_equal(got, SMALL_ANSWER + 2);
	/* The peer's EOF ends it. */
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	fx_wake(fx, sess_fd(s), LOOP_READ);
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

/*
 * The peer sent more input before the close (early) or sends it after
 * (late, while the answer is still queued).  Either way it must read the
 * whole answer, then the EOF: closed at once, the session's RST cut it
 * short with ECONNRESET.
 */
static void check_answer_survives(bool early)
{
	struct fx *fx = setup();
	struct sess *s;
	int c = small_window_client(fx, &s);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	if (early)
		assert_int_equal(send(c, MORE, sizeof(MORE), 0),
				 (ssize_t)sizeof(MORE));
	send_answer(s, SMALL_ANSWER);
	int sfd = sess_fd(s); /* s may be gone before the peer is done */
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	if (!early) {
		assert_int_equal(send(c, MORE, sizeof(MORE), 0),
				 (ssize_t)sizeof(MORE));
		(void)loop_fake_inject(fx->fake, sfd, LOOP_READ);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	size_t got = 0;
	assert_int_equal(read_to_end(fx, c, sfd, &got), 0);
	assert_int_equal(got, SMALL_ANSWER + 2);
	close(c);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS);
	fx_free(fx);
}

static void test_answer_survives_input_sent_before_the_close(void **state)
{
	(void)state;
	check_answer_survives(true);
}

static void test_answer_survives_input_sent_after_the_close(void **state)
{
	(void)state;
	check_answer_survives(false);
}

static void test_linger_is_bounded(void **state)
{
	(void)state;
	struct fx *fx = setup();
	struct sess *s;
	int c = answered_and_closed(fx, &s);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS - 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS);
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

static void test_flush_then_linger(void **state)
{
	(void)state;
	struct fx *fx = setup_with(&(struct sess_limits){ .max_output = 1u << 20 });
	struct sess *s;
	int c = small_window_client(fx, &s);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(send(c, MORE, sizeof(MORE), 0), (ssize_t)sizeof(MORE));
	/* Far more than the send buffer: the close flushes first. */
	send_answer(s, BIG_ANSWER);
	int sfd = sess_fd(s);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(loop_fake_interest(fx->fake, sfd), LOOP_WRITE);
	/* The peer reads slowly; once the flush is done the session lingers
	 * with most of a send buffer still queued for the peer. */
	size_t got = 0;
	uint8_t buf[1024];
	while (loop_fake_interest(fx->fake, sfd) == LOOP_WRITE) {
		assert_true(got < BIG_ANSWER);
		ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		assert_int_equal(loop_fake_inject(fx->fake, sfd, LOOP_WRITE), 0);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	assert_int_equal(loop_fake_interest(fx->fake, sfd), LOOP_READ);
	assert_ptr_equal(sess_first(fx->lst), s);
	assert_true(got + SERVER_SNDBUF / 4 < BIG_ANSWER + 2);
	assert_int_equal(read_to_end(fx, c, sfd, &got), 0);
	assert_int_equal(got, BIG_ANSWER + 2);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	fx_wake(fx, sfd, LOOP_READ);
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

static void test_nothing_queued_closes_at_once(void **state)
{
	(void)state;
	struct fx *fx = setup();
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	/* Input unread, but no output at risk: an RST loses nothing, so the
	 * fd closes in the same iteration. */
	assert_int_equal(send(c, MORE, sizeof(MORE), 0), (ssize_t)sizeof(MORE));
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

static void test_evicted_sessions_never_linger(void **state)
{
	(void)state;
	/* A slowloris at the cap: each new connection sends one byte of a
	 * length prefix and evicts the one before.  The evicted close at
	 * once, so only max_sessions of them hold an fd. */
	struct fx *fx = setup_with(&(struct sess_limits){
		.new_connection_ms = 1000,
		.max_sessions = 1,
	});
	int c[8];
	for (int i = 0; i < 8; i++) {
		c[i] = fx_connect(fx);
		fx_accept(fx);
		struct sess *s = fx_sess_of(fx, c[i]);
		assert_non_null(s);
		fx_send(fx, c[i], s, REQ, 1);
	}
	unsigned listed = 0;
	for (struct sess *s = sess_first(fx->lst); s; s = sess_next(s))
		listed++;
	assert_int_equal(listed, 1);
	/* The clients, the listener and its spare, the one session. */
	assert_int_equal(fx_count_fds(), fx->fds_before + 8 + 2 + 1);
	for (int i = 0; i < 8; i++)
		close(c[i]);
	fx_free(fx);
}

static void test_lingering_sessions_are_capped(void **state)
{
	(void)state;
	/* Lingering sessions are outside max_sessions, so at most that many
	 * linger at once: past it a close is immediate. */
	struct fx *fx = setup_with(&(struct sess_limits){ .max_sessions = 1 });
	struct sess *a, *b;
	int ca = answered_and_closed(fx, &a);
	int cb = answered_and_closed(fx, &b);
	assert_ptr_equal(sess_first(fx->lst), a);
	assert_null(sess_next(a));
	close(ca);
	close(cb);
	fx_free(fx);
}

static void test_listener_freed_while_lingering(void **state)
{
	(void)state;
	struct fx *fx = setup();
	struct sess *s;
	int c = answered_and_closed(fx, &s);
	assert_ptr_equal(sess_first(fx->lst), s);
	/* fx_free() frees the listener: the lingering fd closes with it. */
	close(c);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queued_answer_lingers_until_eof),
		cmocka_unit_test(test_answer_survives_input_sent_before_the_close),
		cmocka_unit_test(test_answer_survives_input_sent_after_the_close),
		cmocka_unit_test(test_linger_is_bounded),
		cmocka_unit_test(test_flush_then_linger),
		cmocka_unit_test(test_nothing_queued_closes_at_once),
		cmocka_unit_test(test_evicted_sessions_never_linger),
		cmocka_unit_test(test_lingering_sessions_are_capped),
		cmocka_unit_test(test_listener_freed_while_lingering),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
