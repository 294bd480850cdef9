/*
 * Unit tests for the forwarder's upstream leg over TCP: timeouts at the exact
 * upstream_timeout, failover, SERVFAIL when every upstream fails, and
 * queries waiting for room when every connection is full.  The fixture is
 * dns_fwd_tcp_fixture.h.
 */
#include "dns_fwd_tcp_fixture.h"

static void test_timeout_at_exact_upstream_timeout(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	uint64_t t0 = fake_now;
	client_ask(e, 9, "www.example.test");
	int up0 = up_accept(e, 0, PUMPS);
	assert_true(up0 >= 0);
	uint8_t q[600], r[600], got[600];
	ssize_t qlen0 = recv_frame(e, up0, q, sizeof(q));
	assert_true(qlen0 > 0);
	uint8_t q0[600];
	memcpy(q0, q, (size_t)qlen0);
	run_at(e, t0 + TIMEOUT - 1);
	assert_int_equal(up_accept(e, 1, 10), -1);
	assert_int_equal(stats(e).timeouts, 0);
	run_at(e, t0 + TIMEOUT);
	int up1 = up_accept(e, 1, PUMPS);
	assert_true(up1 >= 0);
	ssize_t qlen = recv_frame(e, up1, q, sizeof(q));
	assert_true(qlen > 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	/* The first attempt is over: its late answer is ignored. */
	size_t rlen = make_reply(r, q0, (size_t)qlen0, 1, 0, 0);
	send_frame(up0, r, rlen);
	assert_true(recv_frame(e, e->client, got, 20) < 0);
	assert_int_equal(stats(e).mismatch_id, 1);
	rlen = make_reply(r, q, (size_t)qlen, 1, 0, 0);
	send_frame(up1, r, rlen);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 9);
	close(up0);
	close(up1);
	env_free(e);
}

/*
 * A TCP query upstream 0 ignores while it answers another on the same
 * connection times out and moves on, as over UDP, but is no failure of
 * upstream 0: the connection works, the name is merely slow.
 */
static void test_ignored_query_on_answering_upstream_no_failure(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	uint64_t t0 = fake_now;
	uint8_t q[600], got[600];
	struct dns_msg m;
	client_ask(e, 1, "slow.example.test");
	int up0 = up_accept(e, 0, PUMPS);
	assert_true(up0 >= 0);
	assert_true(recv_frame(e, up0, q, sizeof(q)) > 0);
	run_at(e, t0 + 10);
	client_ask(e, 2, "www.example.test");
	upstream_answers_next(e, up0, 1);
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 2);
	run_at(e, t0 + TIMEOUT);
	int up1 = up_accept(e, 1, PUMPS);
	assert_true(up1 >= 0);
	upstream_answers_next(e, up1, 1);
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.timeouts_alive, 1);
	assert_int_equal(st.retries, 1);
	close(up0);
	close(up1);
	env_free(e);
}

static void assert_servfail(struct env *e, uint16_t id)
{
	uint8_t got[600];
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, id);
	assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_SERVFAIL);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	assert_int_equal(stats(e).servfails, 1);
	assert_int_equal(stats(e).outstanding, 0);
}

static void test_all_time_out_servfail(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	uint64_t t0 = fake_now;
	uint8_t q[600], got[600];
	client_ask(e, 0x5150, "www.example.test");
	int up0 = up_accept(e, 0, PUMPS);
	assert_true(up0 >= 0 && recv_frame(e, up0, q, sizeof(q)) > 0);
	run_at(e, t0 + TIMEOUT);
	int up1 = up_accept(e, 1, PUMPS);
	assert_true(up1 >= 0 && recv_frame(e, up1, q, sizeof(q)) > 0);
	run_at(e, t0 + 2 * TIMEOUT - 1);
	assert_true(recv_frame(e, e->client, got, 10) < 0);
	run_at(e, t0 + 2 * TIMEOUT);
	assert_servfail(e, 0x5150);
	assert_int_equal(stats(e).timeouts, 2);
	close(up0);
	close(up1);
	env_free(e);
}

