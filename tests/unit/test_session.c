/*
 * Unit tests for TCP sessions on the fake loop and clock with real loopback
 * sockets: the new-connection deadline (exact, not extended by a trickle,
 * cancelled by a request), the idle deadline from the last response, no
 * deadline while a request is in flight, FIFO order of ties, eviction and
 * refusal at the cap, RST versus FIN, introspection and shutdown.  Every
 * test ends by checking that no fd leaked.
 */
#include "session_fixture.h"

#define T_NEW 1000u
#define T_IDLE 4000u

static const uint8_t REQ[] = { 0x00, 0x03, 'a', 'b', 'c' };

static struct fx *setup_tcp(bool echo, bool rst, uint32_t max_sessions)
{
	struct fx *fx = fx_new();
	fx->echo = echo;
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	struct sess_limits lim = {
		.new_connection_ms = T_NEW,
		.idle_ms = T_IDLE,
		.reset_on_timeout = rst,
		.max_sessions = max_sessions,
	};
	fx_listen_tcp(fx, &svc, &lim, NULL, false);
	return fx;
}

static void test_new_timeout_exact(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	assert_non_null(s);

	struct sess_info info;
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_NEW);
	assert_true(info.has_deadline);
	assert_int_equal(info.deadline_in_ms, T_NEW);
	assert_string_equal(info.service, "test");
	assert_non_null(strstr(info.peer, "127.0.0.1:"));

	fx_at(fx, FX_START_MS + T_NEW - 1);
	assert_int_equal(fx->closes, 0);
	assert_int_equal(fx_peer_state(c), 1);
	sess_get_info(s, &info);
	assert_int_equal(info.deadline_in_ms, 1);
	assert_int_equal(info.age_ms, T_NEW - 1);

	fx_at(fx, FX_START_MS + T_NEW);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_NEW_TIMEOUT);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_NEW_TIMEOUT), 1);
	assert_int_equal(fx_peer_state(c), 0); /* a FIN: EOF */
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

static void test_trickle_does_not_extend(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	/* A 200-byte message announced, then one byte every T/4. */
	const uint8_t hdr[] = { 0x00, 200 };
	fx_send(fx, c, s, hdr, 1);
	for (unsigned q = 1; q < 4; q++) {
		loop_fake_set_time(fx->fake, FX_START_MS + q * (T_NEW / 4));
		fx_send(fx, c, s, q == 1 ? hdr + 1 : (const uint8_t *)"x", 1);
	}
	fx_at(fx, FX_START_MS + T_NEW - 1);
	assert_int_equal(fx->closes, 0);
	fx_at(fx, FX_START_MS + T_NEW);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_NEW_TIMEOUT);
	assert_int_equal(fx->requests, 0);
	close(c);
	fx_free(fx);
}

static void test_request_cancels_new_and_in_flight_has_no_deadline(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(false, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	loop_fake_set_time(fx->fake, FX_START_MS + T_NEW / 2);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(fx->requests, 1);
	assert_int_equal(sess_in_flight(s), 1);

	/* Far past both timeouts: a request in flight keeps the session. */
	fx_at(fx, FX_START_MS + 10 * T_IDLE);
	assert_int_equal(fx->closes, 0);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_IN_FLIGHT);
	assert_false(info.has_deadline);

	/* The answer starts the idle clock from now. */
	uint64_t answered = FX_START_MS + 10 * T_IDLE + 7;
	fx_at(fx, answered); /* the service answers from a loop callback */
	assert_int_equal(sess_send(s, REQ, sizeof(REQ)), 0);
	assert_int_equal(sess_in_flight(s), 0);
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_IDLE);
	assert_int_equal(info.deadline_in_ms, T_IDLE);
	fx_at(fx, answered + T_IDLE - 1);
	assert_int_equal(fx->closes, 0);
	fx_at(fx, answered + T_IDLE);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_IDLE_TIMEOUT);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_IDLE_TIMEOUT), 1);
	close(c);
	fx_free(fx);
}

static void test_idle_from_last_response_not_partial(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	uint64_t second = FX_START_MS + T_IDLE / 2;
	loop_fake_set_time(fx->fake, second);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	assert_int_equal(fx->requests, 2);
	/* Partial bytes later on do not move the idle deadline. */
	loop_fake_set_time(fx->fake, second + T_IDLE / 2);
	fx_send(fx, c, s, REQ, 3);
	fx_at(fx, FX_START_MS + T_IDLE);
	assert_int_equal(fx->closes, 0);
	fx_at(fx, second + T_IDLE - 1);
	assert_int_equal(fx->closes, 0);
	fx_at(fx, second + T_IDLE);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_IDLE_TIMEOUT);
	close(c);
	fx_free(fx);
}

