/*
 * Tests for the Kerberos front end: the DER helpers on real MIT KDC bytes
 * (tests/unit/data/krb_as_req.bin is the first AS-REQ kinit sent,
 * krb_error_preauth.bin the KDC's KDC_ERR_PREAUTH_REQUIRED answer to it,
 * both captured once from the krb5_realm integration fixture), the error
 * encoder read back with a DER walker of the test's own, and the relay on a
 * fake loop and clock with real loopback sockets: one query per (pool
 * socket, upstream), reply matching, failover exactly at upstream_timeout,
 * late replies kept from other queries, the error reply after the last
 * upstream, and the RESPONSE_TOO_BIG retry over TCP.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop_fake.h"
#include "berth/portset.h"
#include "berth/session.h"
#include "berth/sockpool.h"
#include "frontend/kerberos.h"

/* 2024-01-02 03:04:05.678901 UTC */
#define FIXED_US 1704164645678901ull
#define START_MS 1000u
#define TIMEOUT_MS 500u

static size_t load(const char *name, uint8_t *buf, size_t cap)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", BERTH_TEST_DATADIR, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	assert_true(n > 0 && n < cap);
	return n;
}

/* --- the test's own DER walker, independent of krb_msg.c --- */

struct tlv {
	unsigned tag;
	const uint8_t *v;
	size_t len, total;
};

static bool tlv_at(const uint8_t *p, size_t n, struct tlv *t)
{
	if (n < 2)
		return false;
	size_t len = p[1], hl = 2;
	if (p[1] & 0x80) {
		size_t k = p[1] & 0x7f;
		if (k < 1 || k > 3 || n < 2 + k)
			return false;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = len << 8 | p[2 + i];
		hl = 2 + k;
	}
	if (n - hl < len)
		return false;
	*t = (struct tlv){ .tag = p[0], .v = p + hl, .len = len, .total = hl + len };
	return true;
}

/* The n-th element of a constructed value. */
static struct tlv child(const struct tlv *parent, unsigned tag)
{
	size_t off = 0;
	struct tlv t = { 0 };
	while (off < parent->len) {
		assert_true(tlv_at(parent->v + off, parent->len - off, &t));
		if (t.tag == tag)
			return t;
		off += t.total;
	}
	fail_msg("tag 0x%02x not found", tag);
	return t;
}

static long long int_of(const struct tlv *ctx)
{
	struct tlv i = { 0 };
	assert_true(tlv_at(ctx->v, ctx->len, &i));
	assert_int_equal(i.tag, 0x02);
	assert_true(i.len >= 1 && i.len <= 4);
	/* DER: the fewest octets. */
	if (i.len > 1)
		assert_false((i.v[0] == 0 && !(i.v[1] & 0x80)) ||
			     (i.v[0] == 0xff && (i.v[1] & 0x80)));
	long long v = (i.v[0] & 0x80) ? -1 : 0;
	for (size_t k = 0; k < i.len; k++)
		v = v * 256 + i.v[k];
	return v;
}

/* --- parsing real bytes --- */

static void test_error_code_real(void **state)
{
	(void)state;
	uint8_t buf[4096];
	size_t n = load("krb_error_preauth.bin", buf, sizeof(buf));
	int32_t code = 0;
	assert_int_equal(fe_krb_msg_type(buf, n), FE_KRB_ERROR);
	assert_true(fe_krb_error_code(buf, n, &code));
	assert_int_equal(code, 25); /* KDC_ERR_PREAUTH_REQUIRED */

	/* Every truncation is rejected, never read past. */
	for (size_t len = 0; len < n; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, buf, len);
		assert_false(fe_krb_error_code(cut, len, &code));
		free(cut);
	}
	/* A request is not an error. */
	uint8_t req[4096];
	size_t rn = load("krb_as_req.bin", req, sizeof(req));
	assert_false(fe_krb_error_code(req, rn, &code));
}

