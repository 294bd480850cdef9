/*
 * Unit tests for the forwarder's upstream leg over TCP: a TCP client's query
 * goes upstream over TCP, pipelining, reply matching, a connection lost
 * under a query, big answers, idle connections, a UDP client still over
 * UDP, and no allocation per query.  Timeouts, failover and full
 * connections are in test_dns_forwarder_tcp_upstreams.c; the fixture is
 * dns_fwd_tcp_fixture.h.
 */
#include "dns_fwd_tcp_fixture.h"

#include "alloc_count.h"

static void test_tcp_client_goes_upstream_over_tcp(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	client_ask(e, 0xbeef, "www.example.test");
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[600], r[600], got[600];
	ssize_t qlen = recv_frame(e, up, q, sizeof(q));
	assert_true(qlen > 0);
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, q, (size_t)qlen), DNS_OK);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	assert_false(udp_got_any(e, 0));
	size_t rlen = make_reply(r, q, (size_t)qlen, 2, 0, 0);
	send_frame(up, r, rlen);
	size_t n = client_answer(e, got, sizeof(got), &m);
	assert_int_equal(n, rlen);
	assert_int_equal(m.hdr.id, 0xbeef);
	assert_int_equal(m.hdr.ancount, 2);
	assert_memory_equal(got + 2, r + 2, rlen - 2);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.upstream_tcp_queries, 1);
	assert_int_equal(st.upstream_tcp_opened, 1);
	assert_int_equal(st.upstream_answers, 1);
	assert_int_equal(st.outstanding, 0);
	assert_false(udp_got_any(e, 0));
	close(up);
	env_free(e);
}

static void test_pipelined_on_one_connection(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	client_ask(e, 1, "a.example.test");
	client_ask(e, 2, "b.example.test");
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[2][600], r[600], got[600];
	ssize_t qlen[2];
	for (int i = 0; i < 2; i++) {
		qlen[i] = recv_frame(e, up, q[i], sizeof(q[i]));
		assert_true(qlen[i] > 0);
	}
	assert_int_not_equal(dns_get_id(q[0]), dns_get_id(q[1]));
	/* Answered in reverse order, each reaches its own query. */
	struct dns_msg m;
	for (int i = 1; i >= 0; i--) {
		size_t rlen = make_reply(r, q[i], (size_t)qlen[i], 1, 0, 0);
		send_frame(up, r, rlen);
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(m.hdr.id, i + 1);
	}
	/* A third query later still takes the same connection. */
	client_ask(e, 3, "c.example.test");
	ssize_t n = recv_frame(e, up, q[0], sizeof(q[0]));
	assert_true(n > 0);
	assert_int_equal(up_accept(e, 0, 10), -1);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.upstream_tcp_opened, 1);
	assert_int_equal(st.upstream_tcp_reused, 2);
	assert_int_equal(st.upstream_tcp_queries, 3);
	assert_false(udp_got_any(e, 0));
	close(up);
	env_free(e);
}

static void test_wrong_id_or_question_ignored(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	client_ask(e, 7, "www.example.test");
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[600], wq[300], r[600], got[600];
	ssize_t qlen = recv_frame(e, up, q, sizeof(q));
	assert_true(qlen > 0);
	uint16_t id = dns_get_id(q);
	size_t rlen = make_reply(r, q, (size_t)qlen, 1, 0, 0);
	dns_set_id(r, (uint16_t)(id + 1));
	send_frame(up, r, rlen);
	size_t wlen = make_query(wq, id, "www.example.tesu", DNS_TYPE_A, DNS_CLASS_IN, 0);
	rlen = make_reply(r, wq, wlen, 1, 0, 0);
	send_frame(up, r, rlen);
	wlen = make_query(wq, id, "www.example.test", DNS_TYPE_AAAA, DNS_CLASS_IN, 0);
	rlen = make_reply(r, wq, wlen, 1, 0, 0);
	send_frame(up, r, rlen);
	assert_true(recv_frame(e, e->client, got, sizeof(got)) < 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.mismatch_id, 1);
	assert_int_equal(st.mismatch_question, 2);
	assert_int_equal(st.answers, 0);
	assert_int_equal(st.outstanding, 1);
	rlen = make_reply(r, q, (size_t)qlen, 1, 0, 0);
	send_frame(up, r, rlen);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 7);
	assert_int_equal(stats(e).upstream_answers, 1);
	close(up);
	env_free(e);
}

static void test_upstream_closes_mid_flight_retried(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	client_ask(e, 0x1234, "www.example.test");
	uint8_t got[600];
	/* The same upstream again, on a new connection. */
	int up = up_lose_once(e, 0);
	upstream_answers_next(e, up, 1);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 0x1234);
	assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_NOERROR);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.upstream_tcp_lost, 1);
	assert_int_equal(st.upstream_tcp_opened, 2);
	assert_int_equal(st.upstream_tcp_closed, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(up_accept(e, 1, 5), -1);
	close(up);
	env_free(e);
}

