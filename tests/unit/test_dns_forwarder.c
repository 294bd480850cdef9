/*
 * Unit tests for dns/forwarder over UDP: forwarding, reply matching
 * (RFC 5452), 0x20, bad queries, the guard, local names, sizes and
 * allocations.  Upstream attempts, failover and health are in
 * test_dns_forwarder_upstreams.c; the fixture is dns_fwd_fixture.h.
 */
#include "dns_fwd_fixture.h"

#include "alloc_count.h"

static void test_forward_restores_client_id(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 0xbeef, "www.example.test", DNS_TYPE_A, 0, &s);
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, s.q, s.len), DNS_OK);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	assert_true(m.hdr.flags & DNS_FLAG_RD);
	/* The query left from a pool socket (upstream_got checked the port). */
	uint8_t r[600], got[600];
	size_t rlen = make_reply(r, s.q, s.len, 2, 0, 0);
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, (ssize_t)rlen);
	assert_int_equal(dns_get_id(got), 0xbeef);
	assert_memory_equal(got + 2, r + 2, rlen - 2);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.upstream_answers, 1);
	assert_int_equal(st.answers, 1);
	assert_int_equal(st.rcode[0], 1);
	assert_int_equal(st.outstanding, 0);
	/* A second copy of the same answer no longer matches anything. */
	assert_true(offer(e, 0, &s, r, rlen));
	assert_int_equal(stats(e).mismatch_id, 1);
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	env_free(e);
}

static void test_ids_random_and_unique_per_socket(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .max_outstanding = 256 });
	struct sent s[200];
	for (int i = 0; i < 200; i++)
		forward_one(e, 7, "a.test", DNS_TYPE_A, 0, &s[i]);
	int same_as_client = 0;
	for (int i = 0; i < 200; i++) {
		uint16_t id = dns_get_id(s[i].q);
		same_as_client += id == 7;
		for (int j = 0; j < i; j++)
			assert_false(s[j].sock.port == s[i].sock.port &&
				     dns_get_id(s[j].q) == id);
	}
	/* 200 IDs from 65536 values: all equal to the client's would be
	 * a forwarder that does not randomise. */
	assert_true(same_as_client < 200);
	assert_int_equal(stats(e).outstanding, 200);
	env_free(e);
}

static void test_reply_from_wrong_address_or_port(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
	uint8_t r[600], got[600];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	/* Counted, but not claimed: another service sharing the pool socket
	 * may be waiting for that peer (a KDC reply can look like our ID). */
	struct sockaddr_in bad = e->up_addr[0];
	bad.sin_addr.s_addr = htonl(0x7f000002);
	assert_false(offer_from(e, &s, &bad, r, rlen));
	bad = e->up_addr[0];
	bad.sin_port = htons((uint16_t)(ntohs(bad.sin_port) + 1));
	assert_false(offer_from(e, &s, &bad, r, rlen));
	assert_int_equal(stats(e).mismatch_address, 2);
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	/* A stranger's datagram with an ID nobody waits for is not counted. */
	r[0] ^= 0xff;
	assert_false(offer_from(e, &s, &bad, r, rlen));
	assert_int_equal(stats(e).mismatch_address, 2);
	r[0] ^= 0xff;
	/* The query is still waiting and takes the real answer. */
	assert_true(offer(e, 0, &s, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	env_free(e);
}

static void test_reply_from_other_upstream_rejected(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 2 });
	struct sent s;
	forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
	uint8_t r[600];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	/* Upstream 1 is configured, but this query went to upstream 0. */
	assert_true(offer(e, 1, &s, r, rlen));
	assert_int_equal(stats(e).mismatch_address, 1);
	assert_int_equal(stats(e).outstanding, 1);
	env_free(e);
}

static void test_reply_on_wrong_pool_socket(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
	uint8_t r[600];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	struct sent other = s;
	other.sock = e->socks[0].port == s.sock.port ? e->socks[1] : e->socks[0];
	assert_true(offer(e, 0, &other, r, rlen));
	/* Right port, but another descriptor. */
	other.sock.port = s.sock.port;
	assert_true(offer(e, 0, &other, r, rlen));
	assert_int_equal(stats(e).mismatch_socket, 2);
	assert_int_equal(stats(e).answers, 0);
	env_free(e);
}