static void test_error_code_garbage(void **state)
{
	(void)state;
	int32_t code;
	static const uint8_t indefinite[] = { 0x7e, 0x80, 0x30, 0x80 };
	static const uint8_t huge_len[] = { 0x7e, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30 };
	static const uint8_t long_int[] = { 0x7e, 0x0b, 0x30, 0x09, 0xa6, 0x07, 0x02,
					    0x05, 0x01, 0x02, 0x03, 0x04, 0x05 };
	static const uint8_t negative[] = { 0x7e, 0x07, 0x30, 0x05, 0xa6, 0x03, 0x02,
					    0x01, 0xfe };
	static const uint8_t high_tag[] = { 0x7f, 0x1e, 0x02, 0x30, 0x00 };
	assert_false(fe_krb_error_code(indefinite, sizeof(indefinite), &code));
	assert_false(fe_krb_error_code(huge_len, sizeof(huge_len), &code));
	assert_false(fe_krb_error_code(long_int, sizeof(long_int), &code));
	assert_false(fe_krb_error_code(high_tag, sizeof(high_tag), &code));
	assert_int_equal(fe_krb_msg_type(high_tag, sizeof(high_tag)), -1);
	assert_true(fe_krb_error_code(negative, sizeof(negative), &code));
	assert_int_equal(code, -2);
	assert_false(fe_krb_error_code(NULL, 0, &code));

	/* Random bytes and the real error with each byte flipped: no crash,
	 * no read past the buffer (ASan watches), and a plain random buffer
	 * is essentially never a KRB-ERROR. */
	uint8_t buf[4096];
	size_t n = load("krb_error_preauth.bin", buf, sizeof(buf));
	for (size_t i = 0; i < n; i++) {
		uint8_t *m = malloc(n);
		memcpy(m, buf, n);
		m[i] ^= 0xff;
		(void)fe_krb_error_code(m, n, &code);
		struct fe_krb_req_names names;
		(void)fe_krb_req_names(m, n, &names);
		free(m);
	}
	for (int round = 0; round < 2000; round++) {
		size_t len = arc4random_uniform(64);
		uint8_t *r = malloc(len ? len : 1);
		arc4random_buf(r, len);
		r[0 % (len ? len : 1)] = len ? 0x7e : 0;
		(void)fe_krb_error_code(r, len, &code);
		struct fe_krb_req_names names;
		(void)fe_krb_req_names(r, len, &names);
		free(r);
	}
}

static void test_req_names_real(void **state)
{
	(void)state;
	uint8_t req[4096];
	size_t n = load("krb_as_req.bin", req, sizeof(req));
	assert_int_equal(fe_krb_msg_type(req, n), FE_KRB_AS_REQ);
	struct fe_krb_req_names names;
	assert_true(fe_krb_req_names(req, n, &names));
	assert_non_null(names.realm);
	assert_int_equal(names.realm_len, 12);
	assert_memory_equal(names.realm, "\x1b\x0a" "BERTH.TEST", 12);
	assert_non_null(names.sname);
	struct tlv sname = { 0 };
	assert_true(tlv_at(names.sname, names.sname_len, &sname));
	assert_int_equal(sname.tag, 0x30);
	assert_int_equal(sname.total, names.sname_len);
	struct tlv strings = child(&sname, 0xa1), seq = { 0 };
	assert_true(tlv_at(strings.v, strings.len, &seq));
	assert_memory_equal(seq.v, "\x1b\x06" "krbtgt\x1b\x0a" "BERTH.TEST", 20);

	/* Truncated requests: rejected, or names that stay inside the bytes. */
	for (size_t len = 0; len < n; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, req, len);
		if (fe_krb_req_names(cut, len, &names)) {
			if (names.realm)
				assert_true(names.realm + names.realm_len <= cut + len);
			if (names.sname)
				assert_true(names.sname + names.sname_len <= cut + len);
		}
		free(cut);
	}
	/* The KDC's error is not a request. */
	uint8_t err[4096];
	size_t en = load("krb_error_preauth.bin", err, sizeof(err));
	assert_false(fe_krb_req_names(err, en, &names));
}

/* --- the encoder --- */

static void check_error(const uint8_t *buf, size_t n, int32_t code,
			const uint8_t *realm, size_t realm_len,
			const uint8_t *sname, size_t sname_len)
{
	struct tlv app = { 0 }, seq = { 0 };
	assert_true(tlv_at(buf, n, &app));
	assert_int_equal(app.tag, 0x7e);
	assert_int_equal(app.total, n);
	assert_true(tlv_at(app.v, app.len, &seq));
	assert_int_equal(seq.tag, 0x30);
	assert_int_equal(seq.total, app.len);
	struct tlv f = child(&seq, 0xa0);
	assert_int_equal(int_of(&f), 5);
	f = child(&seq, 0xa1);
	assert_int_equal(int_of(&f), 30);
	f = child(&seq, 0xa4);
	struct tlv t = { 0 };
	assert_true(tlv_at(f.v, f.len, &t));
	assert_int_equal(t.tag, 0x18);
	assert_int_equal(t.len, 15);
	assert_memory_equal(t.v, "20240102030405Z", 15);
	f = child(&seq, 0xa5);
	assert_int_equal(int_of(&f), 678901);
	f = child(&seq, 0xa6);
	assert_int_equal(int_of(&f), code);
	f = child(&seq, 0xa9);
	assert_int_equal(f.len, realm_len);
	assert_memory_equal(f.v, realm, realm_len);
	f = child(&seq, 0xaa);
	assert_int_equal(f.len, sname_len);
	assert_memory_equal(f.v, sname, sname_len);
	int32_t parsed;
	assert_true(fe_krb_error_code(buf, n, &parsed));
	assert_int_equal(parsed, code);
}

