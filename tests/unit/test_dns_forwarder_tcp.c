/*
 * Unit tests for the forwarder's upstream leg over TCP, on real loopback
 * sockets and a fake clock: the loop runs on epoll, but its time is the
 * test's, so every timeout is exact and nothing sleeps.  Each fake upstream
 * is a TCP listener and a UDP socket of the test on the same port, so a test
 * can see which protocol a query took.  The client is a plain TCP socket
 * talking to the forwarder's TCP listener.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/sockpool.h"
#include "dns/forwarder.h"
#include "dns/wire.h"

#include "alloc_count.h"

#define NUP 2
#define TIMEOUT 2000u
#define IDLE_MS 10000u   /* FWD_UTCP_IDLE_MS */
#define PUMPS 200        /* bound on loop iterations while waiting for I/O */
#define BIG 4096

static uint64_t fake_now = 1000000;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

struct env {
	struct loop *loop;
	struct pool *pool;
	struct dns_fwd *f;
	int lis[NUP];                 /* fake upstreams' TCP listeners */
	int udp[NUP];                 /* and their UDP sockets, same port */
	struct sockaddr_in up_addr[NUP];
	int client;                   /* TCP client of the forwarder */
	/* Always readable, so that no poll ever waits in real time. */
	int kick;
	struct loop_watch kick_w;
};

static void on_kick(struct loop *l, struct loop_watch *w, unsigned events)
{
	(void)l, (void)w, (void)events;
}

/* A TCP listener and a UDP socket on one loopback port. */
static void fake_upstream(int *lis, int *udp, struct sockaddr_in *addr)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = {
			.sin_family = AF_INET,
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		};
		int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		assert_true(t >= 0);
		assert_int_equal(bind(t, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(listen(t, 16), 0);
		socklen_t len = sizeof(a);
		assert_int_equal(getsockname(t, (struct sockaddr *)&a, &len), 0);
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		assert_true(u >= 0);
		if (bind(u, (struct sockaddr *)&a, sizeof(a)) == 0) {
			*lis = t, *udp = u, *addr = a;
			return;
		}
		close(t);
		close(u);
	}
	fail_msg("no port free for both TCP and UDP");
}

/* An environment whose pool draws from lo..hi and holds pool_size
 * sockets. */
static struct env *env_new_plan(size_t nup, uint16_t lo, uint16_t hi,
				 uint32_t pool_size)
{
	static struct env e;
	char err[256];
	memset(&e, 0, sizeof(e));
	struct loop_config lc = { .clock = { .now_ms = fake_clock } };
	e.loop = loop_new(&lc);
	assert_non_null(e.loop);
	e.kick = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(e.kick >= 0);
	loop_watch_init(&e.kick_w, e.kick, on_kick);
	assert_int_equal(loop_watch_set(e.loop, &e.kick_w, LOOP_READ), 0);
	struct portset allowed;
	portset_clear(&allowed);
	portset_add_range(&allowed, lo, hi);
	struct pool_config pc = { .size = pool_size };
	e.pool = pool_create(&pc, &allowed, NULL, NULL, NULL, fake_now, err,
			     sizeof(err));
	if (!e.pool)
		fail_msg("pool_create: %s", err);

	struct dns_fwd_addr ups[NUP];
	for (size_t i = 0; i < NUP; i++)
		e.lis[i] = e.udp[i] = -1;
	for (size_t i = 0; i < nup; i++) {
		fake_upstream(&e.lis[i], &e.udp[i], &e.up_addr[i]);
		memset(&ups[i], 0, sizeof(ups[i]));
		memcpy(&ups[i].sa, &e.up_addr[i], sizeof(e.up_addr[i]));
		ups[i].len = sizeof(e.up_addr[i]);
	}
	struct dns_fwd_config fc = {
		.upstreams = ups,
		.nupstream = nup,
		.upstream_timeout_ms = TIMEOUT,
	};
	e.f = dns_fwd_new(e.loop, e.pool, &fc, err, sizeof(err));
	if (!e.f)
		fail_msg("dns_fwd_new: %s", err);
	struct sockaddr_in fa = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int idx = dns_fwd_listen_tcp(e.f, (struct sockaddr *)&fa, sizeof(fa),
				     NULL, err, sizeof(err));
	if (idx < 0)
		fail_msg("dns_fwd_listen_tcp: %s", err);
	fa.sin_port = htons(dns_fwd_tcp_port(e.f, idx));
	e.client = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(e.client >= 0);
	assert_int_equal(connect(e.client, (struct sockaddr *)&fa, sizeof(fa)), 0);
	return &e;
}

static struct env *env_new(size_t nup)
{
	return env_new_plan(nup, 40000, 60999, 4);
}

static void env_free(struct env *e)
{
	dns_fwd_free(e->f);
	pool_free(e->pool);
	loop_watch_stop(e->loop, &e->kick_w);
	close(e->kick);
	loop_free(e->loop);
	for (size_t i = 0; i < NUP; i++) {
		if (e->lis[i] >= 0)
			close(e->lis[i]);
		if (e->udp[i] >= 0)
			close(e->udp[i]);
	}
	close(e->client);
}