/* Lost pipelined, then pipelined again, then alone: only then the query
 * moves to the next upstream. */
static void test_third_loss_moves_to_next_upstream(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	client_ask(e, 0x2222, "www.example.test");
	uint8_t q[600], got[600];
	for (int i = 0; i < 3; i++) {
		int up = up_accept(e, 0, PUMPS);
		assert_true(up >= 0);
		assert_true(recv_frame(e, up, q, sizeof(q)) > 0);
		assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
		close(up);
	}
	int up = up_accept(e, 1, PUMPS);
	assert_true(up >= 0);
	upstream_answers_next(e, up, 1);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 0x2222);
	assert_int_equal(stats(e).upstream_tcp_lost, 3);
	assert_int_equal(stats(e).upstream_tcp_opened, 4);
	/* Three lost connections under one query are one failure of upstream
	 * 0 (it answered nothing meanwhile); upstream 1 answered. */
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 1), 0);
	close(up);
	env_free(e);
}

/* Read one query frame from up; returns its length and checks its name. */
static size_t up_read(struct env *e, int up, const char *name, uint8_t *q,
		      size_t size)
{
	uint8_t want[300];
	ssize_t n = recv_frame(e, up, q, size);
	assert_true(n > 0);
	size_t wlen = put_name(want, name);
	assert_memory_equal(q + DNS_HEADER_LEN, want, wlen);
	return (size_t)n;
}

/*
 * A lone upstream that drops the connection on one query it refuses (as
 * dnsdist's DropAction does over TCP) and handles its queries in order:
 * the queries pipelined behind that one are lost with it, twice, and then
 * get their answers alone, side by side; only the query itself gets
 * SERVFAIL, and the upstream, which answered others, is not held to blame.
 */
static void test_query_that_drops_connections_harms_only_itself(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	const char *names[] = { "a.test", "b.test", "drop.test", "c.test", "d.test" };
	uint8_t q[600], r[600], got[600];
	struct dns_msg m;
	for (uint16_t i = 0; i < 5; i++)
		client_ask(e, (uint16_t)(0x100 + i), names[i]);
	/* The first connection: a and b answered, then the drop. */
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	for (int i = 0; i < 2; i++)
		upstream_answers_next(e, up, 1);
	for (int i = 2; i < 5; i++)
		up_read(e, up, names[i], q, sizeof(q));
	close(up);
	for (uint16_t i = 0; i < 2; i++) {
		client_answer(e, got, sizeof(got), &m);
		assert_int_equal(m.hdr.id, 0x100 + i);
	}
	/* The retry, pipelined as before: the drop comes first again. */
	up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	for (int i = 2; i < 5; i++)
		up_read(e, up, names[i], q, sizeof(q));
	close(up);
	/* Now each alone, on a connection of its own. */
	int solo[3];
	for (int k = 0; k < 3; k++) {
		solo[k] = up_accept(e, 0, PUMPS);
		assert_true(solo[k] >= 0);
	}
	assert_int_equal(up_accept(e, 0, 5), -1);
	for (int k = 0; k < 3; k++) {
		ssize_t n = recv_frame(e, solo[k], q, sizeof(q));
		assert_true(n > 0);
		assert_true(recv_frame(e, solo[k], r, sizeof(r)) < 0); /* alone */
		if (q[DNS_HEADER_LEN + 1] == 'd' && q[DNS_HEADER_LEN + 2] == 'r') {
			close(solo[k]);
			solo[k] = -1;
			continue;
		}
		size_t rlen = make_reply(r, q, (size_t)n, 1, 0, 0);
		send_frame(solo[k], r, rlen);
	}
	unsigned rcode_of[5] = { 99, 99, 99, 99, 99 };
	for (int k = 0; k < 3; k++) {
		client_answer(e, got, sizeof(got), &m);
		assert_true(m.hdr.id >= 0x102 && m.hdr.id <= 0x104);
		rcode_of[m.hdr.id - 0x100] = dns_flags_rcode(m.hdr.flags);
	}
	assert_int_equal(rcode_of[2], DNS_RCODE_SERVFAIL);
	assert_int_equal(rcode_of[3], DNS_RCODE_NOERROR);
	assert_int_equal(rcode_of[4], DNS_RCODE_NOERROR);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.servfails, 1);
	assert_int_equal(st.upstream_answers, 4);
	assert_int_equal(st.upstream_tcp_lost, 3);
	assert_int_equal(st.outstanding, 0);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 0);
	for (int k = 0; k < 3; k++)
		if (solo[k] >= 0)
			close(solo[k]);
	env_free(e);
}