static void test_reply_with_wrong_id(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
	uint8_t r[600];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	dns_set_id(r, (uint16_t)(dns_get_id(s.q) + 1));
	assert_true(offer(e, 0, &s, r, rlen));
	assert_int_equal(stats(e).mismatch_id, 1);
	assert_int_equal(stats(e).answers, 0);
	env_free(e);
}

static void test_reply_with_wrong_question(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	forward_one(e, 1, "www.example.test", DNS_TYPE_A, 0, &s);
	uint16_t id = dns_get_id(s.q);
	uint8_t q[300], r[600], got[600];
	const struct {
		const char *name;
		uint16_t type, qclass;
	} wrong[] = {
		{ "www.example.tesu", DNS_TYPE_A, DNS_CLASS_IN },
		{ "www.example.test", DNS_TYPE_AAAA, DNS_CLASS_IN },
		{ "www.example.test", DNS_TYPE_A, 3 },
	};
	for (size_t i = 0; i < 3; i++) {
		size_t qlen = make_query(q, id, wrong[i].name, wrong[i].type,
					 wrong[i].qclass, 0);
		size_t rlen = make_reply(r, q, qlen, 1, 0, 0);
		assert_true(offer(e, 0, &s, r, rlen));
	}
	assert_int_equal(stats(e).mismatch_question, 3);
	/* Without 0x20 the name compares case-insensitively. */
	size_t qlen = make_query(q, id, "WWW.Example.TEST", DNS_TYPE_A, DNS_CLASS_IN, 0);
	size_t rlen = make_reply(r, q, qlen, 1, 0, 0);
	assert_true(offer(e, 0, &s, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	env_free(e);
}

static void test_0x20_verified_exactly(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .use_0x20 = true });
	struct sent s;
	const char *name = "abcdefghijklmnop.example.test";
	forward_one(e, 0x4242, name, DNS_TYPE_A, 0, &s);
	uint8_t r[600], got[600], own[300];
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	/* Flip the case of the first letter: the same name, another case. */
	r[DNS_HEADER_LEN + 1] ^= 0x20;
	assert_true(offer(e, 0, &s, r, rlen));
	assert_int_equal(stats(e).mismatch_question, 1);
	r[DNS_HEADER_LEN + 1] ^= 0x20;
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, (ssize_t)rlen);
	/* The client sees its own (lower) case, not the random one. */
	size_t nlen = put_name(own, name);
	assert_memory_equal(got + DNS_HEADER_LEN, own, nlen);
	assert_int_equal(dns_get_id(got), 0x4242);
	env_free(e);
}

/* Without 0x20 too, the client gets its question back in its own case,
 * whatever case the upstream answered in: a client that checks case itself
 * (one doing 0x20 of its own) would drop the answer otherwise. */
static void test_client_case_restored_without_0x20(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	const char *name = "MiXeD.Example.TEST";
	forward_one(e, 0x5151, name, DNS_TYPE_A, 0, &s);
	uint8_t r[600], got[600], own[300];
	size_t nlen = put_name(own, name);
	/* Without 0x20 the query leaves in the client's case. */
	assert_memory_equal(s.q + DNS_HEADER_LEN, own, nlen);
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
	for (size_t i = DNS_HEADER_LEN; i < DNS_HEADER_LEN + nlen; i++)
		if (r[i] >= 'A' && r[i] <= 'Z')
			r[i] ^= 0x20; /* the upstream answers in lower case */
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, (ssize_t)rlen);
	assert_memory_equal(got + DNS_HEADER_LEN, own, nlen);
	assert_memory_equal(got + DNS_HEADER_LEN + nlen, r + DNS_HEADER_LEN + nlen,
			    rlen - DNS_HEADER_LEN - nlen);
	env_free(e);
}

/* Extended RCODEs (an OPT's upper bits) are counted as themselves, not as
 * the RCODE their low four bits spell. */
