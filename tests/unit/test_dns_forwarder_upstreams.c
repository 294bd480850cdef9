/*
 * Unit tests for dns/forwarder's upstream attempts over UDP: failover at the
 * exact upstream_timeout, SERVFAIL when every attempt fails, a lone upstream
 * asked once, and the health order (a failing upstream tried last, queries
 * an answering upstream ignores held not against it).  The fixture is
 * dns_fwd_fixture.h.
 */
#include "dns_fwd_fixture.h"

/* The query id gets SERVFAIL at t, not a millisecond before. */
static void servfail_at(struct env *e, uint64_t t, uint16_t id)
{
	uint8_t got[600];
	run_at(e, t - 1);
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	run_at(e, t);
	assert_client_servfail(e, id);
}

static void test_failover_at_exact_timeout(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	uint64_t t0 = fake_now;
	struct sent s0, s1;
	forward_one(e, 9, "www.example.test", DNS_TYPE_A, 0, &s0);
	run_at(e, t0 + TIMEOUT - 1);
	assert_false(upstream_got(e, 1, &s1));
	assert_int_equal(stats(e).retries, 0);
	run_at(e, t0 + TIMEOUT);
	assert_true(upstream_got(e, 1, &s1));
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	/* The first attempt is over: its late answer is not accepted. */
	uint8_t r[600], got[600];
	size_t rlen = make_reply(r, s0.q, s0.len, 1, 0, 0);
	assert_true(offer(e, 0, &s0, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	rlen = make_reply(r, s1.q, s1.len, 1, 0, 0);
	assert_true(offer(e, 1, &s1, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	assert_int_equal(dns_get_id(got), 9);
	env_free(e);
}

static void test_servfail_when_all_fail(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	uint64_t t0 = fake_now;
	struct sent s;
	forward_one(e, 0x5150, "www.example.test", DNS_TYPE_A, 0, &s);
	run_at(e, t0 + TIMEOUT);
	assert_true(upstream_got(e, 1, &s));
	servfail_at(e, t0 + 2 * TIMEOUT, 0x5150);
	assert_int_equal(stats(e).timeouts, 2);
	/* Two upstreams: each is asked once, none twice. */
	assert_false(upstream_got(e, 0, &s));
	assert_false(upstream_got(e, 1, &s));
	env_free(e);
}

/*
 * A lone upstream is asked once, like any other: SERVFAIL at
 * upstream_timeout, on which a stub resolver asks again at once (see
 * plan_order), and no second datagram from the forwarder.
 */
static void test_lone_upstream_asked_once(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	uint64_t t0 = fake_now;
	struct sent s;
	forward_one(e, 0x5151, "www.example.test", DNS_TYPE_A, 0, &s);
	servfail_at(e, t0 + TIMEOUT, 0x5151);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.retries, 0);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_false(upstream_got(e, 0, &s));
	env_free(e);
}

static void test_failing_upstream_tried_last(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	struct sent s;
	uint8_t r[600], got[600];
	/* Three queries time out on upstream 0 and are answered by 1. */
	for (int i = 0; i < 3; i++) {
		uint64_t t = fake_now;
		forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
		run_at(e, t + TIMEOUT);
		assert_true(upstream_got(e, 1, &s));
		size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
		assert_true(offer(e, 1, &s, r, rlen));
		assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	}
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 3);
	assert_int_equal(stats(e).timeouts_alive, 0);
	/* Now upstream 1 comes first. */
	uint8_t q[300];
	size_t qlen = make_query(q, 2, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	assert_false(upstream_got(e, 0, &s));
	assert_true(upstream_got(e, 1, &s));
	/* Upstream 1 fails this time; 0 answers and is healthy again. */
	uint64_t t = fake_now;
	run_at(e, t + TIMEOUT);
	assert_true(upstream_got(e, 0, &s));
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	assert_true(offer(e, 0, &s, r, rlen));
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	client_send(e, q, qlen);
	assert_true(upstream_got(e, 0, &s));
	env_free(e);
}

/*
 * Queries upstream 0 never answers (names whose servers are unreachable,
 * queries it drops) time out and move on as before, but while it answers
 * another query in the same window they are no failures of it: however
 * many there are, it keeps its place at the head of the order.
 */
static void test_ignored_queries_do_not_make_answering_upstream_sick(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	const unsigned n = DNS_FWD_SICK_AFTER + 1;
	uint64_t t0 = fake_now;
	struct sent ignored, s;
	char name[32];
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "slow%u.example.test", i);
		forward_one(e, (uint16_t)(0x100 + i), name, DNS_TYPE_A, 0, &ignored);
	}
	forward_one(e, 0x200, "www.example.test", DNS_TYPE_A, 0, &s);
	run_at(e, t0 + TIMEOUT - 1);
	upstream_answers(e, 0, &s);
	run_at(e, t0 + TIMEOUT);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, n);
	assert_int_equal(st.timeouts_alive, n);
	assert_int_equal(st.retries, n);
	for (unsigned i = 0; i < n; i++) {
		assert_true(upstream_got(e, 1, &s));
		upstream_answers(e, 1, &s);
	}
	/* Upstream 0 still comes first. */
	forward_one(e, 0x300, "www.example.test", DNS_TYPE_A, 0, &s);
	assert_false(upstream_got(e, 1, &s));
	env_free(e);
}

