/*
 * Unit tests for the session engine's backpressure, on the fake loop and
 * clock with real loopback sockets: a session at its in-flight cap holds
 * the rest of a pipelined burst and delivers it, in order, as answers go
 * out (after the answering call returns, never inside it); a peer's EOF
 * waits for held requests; output the peer leaves unread pauses reading;
 * a session closed, or its listener freed, with a delivery pending ends
 * cleanly.  Every test ends by checking that no fd leaked.
 */
#include "session_fixture.h"

/* A frame of the 2-byte-prefix protocol with an n-byte body of 'x'. */
static size_t frame(uint8_t *buf, size_t n)
{
	buf[0] = (uint8_t)(n >> 8);
	buf[1] = (uint8_t)n;
	memset(buf + 2, 'x', n);
	return n + 2;
}

static const uint8_t ANSWER[] = { 0x00, 0x01, 'A' };

static struct fx *setup(uint32_t max_in_flight, size_t max_output)
{
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	struct sess_limits lim = {
		.new_connection_ms = 1000,
		.idle_ms = 4000,
		.max_in_flight = max_in_flight,
		.max_output = max_output,
	};
	fx_listen_tcp(fx, &svc, &lim, NULL, false);
	return fx;
}

static uint64_t read_pauses(const struct fx *fx)
{
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	return st.read_pauses;
}

/* Five pipelined requests, bodies of 1..5 bytes, in one write. */
static void send_five(struct fx *fx, int c, struct sess *s)
{
	uint8_t burst[5 * 7];
	size_t len = 0;
	for (size_t n = 1; n <= 5; n++)
		len += frame(burst + len, n);
	fx_send(fx, c, s, burst, len);
}

static void test_cap_holds_the_rest_and_delivers_in_order(void **state)
{
	(void)state;
	struct fx *fx = setup(2, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	send_five(fx, c, s);
	assert_int_equal(fx->requests, 2);
	assert_int_equal(sess_in_flight(s), 2);
	/* Held and at the cap: not reading, nothing to write, so the fd is
	 * not watched at all. */
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), -ENOENT);
	assert_int_equal(read_pauses(fx), 1);

	for (unsigned answered = 1; answered <= 5; answered++) {
		assert_int_equal(sess_send(s, ANSWER, sizeof(ANSWER)), 0);
		/* Never delivered inside the service's own sess_send(). */
		unsigned before = fx->requests;
		assert_int_equal(before, answered + 1 < 5 ? answered + 1 : 5);
		assert_true(loop_run_once(fx->loop) >= 0);
		unsigned want = answered + 2 < 5 ? answered + 2 : 5;
		assert_int_equal(fx->requests, want);
	}
	/* Delivered in the order sent: frame lengths 3, 4, 5, 6, 7. */
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(fx->req_len[i], i + 3);
	assert_int_equal(sess_in_flight(s), 0);
	/* All answered: reading again, and one pause in all. */
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	assert_int_equal(read_pauses(fx), 1);
	uint8_t got[5 * sizeof(ANSWER)];
	assert_int_equal(recv(c, got, sizeof(got), MSG_WAITALL),
			 (ssize_t)sizeof(got));
	close(c);
	fx_free(fx);
}

static void test_requests_past_the_cap_wait_in_the_kernel(void **state)
{
	(void)state;
	struct fx *fx = setup(1, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	uint8_t f1[8];
	size_t n1 = frame(f1, 1);
	fx_send(fx, c, s, f1, n1);
	assert_int_equal(fx->requests, 1);
	/* At the cap with nothing held: the fd is not watched, so the next
	 * request waits in the kernel's buffers. */
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), -ENOENT);
	assert_int_equal(send(c, f1, n1, 0), (ssize_t)n1);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->requests, 1);
	assert_int_equal(sess_send(s, ANSWER, sizeof(ANSWER)), 0);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	fx_wake(fx, sess_fd(s), LOOP_READ);
	assert_int_equal(fx->requests, 2);
	close(c);
	fx_free(fx);
}

static void test_eof_waits_for_held_requests(void **state)
{
	(void)state;
	struct fx *fx = setup(1, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	uint8_t burst[3 * 8];
	size_t len = 0;
	for (size_t n = 1; n <= 3; n++)
		len += frame(burst + len, n);
	assert_int_equal(send(c, burst, len, 0), (ssize_t)len);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	fx_wake(fx, sess_fd(s), LOOP_READ);
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(fx->requests, i);
		assert_int_equal(fx->closes, 0);
		assert_int_equal(sess_send(s, ANSWER, sizeof(ANSWER)), 0);
		assert_true(loop_run_once(fx->loop) >= 0);
	}
	/* Everything delivered and answered: now the EOF is read. */
	assert_int_equal(fx->closes, 0);
	fx_wake(fx, sess_fd(s), LOOP_READ);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_PEER_CLOSED);
	uint8_t got[3 * sizeof(ANSWER) + 1];
	assert_int_equal(recv(c, got, sizeof(got), MSG_WAITALL),
			 (ssize_t)(3 * sizeof(ANSWER)));
	close(c);
	fx_free(fx);
}

static void test_unread_output_pauses_reading(void **state)
{
	(void)state;
	struct fx *fx = setup(0, 64u << 20);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	uint8_t f1[8];
	size_t n1 = frame(f1, 1);
	fx_send(fx, c, s, f1, n1);
	/* An answer far larger than the kernel's buffers: most of it stays
	 * queued, past SESS_OUT_PAUSE. */
	size_t big = 8u << 20;
	uint8_t *blob = calloc(1, big);
	assert_non_null(blob);
	assert_int_equal(sess_send(s, blob, big), 0);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_WRITE);
	assert_int_equal(read_pauses(fx), 1);
	fx_send(fx, c, s, f1, n1);
	assert_int_equal(fx->requests, 1);
	/* The peer reads: below the bound the session reads again. */
	fx_read_flushed(fx, c, s, blob, big);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	fx_wake(fx, sess_fd(s), LOOP_READ);
	assert_int_equal(fx->requests, 2);
	free(blob);
	close(c);
	fx_free(fx);
}

static void test_close_with_delivery_pending(void **state)
{
	(void)state;
	struct fx *fx = setup(1, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	send_five(fx, c, s);
	assert_int_equal(fx->requests, 1);
	/* The answer asks for the held request's delivery; the close that
	 * follows in the same callback wins. */
	assert_int_equal(sess_send(s, ANSWER, sizeof(ANSWER)), 0);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->requests, 1);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_SERVICE);
	close(c);
	fx_free(fx);
}

static void test_listener_freed_with_delivery_pending(void **state)
{
	(void)state;
	struct fx *fx = setup(1, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	send_five(fx, c, s);
	assert_int_equal(sess_send(s, ANSWER, sizeof(ANSWER)), 0);
	/* fx_free() frees the listener, then the loop runs the pending
	 * hooks: the delivery must find the session closed, not deliver. */
	sess_listener_free(fx->lst);
	fx->lst = NULL;
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->requests, 1);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_SHUTDOWN);
	close(c);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_holds_the_rest_and_delivers_in_order),
		cmocka_unit_test(test_requests_past_the_cap_wait_in_the_kernel),
		cmocka_unit_test(test_eof_waits_for_held_requests),
		cmocka_unit_test(test_unread_output_pauses_reading),
		cmocka_unit_test(test_close_with_delivery_pending),
		cmocka_unit_test(test_listener_freed_with_delivery_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