static void test_all_refused_servfail(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	/* Nobody listens any more: every connection is refused. */
	for (int i = 0; i < NUP; i++) {
		close(e->lis[i]);
		e->lis[i] = -1;
	}
	client_ask(e, 0x0bad, "www.example.test");
	assert_servfail(e, 0x0bad);
	struct dns_fwd_stats st = stats(e);
	/* Each upstream: one connection, refused; nothing to retry on it. */
	assert_int_equal(st.upstream_tcp_lost, 2);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 1), 1);
	assert_int_equal(st.timeouts, 0);
	assert_false(udp_got_any(e, 0) || udp_got_any(e, 1));
	env_free(e);
}

/*
 * The retries after a lost connection are each upstream's.  Upstream 0
 * uses one (a loss, a retry that then times out); when upstream 1 then
 * loses its first connection too, it gets a retry as well, and no failure:
 * one ordinary close (RFC 7766 6.2.3) is not held against it.
 */
static void test_next_upstream_gets_its_own_retry(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	uint64_t t0 = fake_now;
	client_ask(e, 0x3333, "www.example.test");
	uint8_t q[600], got[600];
	int up0 = up_lose_once(e, 0);
	assert_true(recv_frame(e, up0, q, sizeof(q)) > 0);
	run_at(e, t0 + TIMEOUT + 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	int up1 = up_lose_once(e, 1);
	upstream_answers_next(e, up1, 1);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 0x3333);
	assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_NOERROR);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.upstream_tcp_lost, 2);
	assert_int_equal(st.servfails, 0);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 1), 0);
	close(up0);
	close(up1);
	env_free(e);
}

#define MANY 140          /* pipelined queries: more than the two
			     connections' 2 x 64 slots */
#define SLOTS 128

/* Ask MANY pipelined queries; return the two upstream connections with the
 * SLOTS queries they got, in up[] and (per connection) q/qlen/nq. */
struct saturated {
	int up[2];
	uint8_t q[2][64][300];
	ssize_t qlen[2][64];
	int nq[2];
};

static void saturate(struct env *e, struct saturated *s)
{
	char name[64];
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "q%d.example.test", i);
		client_ask(e, (uint16_t)(0x100 + i), name);
	}
	for (int c = 0; c < 2; c++) {
		s->up[c] = up_accept(e, 0, PUMPS);
		assert_true(s->up[c] >= 0);
		s->nq[c] = 0;
		while (s->nq[c] < 64) {
			ssize_t n = recv_frame(e, s->up[c], s->q[c][s->nq[c]], 300);
			assert_true(n > 0);
			s->qlen[c][s->nq[c]++] = n;
		}
	}
	assert_int_equal(up_accept(e, 0, 10), -1);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.upstream_tcp_queries, SLOTS);
	assert_int_equal(st.upstream_tcp_backlogged, MANY - SLOTS);
	assert_int_equal(st.servfails, 0);
	assert_int_equal(st.outstanding, MANY);
}

/*
 * More pipelined queries than the upstream connections have slots: the
 * rest wait (a busy upstream is not a failed one) and go out on the slots
 * answers free, oldest first; every client query gets its real answer.
 */
static void test_full_connections_queue_not_servfail(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	static struct saturated s;
	saturate(e, &s);
	uint8_t r[600], got[600], q[300];
	struct dns_msg m;
	/* Answer the first connection's queries; the 12 waiting take its
	 * freed slots. */
	for (int i = 0; i < 64; i++) {
		size_t rlen = make_reply(r, s.q[0][i], (size_t)s.qlen[0][i], 1, 0, 0);
		send_frame(s.up[0], r, rlen);
	}
	bool seen[MANY] = { false };
	for (int i = 0; i < 64; i++) {
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_NOERROR);
		seen[m.hdr.id - 0x100] = true;
	}
	for (int i = 0; i < MANY - SLOTS; i++) {
		ssize_t n = recv_frame(e, s.up[0], q, sizeof(q));
		assert_true(n > 0);
		size_t rlen = make_reply(r, q, (size_t)n, 1, 0, 0);
		send_frame(s.up[0], r, rlen);
	}
	for (int i = 0; i < 64; i++) {
		size_t rlen = make_reply(r, s.q[1][i], (size_t)s.qlen[1][i], 1, 0, 0);
		send_frame(s.up[1], r, rlen);
	}
	for (int i = 0; i < MANY - 64; i++) {
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_NOERROR);
		seen[m.hdr.id - 0x100] = true;
	}
	for (int i = 0; i < MANY; i++)
		assert_true(seen[i]);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.servfails, 0);
	assert_int_equal(st.upstream_answers, MANY);
	assert_int_equal(st.upstream_tcp_queries, MANY);
	assert_int_equal(st.upstream_tcp_opened, 2);
	assert_int_equal(st.outstanding, 0);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	close(s.up[0]);
	close(s.up[1]);
	env_free(e);
}