static void test_big_answer_reaches_client_whole(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	client_ask(e, 0x0b16, "big.example.test");
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[600], r[BIG], got[BIG];
	ssize_t qlen = recv_frame(e, up, q, sizeof(q));
	assert_true(qlen > 0);
	/* 190 A records: 12 + 22 + 190 * 16 = 3074 octets. */
	size_t rlen = make_reply(r, q, (size_t)qlen, 190, 0, 0);
	assert_true(rlen > 3000);
	send_frame(up, r, rlen);
	struct dns_msg m;
	size_t n = client_answer(e, got, sizeof(got), &m);
	assert_int_equal(n, rlen);
	assert_false(m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(m.hdr.ancount, 190);
	assert_memory_equal(got + 2, r + 2, rlen - 2);
	assert_int_equal(stats(e).truncated, 0);
	close(up);
	env_free(e);
}

static void test_idle_connection_closed(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	client_ask(e, 1, "www.example.test");
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[600], got[600];
	upstream_answers_next(e, up, 1);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	uint64_t t = fake_now;
	run_at(e, t + IDLE_MS - 1);
	assert_true(recv(up, got, sizeof(got), MSG_DONTWAIT) < 0);
	assert_int_equal(stats(e).upstream_tcp_closed, 0);
	run_at(e, t + IDLE_MS);
	assert_int_equal(recv(up, got, sizeof(got), MSG_DONTWAIT), 0);
	assert_int_equal(stats(e).upstream_tcp_closed, 1);
	close(up);
	/* The next query opens a new connection. */
	client_ask(e, 2, "www.example.test");
	up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	assert_true(recv_frame(e, up, q, sizeof(q)) > 0);
	assert_int_equal(stats(e).upstream_tcp_opened, 2);
	close(up);
	env_free(e);
}

static void test_udp_client_still_goes_over_udp(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	char err[128];
	struct sockaddr_in fa = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int idx = dns_fwd_listen_udp(e->f, (struct sockaddr *)&fa, sizeof(fa),
				     err, sizeof(err));
	assert_true(idx >= 0);
	fa.sin_port = htons(dns_fwd_udp_port(e->f, idx));
	int c = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(c >= 0);
	uint8_t q[300];
	size_t qlen = make_query(q, 3, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	assert_int_equal(sendto(c, q, qlen, 0, (struct sockaddr *)&fa, sizeof(fa)),
			 (ssize_t)qlen);
	bool got = false;
	for (int i = 0; i < PUMPS && !got; i++) {
		pump(e);
		got = udp_got_any(e, 0);
	}
	assert_true(got);
	assert_int_equal(up_accept(e, 0, 5), -1);
	assert_int_equal(stats(e).upstream_tcp_queries, 0);
	close(c);
	env_free(e);
}

/*
 * A TCP client's queries on an open connection, relayed over the open
 * upstream connection, allocate nothing: after the first round trip (which
 * opens both connections and their buffers), 500 more with distinct names
 * allocate not once.
 */
static void test_tcp_round_trip_allocates_nothing(void **state)
{
	(void)state;
	struct env *e = env_new(1);
	uint8_t got[600];
	char name[64];
	int up = -1;
	unsigned long counted = 0;
	for (int i = 0; i <= 500; i++) {
		if (i == 1)
			counted = alloc_calls;
		snprintf(name, sizeof(name), "host%d.example.test", i);
		client_ask(e, (uint16_t)i, name);
		if (up < 0) {
			up = up_accept(e, 0, PUMPS);
			assert_true(up >= 0);
		}
		size_t rlen = upstream_answers_next(e, up, 1);
		struct dns_msg m;
		assert_int_equal(client_answer(e, got, sizeof(got), &m), rlen);
		assert_int_equal(m.hdr.id, (uint16_t)i);
	}
	assert_true(counted > 0);
	assert_int_equal(alloc_calls - counted, 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.upstream_tcp_opened, 1);
	assert_int_equal(st.upstream_tcp_queries, 501);
	close(up);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_client_goes_upstream_over_tcp),
		cmocka_unit_test(test_pipelined_on_one_connection),
		cmocka_unit_test(test_wrong_id_or_question_ignored),
		cmocka_unit_test(test_upstream_closes_mid_flight_retried),
		cmocka_unit_test(test_third_loss_moves_to_next_upstream),
		cmocka_unit_test(test_query_that_drops_connections_harms_only_itself),
		cmocka_unit_test(test_big_answer_reaches_client_whole),
		cmocka_unit_test(test_idle_connection_closed),
		cmocka_unit_test(test_udp_client_still_goes_over_udp),
		cmocka_unit_test(test_tcp_round_trip_allocates_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