static void test_error_encode(void **state)
{
	(void)state;
	uint8_t req[4096], out[4096];
	size_t n = load("krb_as_req.bin", req, sizeof(req));
	struct fe_krb_req_names names;
	assert_true(fe_krb_req_names(req, n, &names));
	size_t len = fe_krb_error_encode(FE_KRB_ERR_SVC_UNAVAILABLE, FIXED_US, &names,
					 out, sizeof(out));
	assert_true(len > 0);
	check_error(out, len, 29, names.realm, names.realm_len, names.sname,
		    names.sname_len);

	/* Without names: an empty realm and a principal with no components. */
	len = fe_krb_error_encode(52, FIXED_US, NULL, out, sizeof(out));
	assert_true(len > 0);
	static const uint8_t empty_name[] = { 0x30, 0x09, 0xa0, 0x03, 0x02, 0x01,
					      0x00, 0xa1, 0x02, 0x30, 0x00 };
	check_error(out, len, 52, (const uint8_t *)"\x1b\x00", 2, empty_name,
		    sizeof(empty_name));

	/* Codes of every width round-trip in the fewest octets. */
	const int32_t codes[] = { 0, 127, 128, 255, 256, 32767, 32768, 70000,
				  -1, -128, -129, INT32_MIN, INT32_MAX };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		len = fe_krb_error_encode(codes[i], FIXED_US, &names, out, sizeof(out));
		check_error(out, len, codes[i], names.realm, names.realm_len,
			    names.sname, names.sname_len);
	}

	/* Too small a buffer: 0, and never a byte written past it. */
	size_t full = fe_krb_error_encode(29, FIXED_US, &names, out, sizeof(out));
	for (size_t cap = 0; cap < full; cap++) {
		uint8_t *small = malloc(cap ? cap : 1);
		assert_int_equal(fe_krb_error_encode(29, FIXED_US, &names, small, cap), 0);
		free(small);
	}
	uint8_t *exact = malloc(full);
	assert_int_equal(fe_krb_error_encode(29, FIXED_US, &names, exact, full), full);
	assert_memory_equal(exact, out, full);
	free(exact);
}

/* --- the relay on a fake loop with loopback sockets --- */

struct rig {
	struct loop_fake *fake;
	struct loop *loop;
	struct pool *pool;
	struct sess_listener *ul;
	struct fe_krb *krb;
	int up[2];                 /* fake upstream UDP sockets */
	int up_tcp[2];             /* TCP sockets bound to the same ports, or -1
				      once handed out by tcp_upstream */
	struct fe_krb_upstream ups[2];
	int client[2];             /* client UDP sockets */
	struct sockaddr_in caddr[2];
	int pool_fd;
	uint8_t req[4096];
	size_t reqlen;
};

static uint64_t fixed_clock(void *arg)
{
	(void)arg;
	return FIXED_US;
}

static int udp_socket(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t l = sizeof(*addr);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &l), 0);
	return fd;
}

/* A datagram on fd, or -1 when none is waiting (loopback is synchronous). */
static ssize_t recv_now(int fd, uint8_t *buf, size_t cap, struct sockaddr_in *from)
{
	socklen_t l = sizeof(*from);
	return recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)from, &l);
}