static void test_extended_rcodes_counted(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	uint8_t r[600], got[600];
	forward_one(e, 0x6161, "cookie.test", DNS_TYPE_A, 1232, &s);
	/* BADCOOKIE is 23: low bits 7 (YXRRSET) in the header, 1 in the
	 * OPT's extended RCODE octet (the first of its TTL). */
	size_t rlen = make_reply(r, s.q, s.len, 0, 1232, DNS_RCODE_BADCOOKIE & 0xf);
	r[rlen - 6] = DNS_RCODE_BADCOOKIE >> 4;
	assert_true(offer(e, 0, &s, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.rcode_badcookie, 1);
	assert_int_equal(st.rcode[DNS_RCODE_BADCOOKIE & 0xf], 0);

	/* The same low bits without an OPT are YXRRSET itself. */
	forward_one(e, 0x6162, "yx.test", DNS_TYPE_A, 0, &s);
	rlen = make_reply(r, s.q, s.len, 0, 0, DNS_RCODE_BADCOOKIE & 0xf);
	assert_true(offer(e, 0, &s, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
	st = stats(e);
	assert_int_equal(st.rcode[DNS_RCODE_BADCOOKIE & 0xf], 1);
	assert_int_equal(st.rcode_badcookie, 1);
	assert_int_equal(st.rcode_other, 0);
	assert_int_equal(st.answers, 2);
	env_free(e);
}

static void test_malformed_query_formerr_or_drop(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	uint8_t q[300], got[600];
	size_t qlen = make_query(q, 0x7777, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	/* Cut inside the question: the header is readable. */
	client_send(e, q, qlen - 3);
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_true(n >= DNS_HEADER_LEN);
	assert_int_equal(dns_get_id(got), 0x7777);
	assert_int_equal(got[3] & 0xf, DNS_RCODE_FORMERR);
	assert_true(got[2] & 0x80);
	/* Five octets: no header, nothing to answer. */
	client_send(e, q, 5);
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	/* A header alone, QDCOUNT 0: FORMERR for a QUERY, but NOTIMP for an
	 * opcode berthd does not implement (DSO, RFC 8490, has no question). */
	const unsigned opcodes[] = { 0, 2, 6 };
	for (size_t i = 0; i < 3; i++) {
		uint8_t h[DNS_HEADER_LEN] = { 0x12, (uint8_t)i,
					      (uint8_t)(opcodes[i] << 3) };
		client_send(e, h, sizeof(h));
		n = take(e->client, got, sizeof(got), NULL);
		assert_int_equal(n, DNS_HEADER_LEN);
		assert_int_equal(dns_get_id(got), 0x1200 | i);
		assert_int_equal((got[2] >> 3) & 0xf, opcodes[i]);
		assert_int_equal(got[3] & 0xf, opcodes[i] ? DNS_RCODE_NOTIMP
							  : DNS_RCODE_FORMERR);
	}
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.rcode[DNS_RCODE_NOTIMP], 2);
	assert_int_equal(st.formerr, 2);
	assert_int_equal(st.garbage, 1);
	assert_int_equal(st.forwarded, 0);
	assert_false(upstream_got(e, 0, &(struct sent){ .len = 0 }));
	env_free(e);
}

/* Queries berthd answers itself, over UDP, before hosts and upstreams: an
 * EDNS version it does not speak, and zone transfers it cannot relay. */
static void test_badvers_and_transfers_answered_at_once(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .hosts = true });
	uint8_t q[300], got[600];
	struct dns_msg m;
	size_t qlen = make_query(q, 0x1111, "www.example.test", DNS_TYPE_A,
				 DNS_CLASS_IN, 1232);
	q[qlen - 5] = 1; /* the OPT's VERSION */
	client_send(e, q, qlen);
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_true(n > 0);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_int_equal(m.hdr.id, 0x1111);
	assert_true(m.has_opt);
	assert_int_equal(m.edns_version, 0);
	assert_int_equal(dns_msg_rcode(&m), DNS_RCODE_BADVERS);
	assert_int_equal(m.hdr.ancount, 0);
	/* www.example.test is in the hosts file: the version was checked
	 * first.  Version 0 for another name is forwarded. */
	assert_int_equal(stats(e).local_answers, 0);
	qlen = make_query(q, 0x1112, "other.test", DNS_TYPE_A, DNS_CLASS_IN, 1232);
	client_send(e, q, qlen);
	struct sent s;
	assert_true(upstream_got(e, 0, &s));

	const uint16_t xfr[] = { DNS_TYPE_AXFR, DNS_TYPE_IXFR };
	for (size_t i = 0; i < 2; i++) {
		qlen = make_query(q, 0x2222, "example.test", xfr[i], DNS_CLASS_IN, 0);
		client_send(e, q, qlen);
		n = take(e->client, got, sizeof(got), NULL);
		assert_true(n > 0);
		assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
		assert_int_equal(dns_msg_rcode(&m), DNS_RCODE_NOTIMP);
		assert_int_equal(m.qtype, xfr[i]);
	}
	assert_false(upstream_got(e, 0, &s));
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.badvers, 1);
	assert_int_equal(st.rcode_badvers, 1);
	assert_int_equal(st.rcode[DNS_RCODE_NOERROR], 0);
	assert_int_equal(st.zone_transfers, 2);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.local_answers, 0);
	env_free(e);
}