static void test_ties_close_in_accept_order(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 0);
	int c[4];
	for (int i = 0; i < 4; i++)
		c[i] = fx_connect(fx);
	fx_accept(fx);
	struct sess *order[4];
	int n = 0;
	for (struct sess *s = sess_first(fx->lst); s; s = sess_next(s))
		order[n++] = s;
	assert_int_equal(n, 4);
	fx_at(fx, FX_START_MS + T_NEW);
	assert_int_equal(fx->closes, 4);
	for (int i = 0; i < 4; i++) {
		assert_ptr_equal(fx->closed[i], order[i]);
		close(c[i]);
	}
	fx_free(fx);
}

static void test_eviction_and_refusal(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 3);
	int a = fx_connect(fx);
	fx_accept(fx);
	struct sess *sa = fx_sess_of(fx, a);
	fx_send(fx, a, sa, REQ, sizeof(REQ)); /* a has completed a request */
	int b = fx_connect(fx);
	fx_accept(fx);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *sb = fx_sess_of(fx, b);
	struct sess_info ib;
	sess_get_info(sb, &ib);

	int d = fx_connect(fx);
	fx_accept(fx);
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.closes[SESS_CLOSE_EVICTED], 1);
	assert_int_equal(st.active, 3);
	assert_int_equal(fx->closes, 1);
	assert_ptr_equal(fx->closed[0], sb);
	assert_int_equal(fx_peer_state(b), 0);
	assert_int_equal(fx_peer_state(a), 1);
	assert_non_null(strstr(fx->last_log, ib.peer));
	assert_non_null(fx_sess_of(fx, d));

	/* Everybody has completed a request: the next one is refused. */
	fx_send(fx, c, fx_sess_of(fx, c), REQ, sizeof(REQ));
	fx_send(fx, d, fx_sess_of(fx, d), REQ, sizeof(REQ));
	int e = fx_connect(fx);
	fx_accept(fx);
	sess_listener_stats(fx->lst, &st);
	assert_int_equal(st.refusals, 1);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.active, 3);
	assert_int_equal(st.accepted, 4);
	assert_null(fx_sess_of(fx, e));
	assert_non_null(strstr(fx->last_log, "refusing 127.0.0.1:"));
	assert_true(fx_peer_state(e) <= 0);
	int clients[] = { a, b, c, d, e };
	for (int i = 0; i < 5; i++)
		close(clients[i]);
	fx_free(fx);
}

static void check_timeout_close(bool rst, int want)
{
	struct fx *fx = setup_tcp(true, rst, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	fx_at(fx, FX_START_MS + T_NEW);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_NEW_TIMEOUT), 1);
	assert_int_equal(fx_peer_state(c), want);
	close(c);
	fx_free(fx);
}

static void test_rst_on_timeout(void **state)
{
	(void)state;
	check_timeout_close(true, -ECONNRESET);
}

static void test_fin_on_timeout(void **state)
{
	(void)state;
	check_timeout_close(false, 0);
}

static void test_out_of_order_answers(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(false, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	uint8_t three[3 * sizeof(REQ)];
	for (int i = 0; i < 3; i++)
		memcpy(three + i * sizeof(REQ), REQ, sizeof(REQ));
	fx_send(fx, c, s, three, sizeof(three));
	assert_int_equal(fx->requests, 3);
	assert_int_equal(sess_in_flight(s), 3);
	const uint8_t r2[] = { 0, 1, '2' }, r0[] = { 0, 1, '0' },
		      r1[] = { 0, 1, '1' };
	assert_int_equal(sess_send(s, r2, 3), 0);
	assert_int_equal(sess_send(s, r0, 3), 0);
	assert_int_equal(sess_in_flight(s), 1);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_false(info.has_deadline);
	assert_int_equal(sess_send(s, r1, 3), 0);
	sess_get_info(s, &info);
	assert_true(info.has_deadline);
	uint8_t got[9];
	assert_int_equal(recv(c, got, sizeof(got), 0), 9);
	assert_int_equal(got[2], '2');
	assert_int_equal(got[5], '0');
	assert_int_equal(got[8], '1');
	/* Nothing left to write: the session only waits for reading. */
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	close(c);
	fx_free(fx);
}

static void test_write_interest_only_while_pending(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	struct sess_limits lim = { .max_output = 64u << 20 };
	fx_listen_tcp(fx, &svc, &lim, NULL, false);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	size_t big = 8u << 20;
	uint8_t *blob = calloc(1, big);
	assert_non_null(blob);
	assert_int_equal(sess_send(s, blob, big), 0);
	/* Far past SESS_OUT_PAUSE unread: writing only, reading paused. */
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_WRITE);
	fx_read_flushed(fx, c, s, blob, big);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_READ);
	free(blob);
	close(c);
	fx_free(fx);
}

static void test_peer_close_waits_for_in_flight(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(false, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	assert_int_equal(send(c, REQ, sizeof(REQ), 0), (ssize_t)sizeof(REQ));
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s), LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->requests, 1);
	assert_int_equal(fx->closes, 0);
	/* The answer still reaches the half-closed peer, then the FIN. */
	assert_int_equal(sess_send(s, REQ, sizeof(REQ)), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_PEER_CLOSED);
	uint8_t got[sizeof(REQ)];
	assert_int_equal(recv(c, got, sizeof(got), 0), (ssize_t)sizeof(REQ));
	assert_int_equal(recv(c, got, sizeof(got), 0), 0);
	close(c);
	fx_free(fx);
}