static void rig_up(struct rig *r, uint32_t pool_size, size_t max_udp_reply)
{
	*r = (struct rig){ .pool_fd = -1 };
	r->fake = loop_fake_new(START_MS);
	struct loop_config lc = loop_fake_config(r->fake);
	r->loop = loop_new(&lc);
	assert_non_null(r->loop);
	struct portset allowed;
	portset_clear(&allowed);
	portset_add_range(&allowed, 30000, 32000);
	const struct pool_config pc = { .size = pool_size };
	char err[256];
	r->pool = pool_create(&pc, &allowed, NULL, NULL, NULL, START_MS, err, sizeof(err));
	assert_non_null(r->pool);
	uint32_t cursor = 0;
	struct pool_sock_info info;
	assert_true(pool_sock_next(r->pool, &cursor, &info));
	r->pool_fd = info.fd4;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in a;
		/*
		 * The kernel picks a free UDP port; the same port must also be
		 * free for TCP (the too-big retry connects to it), which another
		 * program's connection can spoil, so both are held from here on.
		 */
		r->up_tcp[i] = -1;
		for (int tries = 0; tries < 100 && r->up_tcp[i] < 0; tries++) {
			r->up[i] = udp_socket(&a);
			int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			assert_true(t >= 0);
			if (bind(t, (struct sockaddr *)&a, sizeof(a)) == 0) {
				r->up_tcp[i] = t;
			} else {
				close(t);
				close(r->up[i]);
			}
		}
		assert_true(r->up_tcp[i] >= 0);
		memcpy(&r->ups[i].sa, &a, sizeof(a));
		r->ups[i].len = sizeof(a);
		r->client[i] = udp_socket(&r->caddr[i]);
	}
	const struct fe_krb_config kc = {
		.name = "kdc", .upstreams = r->ups, .nupstreams = 2,
		.upstream_timeout_ms = TIMEOUT_MS, .max_udp_reply = max_udp_reply,
		.wall_clock = fixed_clock,
	};
	r->krb = fe_krb_new(r->loop, r->pool, &kc);
	assert_non_null(r->krb);
	struct sess_service ss;
	fe_krb_service(r->krb, "kdc", &ss);
	struct sockaddr_in la = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	r->ul = sess_listen_udp(r->loop, (struct sockaddr *)&la, sizeof(la), &ss,
				NULL, NULL, err, sizeof(err));
	assert_non_null(r->ul);
	r->reqlen = load("krb_as_req.bin", r->req, sizeof(r->req));
}

static void rig_down(struct rig *r)
{
	sess_listener_free(r->ul);
	fe_krb_free(r->krb);
	struct pool_stats ps;
	pool_stats(r->pool, &ps);
	assert_int_equal(ps.outstanding, 0); /* every handle went back */
	pool_free(r->pool);
	for (int i = 0; i < 2; i++) {
		close(r->up[i]);
		if (r->up_tcp[i] >= 0)
			close(r->up_tcp[i]);
		close(r->client[i]);
	}
	loop_free(r->loop);
	loop_fake_free(r->fake);
}

/* Client c as the listener would hand it over. */
static struct sess_udp_peer peer_of(const struct rig *r, int c)
{
	struct sess_udp_peer p = { .len = sizeof(r->caddr[c]) };
	memcpy(&p.addr, &r->caddr[c], sizeof(r->caddr[c]));
	return p;
}

static void client_asks(struct rig *r, int c)
{
	struct sess_udp_peer p = peer_of(r, c);
	fe_krb_udp_request(r->krb, r->ul, &p, r->req, r->reqlen);
}

/* The upstream u answers msg to the pool socket; the daemon's part is played
 * here: read the pool socket and offer the datagram to the relay. */
static bool upstream_answers(struct rig *r, int u, const struct sockaddr_in *to,
			     const uint8_t *msg, size_t len)
{
	assert_int_equal(sendto(r->up[u], msg, len, 0, (const struct sockaddr *)to,
				sizeof(*to)), (ssize_t)len);
	int pfd = -1;
	uint32_t cursor = 0;
	struct pool_sock_info info;
	while (pool_sock_next(r->pool, &cursor, &info))
		if (info.port == ntohs(to->sin_port))
			pfd = info.fd4;
	assert_true(pfd >= 0);
	uint8_t buf[4096];
	struct sockaddr_in from;
	ssize_t n = recv_now(pfd, buf, sizeof(buf), &from);
	assert_int_equal(n, (ssize_t)len);
	return fe_krb_pool_reply(r->krb, pfd, (struct sockaddr *)&from,
				 sizeof(from), buf, (size_t)n);
}

static void run_at(struct rig *r, uint64_t t)
{
	loop_fake_set_time(r->fake, t);
	loop_run_once(r->loop);
}