static void test_response_on_listen_dropped(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	uint8_t q[300], r[600], got[600];
	size_t qlen = make_query(q, 3, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	size_t rlen = make_reply(r, q, qlen, 1, 0, 0);
	client_send(e, r, rlen);
	/* Even a broken one: QR=1 is never answered. */
	client_send(e, r, DNS_HEADER_LEN + 2);
	assert_true(take(e->client, got, sizeof(got), NULL) < 0);
	assert_int_equal(stats(e).responses_on_listen, 2);
	assert_int_equal(stats(e).forwarded, 0);
	env_free(e);
}

static void test_guarded_source_ports_dropped(void **state)
{
	(void)state;
	struct portset blocked;
	char err[128];
	portset_clear(&blocked);
	assert_int_equal(portset_parse(&blocked, "0, 7, 13, 19, 37, 464", err, sizeof(err)), 0);
	struct env *e = env_new(&(struct opts){ .nup = 1, .blocked = &blocked });
	uint8_t q[300];
	size_t qlen = make_query(q, 3, "www.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	struct sockaddr_in from = {
		.sin_family = AF_INET,
		.sin_port = htons(464),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	dns_fwd_udp_query(e->f, 0, (struct sockaddr *)&from, sizeof(from), q, qlen);
	from.sin_port = htons(7);
	dns_fwd_udp_query(e->f, 0, (struct sockaddr *)&from, sizeof(from), q, qlen);
	struct sent s;
	assert_false(upstream_got(e, 0, &s));
	assert_int_equal(stats(e).guard_drops, 2);
	assert_int_equal(stats(e).queries_udp, 0);
	/* 464 in network order is 53249 on a little-endian host: not blocked. */
	from.sin_port = htons(53249);
	dns_fwd_udp_query(e->f, 0, (struct sockaddr *)&from, sizeof(from), q, qlen);
	assert_true(upstream_got(e, 0, &s));
	env_free(e);
}

/*
 * Answers to UDP clients are queued and leave together at the end of the
 * loop iteration (one sendmmsg); a full queue leaves at once, so nothing
 * waits on a busy iteration and nothing is dropped.
 */
static void test_answers_batched_until_flush(void **state)
{
	(void)state;
	enum { N = 40 };
	struct env *e = env_new(&ONE);
	static struct sent s[N];
	for (int i = 0; i < N; i++)
		forward_one(e, (uint16_t)(0x1000 + i), "www.example.test",
			    DNS_TYPE_A, 0, &s[i]);
	uint8_t r[600], got[600];
	for (int i = 0; i < N; i++) {
		size_t rlen = make_reply(r, s[i].q, s[i].len, 1, 0, 0);
		assert_true(dns_fwd_on_upstream_reply(e->f, s[i].sock.fd, s[i].sock.port,
						      (const struct sockaddr *)&e->up_addr[0],
						      sizeof(e->up_addr[0]), r, rlen));
	}
	/* One full queue left when the next answer came; the rest wait. */
	int before = 0;
	while (take(e->client, got, sizeof(got), NULL) > 0)
		before++;
	assert_int_equal(before, FWD_TX_BATCH);
	assert_int_equal(stats(e).answers, FWD_TX_BATCH);
	loop_flush(e->loop);
	bool seen[N] = { false };
	int after = 0;
	ssize_t n;
	while ((n = take(e->client, got, sizeof(got), NULL)) > 0) {
		unsigned id = dns_get_id(got);
		assert_true(id >= 0x1000 + FWD_TX_BATCH && id < 0x1000 + N);
		seen[id - 0x1000] = true;
		after++;
	}
	assert_int_equal(after, N - FWD_TX_BATCH);
	for (int i = FWD_TX_BATCH; i < N; i++)
		assert_true(seen[i]);
	assert_int_equal(stats(e).answers, N);
	assert_int_equal(stats(e).send_errors, 0);
	env_free(e);
}

/* A full table answers SERVFAIL at once: never silence. */
static void test_table_full_servfail_and_counts(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .max_outstanding = 2 });
	struct sent s;
	uint8_t q[300], got[600];
	forward_one(e, 1, "a.test", DNS_TYPE_A, 0, &s);
	forward_one(e, 2, "b.test", DNS_TYPE_A, 0, &s);
	size_t qlen = make_query(q, 3, "c.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	assert_false(upstream_got(e, 0, &s));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_true(n > 0);
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_int_equal(m.hdr.id, 3);
	assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_SERVFAIL);
	assert_int_equal(stats(e).table_full, 1);
	assert_int_equal(stats(e).servfails, 1);
	assert_int_equal(stats(e).outstanding, 2);
	env_free(e);
}