/*
 * The boundary: an answer accepted in the millisecond an attempt left
 * counts as life in its window, even when it was handled before the send
 * (the loop reads the clock once per iteration, so the forwarder cannot
 * tell the order within a millisecond, and doubting it would push a
 * working upstream back); an answer a millisecond earlier does not.
 */
static void test_answer_in_send_millisecond_counts_as_alive(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	uint64_t t = fake_now;
	struct sent s, ignored;
	forward_one(e, 1, "a.example.test", DNS_TYPE_A, 0, &s);
	upstream_answers(e, 0, &s);
	forward_one(e, 2, "slow.example.test", DNS_TYPE_A, 0, &ignored);
	run_at(e, t + TIMEOUT);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	assert_int_equal(stats(e).timeouts_alive, 1);
	assert_true(upstream_got(e, 1, &s));
	upstream_answers(e, 1, &s);

	t += TIMEOUT;
	forward_one(e, 3, "b.example.test", DNS_TYPE_A, 0, &s);
	upstream_answers(e, 0, &s);
	run_at(e, t + 1);
	forward_one(e, 4, "slow.example.test", DNS_TYPE_A, 0, &ignored);
	run_at(e, t + 1 + TIMEOUT);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, 2);
	assert_int_equal(st.timeouts_alive, 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_true(upstream_got(e, 1, &s));
	upstream_answers(e, 1, &s);
	env_free(e);
}

/*
 * An upstream that never answered still becomes sick after
 * DNS_FWD_SICK_AFTER timeouts when the loop's clock starts at 0, where
 * "no answer yet" must not pass for "an answer at time 0".
 */
static void test_silent_upstream_sick_from_clock_zero(void **state)
{
	(void)state;
	uint64_t saved = fake_now;
	fake_now = 0;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	struct sent s;
	for (unsigned i = 0; i < DNS_FWD_SICK_AFTER; i++)
		forward_one(e, (uint16_t)i, "slow.example.test", DNS_TYPE_A, 0, &s);
	run_at(e, TIMEOUT);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), DNS_FWD_SICK_AFTER);
	assert_int_equal(stats(e).timeouts_alive, 0);
	for (unsigned i = 0; i < DNS_FWD_SICK_AFTER; i++) {
		assert_true(upstream_got(e, 1, &s));
		upstream_answers(e, 1, &s);
	}
	uint8_t q[300];
	size_t qlen = make_query(q, 9, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	assert_false(upstream_got(e, 0, &s));
	assert_true(upstream_got(e, 1, &s));
	env_free(e);
	fake_now = saved;
}