static void pump(struct env *e)
{
	assert_true(loop_run_once(e->loop) >= 0);
}

/* Advance the fake clock to t and run one iteration (timers due by then). */
static void run_at(struct env *e, uint64_t t)
{
	fake_now = t;
	pump(e);
}

static size_t put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
	return 2;
}

static size_t make_query(uint8_t *buf, uint16_t id, const char *name,
			 uint16_t type)
{
	memset(buf, 0, DNS_HEADER_LEN);
	put16(buf, id);
	put16(buf + 2, DNS_FLAG_RD);
	put16(buf + 4, 1);
	ssize_t n = dns_name_from_text(name, buf + DNS_HEADER_LEN, DNS_NAME_MAX);
	assert_true(n > 0);
	size_t pos = DNS_HEADER_LEN + (size_t)n;
	pos += put16(buf + pos, type);
	pos += put16(buf + pos, DNS_CLASS_IN);
	return pos;
}

/* An answer to q (as the upstream got it) with nans A records. */
static size_t make_reply(uint8_t *buf, const uint8_t *q, size_t qlen,
			 unsigned nans)
{
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, q, qlen), DNS_OK);
	memcpy(buf, q, m.question_end);
	put16(buf + 2, (uint16_t)(m.hdr.flags | DNS_FLAG_QR | DNS_FLAG_RA));
	put16(buf + 6, (uint16_t)nans);
	put16(buf + 8, 0);
	put16(buf + 10, 0);
	size_t pos = m.question_end;
	for (unsigned i = 0; i < nans; i++) {
		pos += put16(buf + pos, 0xc00c);
		pos += put16(buf + pos, DNS_TYPE_A);
		pos += put16(buf + pos, DNS_CLASS_IN);
		memcpy(buf + pos, "\0\0\0\x3c", 4), pos += 4;
		pos += put16(buf + pos, 4);
		memcpy(buf + pos, "\xc0\x00\x02", 3), pos += 3;
		buf[pos++] = (uint8_t)i;
	}
	return pos;
}

static void send_frame(int fd, const uint8_t *msg, size_t len)
{
	uint8_t buf[BIG + 2];
	assert_true(len <= BIG);
	put16(buf, (uint16_t)len);
	memcpy(buf + 2, msg, len);
	assert_int_equal(send(fd, buf, len + 2, MSG_NOSIGNAL), (ssize_t)len + 2);
}

/* One whole frame from fd into buf, running the loop while it is not there
 * yet; returns its length, or -1 when none came within PUMPS iterations. */
static ssize_t recv_frame(struct env *e, int fd, uint8_t *buf, size_t size)
{
	for (int i = 0; i < PUMPS; i++) {
		uint8_t hdr[2];
		if (recv(fd, hdr, 2, MSG_PEEK | MSG_DONTWAIT) == 2) {
			size_t len = (size_t)hdr[0] << 8 | hdr[1];
			uint8_t tmp[BIG + 2];
			assert_true(len <= size && len <= BIG);
			if (recv(fd, tmp, len + 2, MSG_PEEK | MSG_DONTWAIT) ==
			    (ssize_t)len + 2) {
				assert_int_equal(recv(fd, tmp, len + 2, 0),
						 (ssize_t)len + 2);
				memcpy(buf, tmp + 2, len);
				return (ssize_t)len;
			}
		}
		pump(e);
	}
	return -1;
}