static void test_hosts_answered_locally(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .hosts = true });
	uint8_t q[300], got[600];
	size_t qlen = make_query(q, 0x0a0a, "WWW.example.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	struct dns_msg m;
	assert_true(n > 0);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_int_equal(m.hdr.id, 0x0a0a);
	assert_int_equal(m.hdr.ancount, 2);
	struct sent s;
	assert_false(upstream_got(e, 0, &s));
	assert_int_equal(stats(e).local_answers, 1);
	/* A name the file does not know goes upstream. */
	qlen = make_query(q, 1, "elsewhere.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	client_send(e, q, qlen);
	assert_true(upstream_got(e, 0, &s));
	env_free(e);
}

static void test_large_answer_truncated_for_client(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	uint8_t r[2048], got[2048];
	forward_one(e, 5, "big.test", DNS_TYPE_A, 0, &s);
	/* 40 A records: 12 + 14 + 40 * 16 = 666 octets > 512. */
	size_t rlen = make_reply(r, s.q, s.len, 40, 0, 0);
	assert_true(rlen > 512);
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	struct dns_msg m;
	assert_int_equal(n, DNS_HEADER_LEN + 10 + 4);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_true(m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(m.hdr.ancount, 0);
	assert_int_equal(m.hdr.id, 5);
	assert_int_equal(stats(e).truncated, 1);

	/* An EDNS client's cut answer keeps an OPT (RFC 6891 7), bare of
	 * options, with the upstream's DO bit and berthd's own size. */
	forward_one(e, 6, "big.test", DNS_TYPE_A, 512, &s);
	rlen = make_reply(r, s.q, s.len, 40, 4096, 0);
	r[rlen - 4] = DNS_EDNS_FLAG_DO >> 8;
	assert_true(offer(e, 0, &s, r, rlen));
	n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, DNS_HEADER_LEN + 10 + 4 + 11);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_true(m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(m.hdr.ancount, 0);
	assert_int_equal(m.hdr.arcount, 1);
	assert_true(m.has_opt);
	assert_int_equal(m.udp_size, 1232);
	assert_true(m.edns_flags & DNS_EDNS_FLAG_DO);
	assert_int_equal(stats(e).truncated, 2);

	/* The upstream's OPT owned through a pointer to the root octet of
	 * the question name (at 12 + 10 - 1): the cut answer's OPT is whole,
	 * with a root octet of its own. */
	forward_one(e, 7, "big.test", DNS_TYPE_A, 512, &s);
	rlen = make_reply(r, s.q, s.len, 40, 4096, 0);
	memmove(r + rlen - 10, r + rlen - 11, 11);
	put16(r + rlen - 11, 0xC000 | (DNS_HEADER_LEN + 10 - 1));
	rlen++;
	assert_int_equal(dns_parse(&m, r, rlen), DNS_OK);
	assert_true(m.has_opt);
	assert_true(offer(e, 0, &s, r, rlen));
	n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, DNS_HEADER_LEN + 10 + 4 + 11);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_true(m.hdr.flags & DNS_FLAG_TC);
	assert_true(m.has_opt);
	assert_int_equal(got[DNS_HEADER_LEN + 10 + 4], 0);
	assert_int_equal(m.udp_size, 1232);
	assert_int_equal(stats(e).truncated, 3);
	env_free(e);
}

static void test_tc_answer_relayed_as_is(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	uint8_t r[600], got[600];
	forward_one(e, 5, "tc.test", DNS_TYPE_A, 0, &s);
	size_t rlen = make_reply(r, s.q, s.len, 1, 0, DNS_FLAG_TC);
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, (ssize_t)rlen);
	assert_true(got[2] & (DNS_FLAG_TC >> 8));
	assert_memory_equal(got + 2, r + 2, rlen - 2);
	assert_int_equal(stats(e).truncated, 0);
	env_free(e);
}

