/*
 * Unit tests for the lingering close, on the fake loop and clock with real
 * loopback sockets.  A session closed while its peer has sent more than it
 * read, or before the peer acknowledged its output, must not close() at
 * once: the kernel would send an RST (at once, or when more input comes)
 * and throw away the output still queued for a peer whose window is full.
 * It shuts its write side, the peer reads the whole answer and a clean EOF,
 * and the session discards input until the peer's EOF or SESS_LINGER_MS.
 * Every test ends by checking that no fd leaked.
 */
#include "session_fixture.h"

static const uint8_t REQ[] = { 0x00, 0x03, 'a', 'b', 'c' };
static const uint8_t ERR[] = { 0x00, 0x01, 'E' };

static struct fx *setup(size_t max_output)
{
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	struct sess_limits lim = { .max_output = max_output };
	fx_listen_tcp(fx, &svc, &lim, NULL, false);
	return fx;
}

/* A request, then more bytes the session will not read: the service
 * answers the request with ERR and closes (as on a FORMERR). */
static struct sess *answer_and_close_with_input_unread(struct fx *fx, int c)
{
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(fx->requests, 1);
	uint8_t more[100];
	memset(more, 'm', sizeof(more));
	assert_int_equal(send(c, more, sizeof(more), 0), (ssize_t)sizeof(more));
	assert_int_equal(sess_send(s, ERR, sizeof(ERR)), 0);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->closes, 1);
	return s;
}

/* The peer reads ERR, then a FIN: an EOF, never ECONNRESET. */
static void assert_answer_then_eof(int c)
{
	uint8_t got[16];
	assert_int_equal(recv(c, got, sizeof(got), 0), (ssize_t)sizeof(ERR));
	assert_memory_equal(got, ERR, sizeof(ERR));
	assert_int_equal(recv(c, got, sizeof(got), 0), 0);
}

static void test_unread_input_lingers_until_eof(void **state)
{
	(void)state;
	struct fx *fx = setup(0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = answer_and_close_with_input_unread(fx, c);
	assert_answer_then_eof(c);
	/* Lingering: listed as closing, its fd watched for input only. */
	assert_ptr_equal(sess_first(fx->lst), s);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_CLOSING);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	/* More input is discarded, and the session stays. */
	assert_int_equal(send(c, REQ, sizeof(REQ), 0), (ssize_t)sizeof(REQ));
	assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s), LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->requests, 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	/* The peer's EOF ends it. */
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s), LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_null(sess_first(fx->lst));
	assert_int_equal(fx->closes, 1);
	close(c);
	fx_free(fx);
}

/*
 * A peer with a small receive window gets a 60,000-byte answer, and the
 * session closes.  It sent more input before the close (early) or sends it
 * after (late, while the answer is still unacknowledged).  Either way it
 * must read the whole answer, then the EOF: closed at once, the session's
 * RST cut it short with ECONNRESET.
 */
static void check_answer_past_the_peers_window(bool early)
{
	struct fx *fx = setup(0);
	int c = socket(fx->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	int small = 4096;
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small,
				    sizeof(small)), 0);
	assert_int_equal(connect(c, (struct sockaddr *)&fx->addr, fx->addrlen), 0);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	uint8_t more[100];
	memset(more, 'm', sizeof(more));
	if (early)
		assert_int_equal(send(c, more, sizeof(more), 0),
				 (ssize_t)sizeof(more));
	enum { BODY = 60000 };
	static uint8_t answer[BODY + 2];
	answer[0] = (uint8_t)(BODY >> 8);
	answer[1] = (uint8_t)BODY;
	memset(answer + 2, 'z', BODY);
	assert_int_equal(sess_send(s, answer, sizeof(answer)), 0);
	int sfd = sess_fd(s); /* s may be gone before the peer is done */
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	if (!early) {
		assert_int_equal(send(c, more, sizeof(more), 0),
				 (ssize_t)sizeof(more));
		(void)loop_fake_inject(fx->fake, sfd, LOOP_READ);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	size_t got = 0;
	uint8_t buf[1024];
	ssize_t n;
	for (unsigned spins = 0;; spins++) {
		assert_true(spins < 1000000);
		n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		/* Flushing, while the session still has output queued. */
		(void)loop_fake_inject(fx->fake, sfd, LOOP_WRITE);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	assert_int_equal(n, 0);
	assert_int_equal(got, sizeof(answer));
	close(c);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS);
	fx_free(fx);
}

static void test_answer_survives_input_sent_before_the_close(void **state)
{
	(void)state;
	check_answer_past_the_peers_window(true);
}

static void test_answer_survives_input_sent_after_the_close(void **state)
{
	(void)state;
	check_answer_past_the_peers_window(false);
}

static void test_linger_is_bounded(void **state)
{
	(void)state;
	struct fx *fx = setup(0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = answer_and_close_with_input_unread(fx, c);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS - 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	fx_at(fx, FX_START_MS + SESS_LINGER_MS);
	assert_null(sess_first(fx->lst));
	assert_answer_then_eof(c);
	close(c);
	fx_free(fx);
}

static void test_nothing_unread_closes_at_once(void **state)
{
	(void)state;
	struct fx *fx = setup(0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	/* No output and no input at risk: the service closes without an
	 * answer, and the fd closes in the same iteration. */
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_null(sess_first(fx->lst));
	assert_int_equal(fx_peer_state(c), 0);
	close(c);
	fx_free(fx);
}

static void test_flush_then_linger(void **state)
{
	(void)state;
	struct fx *fx = setup(64u << 20);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(send(c, REQ, sizeof(REQ), 0), (ssize_t)sizeof(REQ));
	size_t big = 8u << 20;
	uint8_t *blob = calloc(1, big);
	assert_non_null(blob);
	assert_int_equal(sess_send(s, blob, big), 0);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	/* Flushing: the peer reads it all, then gets the FIN. */
	size_t got = 0;
	for (unsigned spins = 0;; spins++) {
		assert_true(spins < 1000000);
		ssize_t n = recv(c, blob, big, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s),
						  LOOP_WRITE), 0);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	assert_int_equal(got, big);
	/* Then it lingers for the unread request, until the peer's EOF. */
	assert_ptr_equal(sess_first(fx->lst), s);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s), LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_null(sess_first(fx->lst));
	free(blob);
	close(c);
	fx_free(fx);
}

static void test_listener_freed_while_lingering(void **state)
{
	(void)state;
	struct fx *fx = setup(0);
	int c = fx_connect(fx);
	fx_accept(fx);
	answer_and_close_with_input_unread(fx, c);
	/* fx_free() frees the listener: the lingering fd closes with it. */
	assert_int_equal(fx->closes, 1);
	close(c);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unread_input_lingers_until_eof),
		cmocka_unit_test(test_answer_survives_input_sent_before_the_close),
		cmocka_unit_test(test_answer_survives_input_sent_after_the_close),
		cmocka_unit_test(test_linger_is_bounded),
		cmocka_unit_test(test_nothing_unread_closes_at_once),
		cmocka_unit_test(test_flush_then_linger),
		cmocka_unit_test(test_listener_freed_while_lingering),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
