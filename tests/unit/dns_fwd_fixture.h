/*
 * dns_fwd_fixture: dns/forwarder on real loopback sockets and a fake clock,
 * shared by the forwarder's UDP tests.  The loop runs on epoll, but its time
 * is the test's, so every timeout is exact and nothing sleeps.  A real socket
 * pool sends the queries; the fake upstreams are plain UDP sockets of the
 * test, and the test plays berthd by offering replies to
 * dns_fwd_on_upstream_reply (which also lets it forge replies from wrong
 * addresses, sockets and IDs).  Each test program includes it once: the
 * clock (fake_now) and the environment env_new() returns are that program's
 * own.
 */
#ifndef BERTH_TEST_DNS_FWD_FIXTURE_H
#define BERTH_TEST_DNS_FWD_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop.h"
#include "berth/sockpool.h"
#include "dns/forwarder.h"
#include "dns/forwarder_int.h" /* FWD_TX_BATCH */
#include "dns/hosts.h"
#include "dns/wire.h"

#include "dns_msg_fixture.h"
#include "fake_loop_fixture.h"

#define NUP 3
#define POOL_SIZE 4
#define TIMEOUT 2000u

struct pool_sock {
	int fd;
	uint16_t port;
};

struct env {
	struct loop *loop;
	struct pool *pool;
	struct dns_fwd *f;
	struct dns_hosts *hosts;
	int up[NUP];                  /* fake upstream sockets */
	struct sockaddr_in up_addr[NUP];
	int client;
	struct sockaddr_in fwd_addr;  /* the forwarder's listen address */
	struct pool_sock socks[64];
	int nsocks;
	struct fake_loop fl;          /* owns loop, keeps it polling */
};

static inline void on_pool_sock(void *arg, int fd, int family, uint16_t port, bool open)
{
	(void)family;
	struct env *e = arg;
	if (open && e->nsocks < 64)
		e->socks[e->nsocks++] = (struct pool_sock){ .fd = fd, .port = port };
}

static inline int udp_socket(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (addr)
		*addr = a;
	return fd;
}

struct opts {
	size_t nup;
	bool use_0x20;
	uint32_t max_outstanding;
	const struct portset *blocked;
	bool hosts;
	uint32_t per_query;           /* > 0: a per-query pool of at most this
					 many sockets instead of POOL_SIZE */
};