static void test_one_query_per_socket_and_upstream(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 1, 0); /* one pool socket: every draw is the same socket */
	uint8_t buf[4096];
	struct sockaddr_in from, pool_addr;
	struct fe_krb_stats st;

	client_asks(&r, 0);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &pool_addr), (ssize_t)r.reqlen);
	assert_memory_equal(buf, r.req, r.reqlen);
	assert_true(fe_krb_waiting(r.krb, r.pool_fd, (struct sockaddr *)&r.ups[0].sa));

	/* The only socket already waits for upstream 0: the second request
	 * cannot share it and goes on to upstream 1 at once, same socket. */
	client_asks(&r, 1);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), -1);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_int_equal(ntohs(from.sin_port), ntohs(pool_addr.sin_port));
	assert_true(fe_krb_waiting(r.krb, r.pool_fd, (struct sockaddr *)&r.ups[1].sa));
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.pool_busy, 1);
	assert_int_equal(st.failovers, 1);

	/* A datagram from an address that is no upstream is not claimed. */
	int stranger = udp_socket(&from);
	assert_int_equal(sendto(stranger, "\x6b\x02\x30\x00", 4, 0,
				(struct sockaddr *)&pool_addr, sizeof(pool_addr)), 4);
	ssize_t n = recv_now(r.pool_fd, buf, sizeof(buf), &from);
	assert_int_equal(n, 4);
	assert_false(fe_krb_pool_reply(r.krb, r.pool_fd, (struct sockaddr *)&from,
				       sizeof(from), buf, 4));
	close(stranger);

	/* Each upstream's answer goes to the client whose query it was. */
	static const uint8_t rep1[] = { 0x6b, 0x03, 0x30, 0x01, 0x01 };
	static const uint8_t rep0[] = { 0x6b, 0x03, 0x30, 0x01, 0x00 };
	assert_true(upstream_answers(&r, 1, &pool_addr, rep1, sizeof(rep1)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), sizeof(rep1));
	assert_memory_equal(buf, rep1, sizeof(rep1));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	assert_true(upstream_answers(&r, 0, &pool_addr, rep0, sizeof(rep0)));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), sizeof(rep0));
	assert_memory_equal(buf, rep0, sizeof(rep0));

	/* A second answer from upstream 0 has nobody waiting: claimed, dropped,
	 * counted. */
	assert_true(upstream_answers(&r, 0, &pool_addr, rep0, sizeof(rep0)));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.replies, 2);
	assert_int_equal(st.unmatched, 1);
	assert_int_equal(st.outstanding, 0);
	rig_down(&r);
}

static void test_failover_timing_and_error(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 4, 0);
	uint8_t buf[4096];
	struct sockaddr_in from, pool_addr0;
	client_asks(&r, 0);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &pool_addr0), (ssize_t)r.reqlen);

	/* Never early: nothing goes to upstream 1 before upstream_timeout. */
	run_at(&r, START_MS + TIMEOUT_MS - 1);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), -1);
	run_at(&r, START_MS + TIMEOUT_MS);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	struct fe_krb_stats st;
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.upstream_timeouts, 1);
	assert_int_equal(st.failovers, 1);

	/* The late answer of upstream 0 is not taken for the query. */
	static const uint8_t rep[] = { 0x6b, 0x03, 0x30, 0x01, 0x00 };
	assert_true(upstream_answers(&r, 0, &pool_addr0, rep, sizeof(rep)));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.late_replies, 1);

	/* The last upstream times out: the client gets SVC_UNAVAILABLE with
	 * the request's realm and sname, exactly at the deadline. */
	run_at(&r, START_MS + 2 * TIMEOUT_MS - 1);
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	run_at(&r, START_MS + 2 * TIMEOUT_MS);
	ssize_t n = recv_now(r.client[0], buf, sizeof(buf), &from);
	assert_true(n > 0);
	struct fe_krb_req_names names;
	assert_true(fe_krb_req_names(r.req, r.reqlen, &names));
	check_error(buf, (size_t)n, FE_KRB_ERR_SVC_UNAVAILABLE, names.realm,
		    names.realm_len, names.sname, names.sname_len);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.upstream_timeouts, 2);
	assert_int_equal(st.errors_sent, 1);
	assert_int_equal(st.late_replies, 1);
	assert_int_equal(st.unmatched, 0);
	assert_int_equal(st.outstanding, 0);

	/* Requests that are no KDC request are never relayed. */
	struct sess_udp_peer p0 = peer_of(&r, 0);
	fe_krb_udp_request(r.krb, r.ul, &p0, rep, sizeof(rep));
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), -1);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.malformed, 1);
	rig_down(&r);
}

/*
 * Only a request a KDC can answer is relayed.  Garbage behind an AS-REQ tag
 * is one the KDC ignores, so relayed it would hold a (pool socket, KDC)
 * pair for the timeout and the late-reply guard: a few hundred such
 * datagrams took every pair and denied real clients.  Each is dropped at
 * once instead, counted as malformed, and answered with nothing (no error
 * for a forged source either).
 */