/* A connection the forwarder opened to upstream i, or -1 when none came. */
static int up_accept(struct env *e, int i, int pumps)
{
	for (int k = 0; k < pumps; k++) {
		int fd = accept4(e->lis[i], NULL, NULL, SOCK_NONBLOCK);
		if (fd >= 0) {
			/* Like a real server: answers leave at once, not held
			 * by Nagle for an ACK the fake clock never waits for. */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		pump(e);
	}
	return -1;
}

static bool udp_got_any(struct env *e, int i)
{
	uint8_t buf[600];
	return recv(e->udp[i], buf, sizeof(buf), MSG_DONTWAIT) >= 0;
}

static struct dns_fwd_stats stats(struct env *e)
{
	struct dns_fwd_stats st;
	dns_fwd_stats(e->f, &st);
	return st;
}

static void client_ask(struct env *e, uint16_t id, const char *name)
{
	uint8_t q[300];
	size_t qlen = make_query(q, id, name, DNS_TYPE_A);
	send_frame(e->client, q, qlen);
}

/* The client's next answer parsed into *m (buf holds it); fails when none. */
static size_t client_answer(struct env *e, uint8_t *buf, size_t size,
			    struct dns_msg *m)
{
	ssize_t n = recv_frame(e, e->client, buf, size);
	assert_true(n > 0);
	assert_int_equal(dns_parse(m, buf, (size_t)n), DNS_OK);
	return (size_t)n;
}

/* Upstream connection up answers the next query on it with nans A records;
 * returns the answer's length. */
static size_t upstream_answers_next(struct env *e, int up, unsigned nans)
{
	uint8_t q[600], r[600];
	ssize_t qlen = recv_frame(e, up, q, sizeof(q));
	assert_true(qlen > 0);
	size_t rlen = make_reply(r, q, (size_t)qlen, nans);
	send_frame(up, r, rlen);
	return rlen;
}

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
	size_t rlen = make_reply(r, q, (size_t)qlen, 2);
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
		size_t rlen = make_reply(r, q[i], (size_t)qlen[i], 1);
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
	size_t rlen = make_reply(r, q, (size_t)qlen, 1);
	dns_set_id(r, (uint16_t)(id + 1));
	send_frame(up, r, rlen);
	size_t wlen = make_query(wq, id, "www.example.tesu", DNS_TYPE_A);
	rlen = make_reply(r, wq, wlen, 1);
	send_frame(up, r, rlen);
	wlen = make_query(wq, id, "www.example.test", DNS_TYPE_AAAA);
	rlen = make_reply(r, wq, wlen, 1);
	send_frame(up, r, rlen);
	assert_true(recv_frame(e, e->client, got, sizeof(got)) < 0);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.mismatch_id, 1);
	assert_int_equal(st.mismatch_question, 2);
	assert_int_equal(st.answers, 0);
	assert_int_equal(st.outstanding, 1);
	rlen = make_reply(r, q, (size_t)qlen, 1);
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
	int up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
	uint8_t q[600], got[600];
	assert_true(recv_frame(e, up, q, sizeof(q)) > 0);
	close(up);
	/* The same upstream again, on a new connection. */
	up = up_accept(e, 0, PUMPS);
	assert_true(up >= 0);
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

static void test_second_loss_moves_to_next_upstream(void **state)
{
	(void)state;
	struct env *e = env_new(2);
	client_ask(e, 0x2222, "www.example.test");
	uint8_t q[600], got[600];
	for (int i = 0; i < 2; i++) {
		int up = up_accept(e, 0, PUMPS);
		assert_true(up >= 0);
		assert_true(recv_frame(e, up, q, sizeof(q)) > 0);
		close(up);
	}
	int up = up_accept(e, 1, PUMPS);
	assert_true(up >= 0);
	upstream_answers_next(e, up, 1);
	struct dns_msg m;
	client_answer(e, got, sizeof(got), &m);
	assert_int_equal(m.hdr.id, 0x2222);
	assert_int_equal(stats(e).upstream_tcp_lost, 2);
	/* Losing two connections in a row counts as one failure of upstream 0;
	 * the answer from upstream 1 keeps it healthy. */
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 1), 0);
	close(up);
	env_free(e);
}

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
	size_t rlen = make_reply(r, q0, (size_t)qlen0, 1);
	send_frame(up0, r, rlen);
	assert_true(recv_frame(e, e->client, got, 20) < 0);
	assert_int_equal(stats(e).mismatch_id, 1);
	rlen = make_reply(r, q, (size_t)qlen, 1);
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
	assert_int_equal(st.upstream_tcp_lost, 3);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 0), 1);
	assert_int_equal(dns_fwd_upstream_failures(e->f, 1), 1);
	assert_int_equal(st.timeouts, 0);
	assert_false(udp_got_any(e, 0) || udp_got_any(e, 1));
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
	size_t rlen = make_reply(r, q, (size_t)qlen, 190);
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
		size_t rlen = make_reply(r, s.q[0][i], (size_t)s.qlen[0][i], 1);
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
		size_t rlen = make_reply(r, q, (size_t)n, 1);
		send_frame(s.up[0], r, rlen);
	}
	for (int i = 0; i < 64; i++) {
		size_t rlen = make_reply(r, s.q[1][i], (size_t)s.qlen[1][i], 1);
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
		size_t rlen = make_reply(r, q[i], (size_t)qlen[i], 1);
		send_frame(up, r, rlen);
	}
	for (int i = 0; i < N - 64; i++) {
		ssize_t n = recv_frame(e, up, q[0], sizeof(q[0]));
		assert_true(n > 0);
		size_t rlen = make_reply(r, q[0], (size_t)n, 1);
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
	size_t qlen = make_query(q, 3, "www.example.test", DNS_TYPE_A);
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
		cmocka_unit_test(test_second_loss_moves_to_next_upstream),
		cmocka_unit_test(test_timeout_at_exact_upstream_timeout),
		cmocka_unit_test(test_ignored_query_on_answering_upstream_no_failure),
		cmocka_unit_test(test_all_time_out_servfail),
		cmocka_unit_test(test_all_refused_servfail),
		cmocka_unit_test(test_big_answer_reaches_client_whole),
		cmocka_unit_test(test_idle_connection_closed),
		cmocka_unit_test(test_udp_client_still_goes_over_udp),
		cmocka_unit_test(test_full_connections_queue_not_servfail),
		cmocka_unit_test(test_waiting_queries_time_out),
		cmocka_unit_test(test_unopenable_second_connection_queues),
		cmocka_unit_test(test_tcp_round_trip_allocates_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