/*
 * A query that finds no pool socket (a per-query pool at its cap) still
 * waits out upstream_timeout, with its deadline armed on no ID chain.
 * Freeing the forwarder, as every reload does while the loop lives on,
 * must leave none of its timers in the loop's wheel: one left there points
 * into the freed record table.
 */
static void test_free_leaves_no_timer_of_a_query_without_socket(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .per_query = 1 });
	struct sent s;
	forward_one(e, 1, "a.example.test", DNS_TYPE_A, 0, &s);
	uint8_t q[300];
	size_t qlen = make_query(q, 2, "b.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.pool_empty, 1);
	assert_int_equal(st.outstanding, 2);
	assert_int_not_equal(wheel_next_deadline(loop_wheel(e->loop)), UINT64_MAX);
	dns_fwd_free(e->f);
	e->f = NULL;
	assert_int_equal(wheel_next_deadline(loop_wheel(e->loop)), UINT64_MAX);
	/* The deadline passes with the loop still running: nothing fires. */
	run_at(e, fake_now + TIMEOUT + 1);
	env_free(e);
}

/*
 * dns_fwd_take_answer, berthd's first round over the services sharing a
 * pool: only the answer a query waits for is taken.  Datagrams from the
 * upstream with a wrong ID, question or socket are left, uncounted, for
 * another service whose query they may answer; the second round
 * (dns_fwd_on_upstream_reply) counts them.
 */
static void test_take_answer_takes_only_the_answer(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 7, "www.example.test", DNS_TYPE_A, 0, &s);
	uint8_t r[600], bad[600], got[600];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	const struct sockaddr *up = (const struct sockaddr *)&e->up_addr[0];

	memcpy(bad, r, rlen);
	dns_set_id(bad, (uint16_t)(dns_get_id(s.q) + 1));
	assert_false(dns_fwd_take_answer(e->f, s.sock.fd, s.sock.port, up,
					 sizeof(e->up_addr[0]), bad, rlen));
	memcpy(bad, r, rlen);
	bad[DNS_HEADER_LEN + 1] ^= 0x01; /* another name */
	assert_false(dns_fwd_take_answer(e->f, s.sock.fd, s.sock.port, up,
					 sizeof(e->up_addr[0]), bad, rlen));
	assert_false(dns_fwd_take_answer(e->f, s.sock.fd, s.sock.port, up,
					 sizeof(e->up_addr[0]), r, 5));
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.mismatch_id + st.mismatch_question + st.garbage, 0);
	assert_int_equal(st.outstanding, 1);

	/* The second round counts what the first left. */
	assert_true(offer(e, 0, &s, bad, rlen));
	assert_int_equal(stats(e).mismatch_question, 1);

	assert_true(dns_fwd_take_answer(e->f, s.sock.fd, s.sock.port, up,
					sizeof(e->up_addr[0]), r, rlen));
	loop_flush(e->loop);
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	assert_int_equal(dns_get_id(got), 7);
	st = stats(e);
	assert_int_equal(st.upstream_answers, 1);
	assert_int_equal(st.outstanding, 0);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failover_at_exact_timeout),
		cmocka_unit_test(test_servfail_when_all_fail),
		cmocka_unit_test(test_take_answer_takes_only_the_answer),
		cmocka_unit_test(test_free_leaves_no_timer_of_a_query_without_socket),
		cmocka_unit_test(test_lone_upstream_asked_once),
		cmocka_unit_test(test_failing_upstream_tried_last),
		cmocka_unit_test(test_ignored_queries_do_not_make_answering_upstream_sick),
		cmocka_unit_test(test_answer_in_send_millisecond_counts_as_alive),
		cmocka_unit_test(test_silent_upstream_sick_from_clock_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