static void test_malformed_request_not_relayed(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 4, 0);
	uint8_t real[4096], buf[4096];
	size_t n = load("krb_as_req.bin", real, sizeof(real));
	assert_true(fe_krb_req_valid(real, n));
	assert_false(fe_krb_req_valid(real, n - 1));
	uint8_t longer[4097];
	memcpy(longer, real, n);
	longer[n] = 0;
	assert_false(fe_krb_req_valid(longer, n + 1));

	/* [APPLICATION 10] SEQUENCE { pvno [1] INTEGER 5 } */
	static const uint8_t bodyless[] = { 0x6a, 0x07, 0x30, 0x05, 0xa1, 0x03,
					    0x02, 0x01, 0x05 };
	static const uint8_t tiny[] = { 0x6a, 0x03, 0x30, 0x01, 0x00 };
	/* pvno 4, and msg-type 12 under the AS-REQ tag, with a body. */
	static const uint8_t pvno4[] = { 0x6a, 0x0e, 0x30, 0x0c, 0xa1, 0x03, 0x02,
					 0x01, 0x04, 0xa2, 0x03, 0x02, 0x01, 0x0a,
					 0xa4, 0x00 };
	static const uint8_t type12[] = { 0x6a, 0x0e, 0x30, 0x0c, 0xa1, 0x03, 0x02,
					  0x01, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x0c,
					  0xa4, 0x00 };
	const struct { const uint8_t *m; size_t len; } bad[] = {
		{ bodyless, sizeof(bodyless) }, { tiny, sizeof(tiny) },
		{ pvno4, sizeof(pvno4) }, { type12, sizeof(type12) },
		{ longer, n + 1 },
	};
	struct sockaddr_in from;
	struct sess_udp_peer p0 = peer_of(&r, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(fe_krb_req_valid(bad[i].m, bad[i].len));
		fe_krb_udp_request(r.krb, r.ul, &p0, bad[i].m, bad[i].len);
	}
	run_at(&r, START_MS + 2 * TIMEOUT_MS);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), -1);
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	struct fe_krb_stats st;
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.malformed, sizeof(bad) / sizeof(bad[0]));
	assert_int_equal(st.errors_sent, 0);
	assert_int_equal(st.outstanding, 0);

	/* The real request still goes upstream. */
	fe_krb_udp_request(r.krb, r.ul, &p0, real, n);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), (ssize_t)n);
	rig_down(&r);
}

/*
 * Client 0 (A) asks on a pool of one socket: upstream 0 gets the request
 * and stays silent; at upstream_timeout it goes to upstream 1, whose answer
 * A gets.  *pool_addr: the pool socket's address.
 */
static void a_gives_up_upstream_0(struct rig *r, struct sockaddr_in *pool_addr)
{
	static const uint8_t rep_a[] = { 0x6b, 0x03, 0x30, 0x01, 0xa1 };
	uint8_t buf[4096];
	struct sockaddr_in from;
	client_asks(r, 0);
	assert_int_equal(recv_now(r->up[0], buf, sizeof(buf), pool_addr), (ssize_t)r->reqlen);
	run_at(r, START_MS + TIMEOUT_MS);
	assert_int_equal(recv_now(r->up[1], buf, sizeof(buf), &from), (ssize_t)r->reqlen);
	assert_true(upstream_answers(r, 1, pool_addr, rep_a, sizeof(rep_a)));
	assert_int_equal(recv_now(r->client[0], buf, sizeof(buf), &from), sizeof(rep_a));
	assert_memory_equal(buf, rep_a, sizeof(rep_a));
}

/*
 * A late reply on a pool of one socket: A's query to upstream 0 times out
 * and moves on to upstream 1 (answered there); B asks 600 ms in, and
 * upstream 0's late answer to A comes at 700 ms.  The (socket, upstream 0)
 * pair stays reserved after A's timeout, so B does not go out on it and the
 * late answer reaches nobody.
 */
static void test_late_reply_not_given_to_next_query(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 1, 0);
	uint8_t buf[4096];
	struct sockaddr_in from, pool_addr;
	struct fe_krb_stats st;
	static const uint8_t late_a[] = { 0x6b, 0x03, 0x30, 0x01, 0xaa };
	static const uint8_t rep_b[] = { 0x6b, 0x03, 0x30, 0x01, 0xb1 };

	a_gives_up_upstream_0(&r, &pool_addr);

	/* B cannot use the socket for upstream 0 while A's answer may still
	 * come on it: it goes to upstream 1 instead. */
	run_at(&r, START_MS + 600);
	client_asks(&r, 1);
	run_at(&r, START_MS + 700);
	assert_true(upstream_answers(&r, 0, &pool_addr, late_a, sizeof(late_a)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), -1);
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.late_replies, 1);
	assert_int_equal(st.unmatched, 0);
	assert_int_equal(st.pool_busy, 1);

	/* B's own answer, from upstream 1, is B's. */
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_true(upstream_answers(&r, 1, &pool_addr, rep_b, sizeof(rep_b)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), sizeof(rep_b));
	assert_memory_equal(buf, rep_b, sizeof(rep_b));

	/* The late record went with the late answer: a second datagram from
	 * upstream 0 is only unmatched. */
	assert_true(upstream_answers(&r, 0, &pool_addr, late_a, sizeof(late_a)));
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.late_replies, 1);
	assert_int_equal(st.unmatched, 1);
	assert_int_equal(st.replies, 2);
	assert_int_equal(st.outstanding, 0);
	rig_down(&r);
}