static void test_service_close_flushes_and_shutdown(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(false, false, 0);
	int c1 = fx_connect(fx), c2 = fx_connect(fx), c3 = fx_connect(fx);
	fx_accept(fx);
	struct sess *s1 = fx_sess_of(fx, c1);
	fx_send(fx, c1, s1, REQ, sizeof(REQ));
	/* A final error reply, then close: the reply is flushed before FIN. */
	assert_int_equal(sess_send(s1, REQ, sizeof(REQ)), 0);
	sess_close(s1, SESS_CLOSE_SERVICE);
	sess_close(s1, SESS_CLOSE_MALFORMED); /* ignored: already closing */
	assert_int_equal(sess_send(s1, REQ, sizeof(REQ)), -EPIPE);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_SERVICE), 1);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_MALFORMED), 0);
	uint8_t got[16];
	assert_int_equal(recv(c1, got, sizeof(got), 0), (ssize_t)sizeof(REQ));
	assert_int_equal(recv(c1, got, sizeof(got), 0), 0);

	/* One session closing with its hook still queued, one open. */
	sess_close(fx_sess_of(fx, c2), SESS_CLOSE_SERVICE);
	sess_listener_free(fx->lst);
	fx->lst = NULL;
	assert_int_equal(fx->closes, 3);
	assert_int_equal(fx->close_why[1], SESS_CLOSE_SERVICE);
	assert_int_equal(fx->close_why[2], SESS_CLOSE_SHUTDOWN);
	assert_int_equal(fx_peer_state(c3), 0);
	close(c1);
	close(c2);
	close(c3);
	fx_free(fx);
}

static void test_peer_reset_is_io_error(void **state)
{
	(void)state;
	struct fx *fx = setup_tcp(true, false, 0);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	close(c);
	assert_int_equal(loop_fake_inject(fx->fake, sess_fd(s), LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(fx->closes, 1);
	assert_int_equal(fx->close_why[0], SESS_CLOSE_IO_ERROR);
	assert_int_equal(fx_closes(fx, SESS_CLOSE_IO_ERROR), 1);
	fx_free(fx);
}

static void test_flush_on_close_is_bounded(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	struct sess_limits lim = { .max_output = 64u << 20 };
	fx_listen_tcp(fx, &svc, &lim, NULL, false);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	fx_send(fx, c, s, REQ, sizeof(REQ));
	size_t big = 32u << 20;
	uint8_t *blob = calloc(1, big);
	assert_non_null(blob);
	assert_int_equal(sess_send(s, blob, big), 0);
	free(blob);
	sess_close(s, SESS_CLOSE_SERVICE);
	assert_true(loop_run_once(fx->loop) >= 0);
	/* The peer reads nothing: the session waits to flush, then gives up. */
	assert_int_equal(fx->closes, 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_int_equal(info.state, SESS_STATE_CLOSING);
	assert_int_equal(loop_fake_interest(fx->fake, sess_fd(s)), LOOP_WRITE);
	fx_at(fx, FX_START_MS + SESS_FLUSH_MS - 1);
	assert_ptr_equal(sess_first(fx->lst), s);
	fx_at(fx, FX_START_MS + SESS_FLUSH_MS);
	assert_null(sess_first(fx->lst));
	close(c);
	fx_free(fx);
}

static void test_ipv6_served(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	fx->echo = true;
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	fx_listen_tcp(fx, &svc, NULL, NULL, true);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	assert_non_null(s);
	struct sess_info info;
	sess_get_info(s, &info);
	assert_non_null(strstr(info.peer, "[::1]:"));
	fx_send(fx, c, s, REQ, sizeof(REQ));
	uint8_t got[16];
	assert_int_equal(recv(c, got, sizeof(got), 0), (ssize_t)sizeof(REQ));
	assert_memory_equal(got, REQ, sizeof(REQ));
	close(c);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_timeout_exact),
		cmocka_unit_test(test_trickle_does_not_extend),
		cmocka_unit_test(test_request_cancels_new_and_in_flight_has_no_deadline),
		cmocka_unit_test(test_idle_from_last_response_not_partial),
		cmocka_unit_test(test_ties_close_in_accept_order),
		cmocka_unit_test(test_eviction_and_refusal),
		cmocka_unit_test(test_rst_on_timeout),
		cmocka_unit_test(test_fin_on_timeout),
		cmocka_unit_test(test_out_of_order_answers),
		cmocka_unit_test(test_write_interest_only_while_pending),
		cmocka_unit_test(test_peer_close_waits_for_in_flight),
		cmocka_unit_test(test_service_close_flushes_and_shutdown),
		cmocka_unit_test(test_peer_reset_is_io_error),
		cmocka_unit_test(test_flush_on_close_is_bounded),
		cmocka_unit_test(test_ipv6_served),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
