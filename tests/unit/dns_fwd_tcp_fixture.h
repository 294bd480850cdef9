/*
 * dns_fwd_tcp_fixture: the forwarder's upstream leg over TCP on real
 * loopback sockets and a fake clock, shared by its TCP tests.  The loop runs
 * on epoll, but its time is the test's, so every timeout is exact and
 * nothing sleeps.  Each fake upstream is a TCP listener and a UDP socket of
 * the test on the same port, so a test can see which protocol a query took.
 * The client is a plain TCP socket talking to the forwarder's TCP listener.
 * Each test program includes it once: the clock (fake_now) and the
 * environment env_new() returns are that program's own.
 */
#ifndef BERTH_TEST_DNS_FWD_TCP_FIXTURE_H
#define BERTH_TEST_DNS_FWD_TCP_FIXTURE_H

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
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/sockpool.h"
#include "dns/forwarder.h"
#include "dns/wire.h"

#include "dns_msg_fixture.h"
#include "fake_loop_fixture.h"

#define NUP 2
#define TIMEOUT 2000u
#define IDLE_MS 10000u   /* FWD_UTCP_IDLE_MS */
#define PUMPS 200        /* bound on loop iterations while waiting for I/O */
#define BIG 4096

struct env {
	struct loop *loop;
	struct pool *pool;
	struct dns_fwd *f;
	int lis[NUP];                 /* fake upstreams' TCP listeners */
	int udp[NUP];                 /* and their UDP sockets, same port */
	struct sockaddr_in up_addr[NUP];
	int client;                   /* TCP client of the forwarder */
	struct fake_loop fl;          /* owns loop, keeps it polling */
};

/* A TCP listener and a UDP socket on one loopback port. */
static inline void fake_upstream(int *lis, int *udp, struct sockaddr_in *addr)
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
static inline struct env *env_new_plan(size_t nup, uint16_t lo, uint16_t hi,
				       uint32_t pool_size)
{
	static struct env e;
	char err[256];
	memset(&e, 0, sizeof(e));
	e.loop = fake_loop_open(&e.fl);
	e.pool = fake_pool(lo, hi, pool_size);

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
	/* One client session pipelines more queries than the upstream
	 * connections' slots, so its own cap must be higher than those. */
	struct dns_fwd_tcp_limits lim = { .max_in_flight = 256 };
	int idx = dns_fwd_listen_tcp(e.f, (struct sockaddr *)&fa, sizeof(fa),
				     &lim, err, sizeof(err));
	if (idx < 0)
		fail_msg("dns_fwd_listen_tcp: %s", err);
	fa.sin_port = htons(dns_fwd_tcp_port(e.f, idx));
	e.client = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(e.client >= 0);
	assert_int_equal(connect(e.client, (struct sockaddr *)&fa, sizeof(fa)), 0);
	return &e;
}

static inline struct env *env_new(size_t nup)
{
	return env_new_plan(nup, 40000, 60999, 4);
}

static inline void env_free(struct env *e)
{
	dns_fwd_free(e->f);
	pool_free(e->pool);
	fake_loop_close(&e->fl);
	for (size_t i = 0; i < NUP; i++) {
		if (e->lis[i] >= 0)
			close(e->lis[i]);
		if (e->udp[i] >= 0)
			close(e->udp[i]);
	}
	close(e->client);
}

static inline void pump(struct env *e)
{
	assert_true(loop_run_once(e->loop) >= 0);
}

/* Advance the fake clock to t and run one iteration (timers due by then). */
static inline void run_at(struct env *e, uint64_t t)
{
	fake_now = t;
	pump(e);
}

static inline void send_frame(int fd, const uint8_t *msg, size_t len)
{
	uint8_t buf[BIG + 2];
	assert_true(len <= BIG);
	put16(buf, (uint16_t)len);
	memcpy(buf + 2, msg, len);
	assert_int_equal(send(fd, buf, len + 2, MSG_NOSIGNAL), (ssize_t)len + 2);
}

/* One whole frame from fd into buf, running the loop while it is not there
 * yet; returns its length, or -1 when none came within PUMPS iterations. */
static inline ssize_t recv_frame(struct env *e, int fd, uint8_t *buf, size_t size)
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
static inline int up_accept(struct env *e, int i, int pumps)
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

static inline bool udp_got_any(struct env *e, int i)
{
	uint8_t buf[600];
	return recv(e->udp[i], buf, sizeof(buf), MSG_DONTWAIT) >= 0;
}

static inline struct dns_fwd_stats stats(struct env *e)
{
	struct dns_fwd_stats st;
	dns_fwd_stats(e->f, &st);
	return st;
}

static inline void client_ask(struct env *e, uint16_t id, const char *name)
{
	uint8_t q[300];
	size_t qlen = make_query(q, id, name, DNS_TYPE_A, DNS_CLASS_IN, 0);
	send_frame(e->client, q, qlen);
}

/* The client's next answer parsed into *m (buf holds it); fails when none. */
static inline size_t client_answer(struct env *e, uint8_t *buf, size_t size,
				   struct dns_msg *m)
{
	ssize_t n = recv_frame(e, e->client, buf, size);
	assert_true(n > 0);
	assert_int_equal(dns_parse(m, buf, (size_t)n), DNS_OK);
	return (size_t)n;
}

/* Upstream connection up answers the next query on it with nans A records;
 * returns the answer's length. */
static inline size_t upstream_answers_next(struct env *e, int up, unsigned nans)
{
	uint8_t q[600], r[600];
	ssize_t qlen = recv_frame(e, up, q, sizeof(q));
	assert_true(qlen > 0);
	size_t rlen = make_reply(r, q, (size_t)qlen, nans, 0, 0);
	send_frame(up, r, rlen);
	return rlen;
}

/*
 * Upstream i takes the query's connection, reads the query and closes the
 * connection under it (a lost connection); returns the connection the
 * forwarder opens for its retry, its query not yet read.
 */
static inline int up_lose_once(struct env *e, int i)
{
	uint8_t q[600];
	int up = up_accept(e, i, PUMPS);
	assert_true(up >= 0);
	assert_true(recv_frame(e, up, q, sizeof(q)) > 0);
	close(up);
	up = up_accept(e, i, PUMPS);
	assert_true(up >= 0);
	return up;
}

#endif