/*
 * A slow KDC: upstream 0 answers A's request 1.2 s after it was sent, later
 * than twice upstream_timeout, while B asks on the only pool socket.  The
 * pair stays reserved for FE_KRB_LATE_MIN_MS, so B goes to upstream 1 and
 * A's answer reaches nobody.  A reply of the wrong kind for B's AS-REQ (a
 * TGS-REP) is not B's either.
 */
static void test_slow_or_wrong_kind_reply_kept_from_others(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 1, 0);
	uint8_t buf[4096];
	struct sockaddr_in from, pool_addr;
	struct fe_krb_stats st;
	static const uint8_t late_a[] = { 0x6b, 0x03, 0x30, 0x01, 0xaa };
	static const uint8_t tgs_rep[] = { 0x6d, 0x03, 0x30, 0x01, 0xcc };
	static const uint8_t rep_b[] = { 0x6b, 0x03, 0x30, 0x01, 0xb1 };

	a_gives_up_upstream_0(&r, &pool_addr);

	run_at(&r, START_MS + 1100);
	client_asks(&r, 1);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), -1);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	run_at(&r, START_MS + 1200);
	assert_true(upstream_answers(&r, 0, &pool_addr, late_a, sizeof(late_a)));
	assert_true(upstream_answers(&r, 1, &pool_addr, tgs_rep, sizeof(tgs_rep)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), -1);
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.late_replies, 1);
	assert_int_equal(st.unmatched, 1);
	assert_int_equal(st.outstanding, 1);

	assert_true(upstream_answers(&r, 1, &pool_addr, rep_b, sizeof(rep_b)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), sizeof(rep_b));
	assert_memory_equal(buf, rep_b, sizeof(rep_b));
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.replies, 2);
	assert_int_equal(st.outstanding, 0);
	rig_down(&r);
}

static uint32_t pool_outstanding(struct rig *r)
{
	struct pool_stats ps;
	pool_stats(r->pool, &ps);
	return (uint32_t)ps.outstanding;
}

/*
 * The (socket, upstream) pair a timed-out query leaves stays reserved for
 * upstream_timeout and at least FE_KRB_LATE_MIN_MS (10 s, here the longer),
 * holding its pool handle, and is free again after.
 */
static void test_late_grace_expiry(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 1, 0);
	uint8_t buf[4096];
	struct sockaddr_in from, pool_addr;
	struct fe_krb_stats st;
	static const uint8_t rep[] = { 0x6b, 0x03, 0x30, 0x01, 0x00 };

	client_asks(&r, 0);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &pool_addr), (ssize_t)r.reqlen);
	run_at(&r, START_MS + TIMEOUT_MS);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_true(upstream_answers(&r, 1, &pool_addr, rep, sizeof(rep)));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), sizeof(rep));
	/* No query in flight, yet the pair (socket, upstream 0) holds the
	 * socket. */
	assert_int_equal(pool_outstanding(&r), 1);

	/* Just before the grace period ends: upstream 0 is skipped. */
	const uint64_t free_at = START_MS + TIMEOUT_MS + FE_KRB_LATE_MIN_MS;
	run_at(&r, free_at - 1);
	client_asks(&r, 1);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), -1);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_true(upstream_answers(&r, 1, &pool_addr, rep, sizeof(rep)));
	assert_int_equal(recv_now(r.client[1], buf, sizeof(buf), &from), sizeof(rep));
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.pool_busy, 1);

	/* At its end the socket goes back and upstream 0 takes queries on it
	 * again, answers included. */
	run_at(&r, free_at);
	assert_int_equal(pool_outstanding(&r), 0);
	client_asks(&r, 0);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_int_equal(ntohs(from.sin_port), ntohs(pool_addr.sin_port));
	assert_true(upstream_answers(&r, 0, &pool_addr, rep, sizeof(rep)));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), sizeof(rep));
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.pool_busy, 1);
	assert_int_equal(st.late_replies, 0);
	assert_int_equal(st.replies, 3);

	/* A query that times out again leaves a record; freeing the relay
	 * with it (and the query, now on upstream 1) returns every handle,
	 * which rig_down checks. */
	client_asks(&r, 1);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	run_at(&r, free_at + TIMEOUT_MS);
	assert_int_equal(recv_now(r.up[1], buf, sizeof(buf), &from), (ssize_t)r.reqlen);
	assert_int_equal(pool_outstanding(&r), 2);
	rig_down(&r);
}