/* Waiting counts against the upstream timeout: queries still waiting when it
 * passes get SERVFAIL (one upstream) like those on the wire. */
static void test_waiting_queries_time_out(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	uint64_t t0 = fake_now;
	static struct saturated s;
	saturate(e, &s);
	run_at(e, t0 + TIMEOUT - 1);
	assert_int_equal(stats(e).timeouts, 0);
	run_at(e, t0 + TIMEOUT);
	for (int i = 0; i < MANY; i++) {
		uint8_t got[600];
		struct dns_msg m;
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_SERVFAIL);
	}
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.timeouts, MANY);
	assert_int_equal(st.servfails, MANY);
	assert_int_equal(st.outstanding, 0);
	assert_int_equal(st.upstream_tcp_queries, SLOTS);
	close(s.up[0]);
	close(s.up[1]);
	env_free(e);
}

/* A port nothing holds for UDP or TCP right now, from 45000 on. */
static uint16_t free_udp_tcp_port(void)
{
	for (uint16_t p = 45000; p < 45500; p++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_port = htons(p) };
		int t = socket(AF_INET, SOCK_STREAM, 0);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		bool ok = bind(t, (struct sockaddr *)&a, sizeof(a)) == 0 &&
			  bind(u, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(t);
		close(u);
		if (ok)
			return p;
	}
	fail_msg("no port free for both TCP and UDP in 45000-45499");
	return 0;
}

/*
 * One connection open and full, and the second one cannot be opened (the
 * plan has a single port, and its pair with this upstream is taken by the
 * first connection): the extra queries wait for room on the first, as
 * they would with both open, instead of failing over to SERVFAIL.
 */
static void test_unopenable_second_connection_queues(void **state)
{
	(void)state;
	uint16_t port = free_udp_tcp_port();
	struct env *e = env_new_plan(1, port, port, 1);
	enum { N = 70 };
	char name[64];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "q%d.example.test", i);
		client_ask(e, (uint16_t)(0x100 + i), name);
	}
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[64][300], r[600], got[600];
	ssize_t qlen[64];
	for (int i = 0; i < 64; i++) {
		qlen[i] = recv_frame(e, up, q[i], sizeof(q[i]));
		assert_true(qlen[i] > 0);
	}
	assert_int_equal(up_accept(e, 0, 10), -1);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.servfails, 0);
	assert_int_equal(st.upstream_tcp_opened, 1);
	assert_int_equal(st.upstream_tcp_backlogged, N - 64);
	for (int i = 0; i < 64; i++) {
		size_t rlen = make_reply(r, q[i], (size_t)qlen[i], 1, 0, 0);
		send_frame(up, r, rlen);
	}
	for (int i = 0; i < N - 64; i++) {
		ssize_t n = recv_frame(e, up, q[0], sizeof(q[0]));
		assert_true(n > 0);
		size_t rlen = make_reply(r, q[0], (size_t)n, 1, 0, 0);
		send_frame(up, r, rlen);
	}
	struct dns_msg m;
	for (int i = 0; i < N; i++) {
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_NOERROR);
	}
	st = stats(e);
	assert_int_equal(st.servfails, 0);
	assert_int_equal(st.upstream_answers, N);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	close(up);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timeout_at_exact_upstream_timeout),
		cmocka_unit_test(test_ignored_query_on_answering_upstream_no_failure),
		cmocka_unit_test(test_all_time_out_servfail),
		cmocka_unit_test(test_all_refused_servfail),
		cmocka_unit_test(test_next_upstream_gets_its_own_retry),
		cmocka_unit_test(test_full_connections_queue_not_servfail),
		cmocka_unit_test(test_waiting_queries_time_out),
		cmocka_unit_test(test_unopenable_second_connection_queues),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