static void test_edns_sizes_kept_honest(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	struct sent s;
	uint8_t r[2048], got[2048];
	forward_one(e, 6, "edns.test", DNS_TYPE_A, 4096, &s);
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, s.q, s.len), DNS_OK);
	assert_true(m.has_opt);
	assert_int_equal(m.udp_size, DNS_FWD_EDNS_SIZE);
	/* 40 records fit the client's 4096: no truncation, and the relayed
	 * OPT promises only what the forwarder itself takes. */
	size_t rlen = make_reply(r, s.q, s.len, 40, 4096, 0);
	assert_true(offer(e, 0, &s, r, rlen));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_int_equal(n, (ssize_t)rlen);
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_int_equal(m.hdr.ancount, 40);
	assert_int_equal(m.udp_size, DNS_FWD_EDNS_SIZE);
	env_free(e);
}

/*
 * The UDP hot path allocates nothing: setting up allocates (which shows the
 * counting works), then a thousand queries with distinct names, each
 * forwarded, answered and relayed, allocate not once.  The first round
 * trip runs before counting starts, so lazily grown tables are warm.
 */
static void test_udp_round_trip_allocates_nothing(void **state)
{
	(void)state;
	unsigned long before = alloc_calls;
	struct env *e = env_new(&(struct opts){ .nup = 1, .use_0x20 = true });
	assert_true(alloc_calls > before);
	uint8_t r[600], got[600];
	char name[64];
	unsigned long counted = 0;
	for (int i = 0; i <= 1000; i++) {
		if (i == 1)
			counted = alloc_calls;
		struct sent s;
		snprintf(name, sizeof(name), "host%d.example.test", i);
		forward_one(e, (uint16_t)i, name, DNS_TYPE_A, 1232, &s);
		size_t rlen = make_reply(r, s.q, s.len, 1, 1232, 0);
		assert_true(offer(e, 0, &s, r, rlen));
		assert_int_equal(take(e->client, got, sizeof(got), NULL), (ssize_t)rlen);
		assert_int_equal(dns_get_id(got), (uint16_t)i);
	}
	assert_int_equal(alloc_calls - counted, 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.answers, 1001);
	assert_int_equal(st.outstanding, 0);
	env_free(e);
}

/*
 * A listener on the wildcard address answers from the address each query
 * was sent to (RFC 2181 4.1), for local and forwarded answers alike: a
 * client asking 127.0.0.9 would drop an answer from 127.0.0.1.
 */