static inline struct env *env_new(const struct opts *o)
{
	static struct env e;
	char err[256];
	memset(&e, 0, sizeof(e));
	e.loop = fake_loop_open(&e.fl);
	e.pool = o->per_query ? fake_pool_mode(40000, 60999, o->per_query,
					       POOL_MODE_PER_QUERY)
			      : fake_pool(40000, 60999, POOL_SIZE);
	pool_set_watch(e.pool, on_pool_sock, &e);
	/* A per-query pool binds its sockets as queries leave. */
	assert_int_equal(e.nsocks, o->per_query ? 0 : POOL_SIZE);

	struct dns_fwd_addr ups[NUP];
	for (size_t i = 0; i < o->nup; i++) {
		e.up[i] = udp_socket(&e.up_addr[i]);
		memset(&ups[i], 0, sizeof(ups[i]));
		memcpy(&ups[i].sa, &e.up_addr[i], sizeof(e.up_addr[i]));
		ups[i].len = sizeof(e.up_addr[i]);
	}
	if (o->hosts)
		assert_int_equal(dns_hosts_load(&e.hosts, BERTH_TEST_DATADIR "/dns_hosts_good",
						0, NULL, NULL, err, sizeof(err)), 0);
	struct dns_fwd_config fc = {
		.upstreams = ups,
		.nupstream = o->nup,
		.upstream_timeout_ms = TIMEOUT,
		.use_0x20 = o->use_0x20,
		.max_outstanding = o->max_outstanding,
		.blocked_source_ports = o->blocked,
		.hosts = e.hosts,
	};
	e.f = dns_fwd_new(e.loop, e.pool, &fc, err, sizeof(err));
	if (!e.f)
		fail_msg("dns_fwd_new: %s", err);
	e.fwd_addr = (struct sockaddr_in){
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int idx = dns_fwd_listen_udp(e.f, (struct sockaddr *)&e.fwd_addr,
				     sizeof(e.fwd_addr), err, sizeof(err));
	assert_int_equal(idx, 0);
	e.fwd_addr.sin_port = htons(dns_fwd_udp_port(e.f, 0));
	e.client = udp_socket(NULL);
	return &e;
}

static inline void env_free(struct env *e)
{
	dns_fwd_free(e->f);
	pool_free(e->pool);
	fake_loop_close(&e->fl);
	dns_hosts_free(e->hosts);
	for (size_t i = 0; i < NUP; i++)
		if (e->up[i] > 0)
			close(e->up[i]);
	close(e->client);
}

static inline void client_send(struct env *e, const uint8_t *msg, size_t len)
{
	assert_int_equal(sendto(e->client, msg, len, 0, (struct sockaddr *)&e->fwd_addr,
				sizeof(e->fwd_addr)), (ssize_t)len);
	assert_true(loop_run_once(e->loop) >= 0);
}

/* What a socket has waiting, or -1 when nothing. */
static inline ssize_t take(int fd, uint8_t *buf, size_t size, struct sockaddr_in *from)
{
	socklen_t len = sizeof(*from);
	struct sockaddr_in dummy;
	return recvfrom(fd, buf, size, MSG_DONTWAIT,
			(struct sockaddr *)(from ? from : &dummy), &len);
}

/* What upstream i received: the query and the pool socket it came from. */
struct sent {
	uint8_t q[600];
	size_t len;
	struct pool_sock sock;
	struct sockaddr_in from;
};

static inline bool upstream_got(struct env *e, int i, struct sent *s)
{
	ssize_t n = take(e->up[i], s->q, sizeof(s->q), &s->from);
	if (n < 0)
		return false;
	s->len = (size_t)n;
	uint16_t port = ntohs(s->from.sin_port);
	for (int k = 0; k < e->nsocks; k++)
		if (e->socks[k].port == port)
			s->sock = e->socks[k];
	assert_int_equal(s->sock.port, port);
	return true;
}

static inline bool offer_from(struct env *e, const struct sent *s,
			      const struct sockaddr_in *from,
			      const uint8_t *msg, size_t len)
{
	bool claimed = dns_fwd_on_upstream_reply(e->f, s->sock.fd, s->sock.port,
						 (const struct sockaddr *)from,
						 sizeof(*from), msg, len);
	/* Answers to UDP clients leave at the end of a loop iteration. */
	loop_flush(e->loop);
	return claimed;
}

static inline bool offer(struct env *e, int i, const struct sent *s, const uint8_t *msg,
			 size_t len)
{
	return offer_from(e, s, &e->up_addr[i], msg, len);
}

static inline struct dns_fwd_stats stats(struct env *e)
{
	struct dns_fwd_stats st;
	dns_fwd_stats(e->f, &st);
	return st;
}

/* Advance the fake clock to t and run one iteration (timers due by then). */
static inline void run_at(struct env *e, uint64_t t)
{
	fake_now = t;
	loop_run_once(e->loop);
}

static const struct opts ONE = { .nup = 1 };

/* Client query -> upstream 0; returns what upstream 0 received. */
static inline void forward_one(struct env *e, uint16_t id, const char *name,
			       uint16_t type, uint16_t opt_size, struct sent *s)
{
	uint8_t q[300];
	size_t qlen = make_query(q, id, name, type, DNS_CLASS_IN, opt_size);
	client_send(e, q, qlen);
	assert_true(upstream_got(e, 0, s));
}

/* Upstream i answers the query s it got; the client receives the answer. */
static inline void upstream_answers(struct env *e, int i, const struct sent *s)
{
	uint8_t r[600], got[600];
	size_t rlen = make_reply(r, s->q, s->len, 1, 0, 0);
	assert_true(offer(e, i, s, r, rlen));
	assert_true(take(e->client, got, sizeof(got), NULL) > 0);
}

/* The client's next datagram is SERVFAIL to its query id for an A question,
 * the first SERVFAIL sent, with nothing left outstanding. */
static inline void assert_client_servfail(struct env *e, uint16_t id)
{
	uint8_t got[600];
	ssize_t n = take(e->client, got, sizeof(got), NULL);
	assert_true(n > DNS_HEADER_LEN);
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, got, (size_t)n), DNS_OK);
	assert_int_equal(m.hdr.id, id);
	assert_int_equal(dns_flags_rcode(m.hdr.flags), DNS_RCODE_SERVFAIL);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	struct dns_fwd_stats st = stats(e);
	assert_int_equal(st.servfails, 1);
	assert_int_equal(st.rcode[DNS_RCODE_SERVFAIL], 1);
	assert_int_equal(st.outstanding, 0);
}

#endif