/* The fd the relay registered for writing (its TCP connection). */
static int relay_tcp_fd(struct rig *r)
{
	for (int fd = 3; fd < 1024; fd++)
		if (loop_fake_interest(r->fake, fd) == (int)LOOP_WRITE)
			return fd;
	fail_msg("no TCP connection registered");
	return -1;
}

/* A TCP listener on the port of upstream u; the caller closes it. */
static int tcp_upstream(struct rig *r, int u)
{
	int fd = r->up_tcp[u];
	r->up_tcp[u] = -1;
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static int accept_within(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	int c = accept(lfd, NULL, NULL);
	assert_true(c >= 0);
	return c;
}

/* Run the too-big exchange; the TCP upstream answers reply_len bytes. */
static void too_big_case(size_t reply_len, bool expect_tcp_answer)
{
	struct rig r;
	rig_up(&r, 4, 256);
	int lfd = tcp_upstream(&r, 0);
	uint8_t buf[8192];
	struct sockaddr_in pool_addr, from;
	client_asks(&r, 0);
	assert_int_equal(recv_now(r.up[0], buf, sizeof(buf), &pool_addr), (ssize_t)r.reqlen);
	uint8_t err[512];
	size_t elen = fe_krb_error_encode(FE_KRB_ERR_RESPONSE_TOO_BIG, FIXED_US, NULL,
					  err, sizeof(err));
	assert_true(upstream_answers(&r, 0, &pool_addr, err, elen));
	assert_int_equal(recv_now(r.client[0], buf, sizeof(buf), &from), -1);

	/* The relay connects to the same upstream over TCP and sends the
	 * request with its 4-byte length. */
	int conn = accept_within(lfd);
	int rfd = relay_tcp_fd(&r);
	loop_fake_inject(r.fake, rfd, LOOP_WRITE);
	run_at(&r, START_MS + 1);
	struct pollfd p = { .fd = conn, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	ssize_t n = recv(conn, buf, r.reqlen + 4, MSG_WAITALL);
	assert_int_equal(n, (ssize_t)r.reqlen + 4);
	assert_int_equal((buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3],
			 r.reqlen);
	assert_memory_equal(buf + 4, r.req, r.reqlen);

	/* The framed AS-REP comes back. */
	uint8_t rep[8192];
	size_t body = reply_len;
	rep[0] = 0, rep[1] = 0, rep[2] = (uint8_t)(body >> 8), rep[3] = (uint8_t)body;
	rep[4] = 0x6b, rep[5] = 0x82;
	rep[6] = (uint8_t)((body - 4) >> 8), rep[7] = (uint8_t)(body - 4);
	memset(rep + 8, 0x5a, body - 4);
	assert_int_equal(send(conn, rep, body + 4, 0), (ssize_t)body + 4);
	assert_int_equal(poll(&(struct pollfd){ .fd = rfd, .events = POLLIN }, 1, 5000), 1);
	loop_fake_inject(r.fake, rfd, LOOP_READ);
	run_at(&r, START_MS + 2);
	n = recv_now(r.client[0], buf, sizeof(buf), &from);
	struct fe_krb_stats st;
	fe_krb_get_stats(r.krb, &st);
	assert_int_equal(st.too_big_retries, 1);
	if (expect_tcp_answer) {
		assert_int_equal(n, (ssize_t)body);
		assert_memory_equal(buf, rep + 4, body);
		assert_int_equal(st.replies, 1);
	} else {
		/* Longer than max_udp_reply: the client gets the error, to
		 * retry over TCP itself. */
		assert_int_equal(n, (ssize_t)elen);
		assert_memory_equal(buf, err, elen);
		assert_int_equal(st.too_big_relayed, 1);
	}
	assert_int_equal(st.outstanding, 0);
	assert_int_equal(loop_fake_interest(r.fake, rfd), -ENOENT);
	close(conn);
	close(lfd);
	rig_down(&r);
}

static void test_too_big_retry_fits(void **state)
{
	(void)state;
	too_big_case(200, true);
}

static void test_too_big_retry_too_long(void **state)
{
	(void)state;
	too_big_case(1000, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_code_real),
		cmocka_unit_test(test_error_code_garbage),
		cmocka_unit_test(test_req_names_real),
		cmocka_unit_test(test_error_encode),
		cmocka_unit_test(test_one_query_per_socket_and_upstream),
		cmocka_unit_test(test_failover_timing_and_error),
		cmocka_unit_test(test_malformed_request_not_relayed),
		cmocka_unit_test(test_late_reply_not_given_to_next_query),
		cmocka_unit_test(test_late_grace_expiry),
		cmocka_unit_test(test_slow_or_wrong_kind_reply_kept_from_others),
		cmocka_unit_test(test_too_big_retry_fits),
		cmocka_unit_test(test_too_big_retry_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