static void test_wildcard_listener_answers_from_query_address(void **state)
{
	(void)state;
	struct env *e = env_new(&(struct opts){ .nup = 1, .hosts = true });
	char err[256];
	struct sockaddr_in any = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	int idx = dns_fwd_listen_udp(e->f, (struct sockaddr *)&any, sizeof(any),
				     err, sizeof(err));
	assert_int_equal(idx, 1);
	uint8_t q[300], got[600], r[600];
	struct sockaddr_in from;
	const char *const dst[] = { "127.0.0.9", "127.0.0.1", "127.0.0.53" };
	for (size_t i = 0; i < 3; i++) {
		struct sockaddr_in to = { .sin_family = AF_INET,
					  .sin_port = htons(dns_fwd_udp_port(e->f, idx)) };
		assert_int_equal(inet_pton(AF_INET, dst[i], &to.sin_addr), 1);
		/* From the hosts file. */
		size_t qlen = make_query(q, 0x3000, "www.example.test", DNS_TYPE_A,
					 DNS_CLASS_IN, 0);
		assert_int_equal(sendto(e->client, q, qlen, 0, (struct sockaddr *)&to,
					sizeof(to)), (ssize_t)qlen);
		assert_true(loop_run_once(e->loop) >= 0);
		assert_true(take(e->client, got, sizeof(got), &from) > 0);
		assert_int_equal(from.sin_addr.s_addr, to.sin_addr.s_addr);
		assert_int_equal(from.sin_port, to.sin_port);
		/* Forwarded, answered later. */
		qlen = make_query(q, 0x3001, "fwd.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
		assert_int_equal(sendto(e->client, q, qlen, 0, (struct sockaddr *)&to,
					sizeof(to)), (ssize_t)qlen);
		assert_true(loop_run_once(e->loop) >= 0);
		struct sent s;
		assert_true(upstream_got(e, 0, &s));
		size_t rlen = make_reply(r, s.q, s.len, 1, 0, 0);
		assert_true(offer(e, 0, &s, r, rlen));
		assert_int_equal(take(e->client, got, sizeof(got), &from), (ssize_t)rlen);
		assert_int_equal(dns_get_id(got), 0x3001);
		assert_int_equal(from.sin_addr.s_addr, to.sin_addr.s_addr);
	}
	env_free(e);
}

/* A datagram longer than the receive buffer is refused by its header, not
 * parsed from its cut start (which would read as malformed: FORMERR). */
static void test_oversize_datagram_refused(void **state)
{
	(void)state;
	struct env *e = env_new(&ONE);
	static uint8_t q[5000], got[600];
	memset(q, 0, sizeof(q));
	size_t qlen = make_query(q, 0x4444, "big.test", DNS_TYPE_A, DNS_CLASS_IN, 0);
	assert_true(qlen < sizeof(q));
	client_send(e, q, sizeof(q));
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_true(n >= DNS_HEADER_LEN);
	assert_int_equal(dns_get_id(got), 0x4444);
	assert_int_equal(got[3] & 0xf, DNS_RCODE_REFUSED);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.formerr, 0);
	assert_int_equal(st.forwarded, 0);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_restores_client_id),
		cmocka_unit_test(test_ids_random_and_unique_per_socket),
		cmocka_unit_test(test_reply_from_wrong_address_or_port),
		cmocka_unit_test(test_reply_from_other_upstream_rejected),
		cmocka_unit_test(test_reply_on_wrong_pool_socket),
		cmocka_unit_test(test_reply_with_wrong_id),
		cmocka_unit_test(test_reply_with_wrong_question),
		cmocka_unit_test(test_0x20_verified_exactly),
		cmocka_unit_test(test_client_case_restored_without_0x20),
		cmocka_unit_test(test_extended_rcodes_counted),
		cmocka_unit_test(test_malformed_query_formerr_or_drop),
		cmocka_unit_test(test_badvers_and_transfers_answered_at_once),
		cmocka_unit_test(test_response_on_listen_dropped),
		cmocka_unit_test(test_guarded_source_ports_dropped),
		cmocka_unit_test(test_table_full_servfail_and_counts),
		cmocka_unit_test(test_hosts_answered_locally),
		cmocka_unit_test(test_large_answer_truncated_for_client),
		cmocka_unit_test(test_answers_batched_until_flush),
		cmocka_unit_test(test_tc_answer_relayed_as_is),
		cmocka_unit_test(test_edns_sizes_kept_honest),
		cmocka_unit_test(test_udp_round_trip_allocates_nothing),
		cmocka_unit_test(test_oversize_datagram_refused),
		cmocka_unit_test(test_wildcard_listener_answers_from_query_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
