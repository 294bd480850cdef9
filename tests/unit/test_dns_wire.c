/*
 * Unit tests for dns/wire: parsing (valid, truncated, hostile), name
 * comparison, 0x20, EDNS rewriting and response building.
 *
 * Well-formed messages come from tests/unit/data/dns_*.bin, written by
 * dnspython (gen_dns_vectors.py); hostile ones are assembled here byte by
 * byte, because no encoder will produce them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dns/wire.h"

struct vec {
	uint8_t b[1024];
	size_t n;
};

static struct vec load(const char *name)
{
	struct vec v = { .n = 0 };
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", BERTH_TEST_DATADIR, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	v.n = fread(v.b, 1, sizeof(v.b), f);
	fclose(f);
	assert_true(v.n > DNS_HEADER_LEN);
	return v;
}

static void put(struct vec *v, const void *p, size_t n)
{
	if (n == 0)
		return; /* p may be NULL then, which memcpy does not allow */
	assert_true(v->n + n <= sizeof(v->b));
	memcpy(v->b + v->n, p, n);
	v->n += n;
}

static void put16(struct vec *v, uint16_t x)
{
	uint8_t b[2] = { (uint8_t)(x >> 8), (uint8_t)x };
	put(v, b, 2);
}

static void put_u8(struct vec *v, uint8_t x)
{
	put(v, &x, 1);
}

static struct vec header(uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
			 uint16_t ar)
{
	struct vec v = { .n = 0 };
	put16(&v, 0x4242);
	put16(&v, flags);
	put16(&v, qd);
	put16(&v, an);
	put16(&v, ns);
	put16(&v, ar);
	return v;
}

/* Question "foo." A IN at offset 12 (12..20), ends at 21. */
static struct vec with_foo_question(uint16_t an, uint16_t ar)
{
	struct vec v = header(0, 1, an, 0, ar);
	put(&v, "\3foo\0", 5);
	put16(&v, DNS_TYPE_A);
	put16(&v, DNS_CLASS_IN);
	return v;
}

/* TYPE, CLASS, TTL, RDLENGTH=0 of an empty A record. */
static void put_empty_rr_tail(struct vec *v)
{
	put16(v, DNS_TYPE_A);
	put16(v, DNS_CLASS_IN);
	put16(v, 0);
	put16(v, 60);
	put16(v, 0);
}

static void put_opt(struct vec *v, uint16_t size, const uint8_t *rdata,
		    uint16_t rdlen)
{
	put_u8(v, 0);
	put16(v, DNS_TYPE_OPT);
	put16(v, size);
	put16(v, 0);
	put16(v, 0);
	put16(v, rdlen);
	put(v, rdata, rdlen);
}

static int parse(const struct vec *v)
{
	struct dns_msg m;
	return dns_parse(&m, v->b, v->n);
}

static void assert_name(const uint8_t *buf, size_t len, size_t off,
			const char *want)
{
	char text[1100];
	assert_true(dns_name_to_text(buf, len, off, text, sizeof(text)) >= 0);
	assert_string_equal(text, want);
}

static void test_query_without_opt(void **state)
{
	(void)state;
	struct vec v = load("dns_query_a.bin");
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
	assert_true(m.valid && m.header_ok && m.has_question);
	assert_int_equal(m.hdr.id, 0x1234);
	assert_int_equal(dns_get_id(v.b), 0x1234);
	assert_int_equal(m.hdr.flags, DNS_FLAG_RD);
	assert_int_equal(dns_flags_opcode(m.hdr.flags), DNS_OPCODE_QUERY);
	assert_int_equal(m.hdr.qdcount, 1);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	assert_int_equal(m.qclass, DNS_CLASS_IN);
	assert_int_equal(m.qname_off, 12);
	assert_int_equal(m.qname_len, 17);
	assert_int_equal(m.question_end, v.n);
	assert_name(v.b, v.n, m.qname_off, "www.example.com.");
	assert_false(m.has_opt);
	assert_false(dns_msg_do(&m));
	assert_int_equal(dns_udp_limit(&m), 512);
}

static void test_query_with_opt(void **state)
{
	(void)state;
	struct vec v = load("dns_query_opt.bin");
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
	assert_int_equal(m.hdr.id, 0xbeef);
	assert_int_equal(m.hdr.flags, DNS_FLAG_RD | DNS_FLAG_CD);
	assert_int_equal(m.qtype, DNS_TYPE_AAAA);
	assert_true(m.has_opt);
	assert_int_equal(m.udp_size, 4096);
	assert_int_equal(m.edns_version, 0);
	assert_int_equal(m.ext_rcode, 0);
	assert_true(dns_msg_do(&m));
	/* Root owner + 10 fixed octets + one 12-octet cookie option. */
	assert_int_equal(m.opt_len, 11 + 12);
	assert_int_equal(m.opt_off, v.n - m.opt_len);
	assert_int_equal(m.opt_rdlen, 12);
	assert_int_equal(v.b[m.opt_rdata_off + 1], 10); /* option code */
	assert_int_equal(dns_udp_limit(&m), 4096);
}

static void test_responses_walk(void **state)
{
	(void)state;
	struct vec v = load("dns_response_cname.bin");
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_true(m.hdr.flags & DNS_FLAG_QR);
	assert_int_equal(m.hdr.ancount, 3);
	assert_int_equal(m.hdr.nscount, 1);
	assert_int_equal(m.hdr.arcount, 2);
	assert_true(m.has_opt);
	assert_int_equal(m.udp_size, 1232);
	assert_int_equal(dns_msg_rcode(&m), DNS_RCODE_NOERROR);
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_ERR_NOT_QUERY);

	v = load("dns_response_nxdomain.bin");
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_int_equal(dns_msg_rcode(&m), DNS_RCODE_NXDOMAIN);
	assert_false(m.has_opt);
}

/*
 * Every proper prefix of a valid message must fail as truncated.  Each
 * prefix is copied into a heap block of exactly its size so that the
 * sanitizer build catches any read past the end.
 */
static void test_every_prefix_truncated(void **state)
{
	(void)state;
	const char *names[] = { "dns_query_a.bin", "dns_query_opt.bin",
				"dns_response_cname.bin",
				"dns_response_nxdomain.bin" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct vec v = load(names[i]);
		for (size_t len = 0; len < v.n; len++) {
			uint8_t *copy = malloc(len ? len : 1);
			assert_non_null(copy);
			memcpy(copy, v.b, len);
			struct dns_msg m;
			int rc = dns_parse(&m, copy, len);
			if (rc != DNS_ERR_TRUNCATED)
				fail_msg("%s cut at %zu: %s", names[i], len,
					 dns_strerror(rc));
			assert_int_equal(m.header_ok, len >= DNS_HEADER_LEN);
			assert_false(m.valid);
			free(copy);
		}
	}
}

static void test_trailing_bytes(void **state)
{
	(void)state;
	struct vec v = load("dns_query_a.bin");
	put_u8(&v, 0);
	assert_int_equal(parse(&v), DNS_ERR_COUNTS);
}

static void test_pointers(void **state)
{
	(void)state;
	struct dns_msg m;
	/* A valid backward pointer to the question name. */
	struct vec v = with_foo_question(1, 0);
	put16(&v, 0xC00C);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_OK);
	assert_name(v.b, v.n, 21, "foo.");

	/* A pointer to a suffix inside an earlier name, then more labels. */
	v = with_foo_question(1, 0);
	put(&v, "\3bar", 4);
	put16(&v, 0xC00C);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_OK);
	assert_name(v.b, v.n, 21, "bar.foo.");

	/* Forward: points past itself. */
	v = with_foo_question(1, 0);
	put16(&v, 0xC000 | 40);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_ERR_NAME);

	/* Self-loop: points at itself. */
	v = with_foo_question(1, 0);
	put16(&v, 0xC000 | 21);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_ERR_LOOP);

	/* Loop through a label: "x" then a pointer back to the "x". */
	v = with_foo_question(1, 0);
	put(&v, "\1x", 2);
	put16(&v, 0xC000 | 21);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_ERR_LOOP);

	/*
	 * Two pointers, each pointing backwards from where it sits: the name
	 * at 25 jumps to 21, whose 5-octet label covers 22..26, the pointer
	 * that led there included: what a pointer leads to must end before
	 * it.  Read from 21, the label is followed by a pointer at 27 back to
	 * 25, into the name itself.
	 */
	v = with_foo_question(0, 0);
	put(&v, "\5abc", 4);            /* 21..24 */
	put16(&v, 0xC000 | 21);          /* 25..26: the first pointer */
	put16(&v, 0xC000 | 25);          /* 27..28: the second pointer */
	assert_int_equal(dns_name_check(v.b, v.n, 25, NULL, NULL),
			 DNS_ERR_NAME);
	assert_int_equal(dns_name_check(v.b, v.n, 21, NULL, NULL),
			 DNS_ERR_LOOP);

	/* A pointer to a name that runs on past the pointer, into the
	 * record's own fixed fields: "\2ab" at 21 has no root before the
	 * pointer at 24 that leads back to it. */
	v = with_foo_question(0, 0);
	put(&v, "\2ab", 3);             /* 21..23 */
	put16(&v, 0xC000 | 21);          /* 24..25 */
	put_u8(&v, 0);                   /* 26: what would end the name */
	assert_int_equal(dns_name_check(v.b, v.n, 24, NULL, NULL),
			 DNS_ERR_NAME);

	/* Into the header. */
	v = with_foo_question(1, 0);
	put16(&v, 0xC000 | 4);
	put_empty_rr_tail(&v);
	assert_int_equal(parse(&v), DNS_ERR_NAME);

	/* The question, as the first name, cannot use a pointer at all. */
	v = header(0, 1, 0, 0, 0);
	put16(&v, 0xC00C);
	put16(&v, DNS_TYPE_A);
	put16(&v, DNS_CLASS_IN);
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_ERR_LOOP);
	assert_true(m.header_ok);
}

/* Each RR's owner points at the previous owner: RR i needs i + 1 jumps. */
static void test_pointer_chain_limit(void **state)
{
	(void)state;
	static uint8_t big[4096];
	for (unsigned rrs = DNS_PTR_JUMPS_MAX; rrs <= DNS_PTR_JUMPS_MAX + 1; rrs++) {
		struct vec v = with_foo_question((uint16_t)rrs, 0);
		memcpy(big, v.b, v.n);
		size_t n = v.n, prev = 12;
		for (unsigned i = 0; i < rrs; i++) {
			size_t here = n;
			big[n++] = (uint8_t)(0xC0 | prev >> 8);
			big[n++] = (uint8_t)prev;
			memset(big + n, 0, 10);
			big[n + 1] = DNS_TYPE_A;
			big[n + 3] = DNS_CLASS_IN;
			n += 10;
			prev = here;
		}
		struct dns_msg m;
		assert_int_equal(dns_parse(&m, big, n),
				 rrs <= DNS_PTR_JUMPS_MAX ? DNS_OK : DNS_ERR_LOOP);
	}
}

static struct vec question_with_labels(const size_t *lens, size_t n)
{
	struct vec v = header(0, 1, 0, 0, 0);
	for (size_t i = 0; i < n; i++) {
		put_u8(&v, (uint8_t)lens[i]);
		for (size_t j = 0; j < lens[i]; j++)
			put_u8(&v, 'a');
	}
	put_u8(&v, 0);
	put16(&v, DNS_TYPE_A);
	put16(&v, DNS_CLASS_IN);
	return v;
}

static void test_label_and_name_limits(void **state)
{
	(void)state;
	size_t l63[] = { 63 }, l64[] = { 64 };
	assert_int_equal(parse(&(struct vec){ 0 }), DNS_ERR_TRUNCATED);
	struct vec v = question_with_labels(l63, 1);
	assert_int_equal(parse(&v), DNS_OK);
	v = question_with_labels(l64, 1);
	assert_int_equal(parse(&v), DNS_ERR_NAME);

	/* 3 * 64 + 62 + root = 255 octets: the longest legal name. */
	size_t n255[] = { 63, 63, 63, 61 }, n256[] = { 63, 63, 63, 62 };
	v = question_with_labels(n255, 4);
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_int_equal(m.qname_len, 255);
	v = question_with_labels(n256, 4);
	assert_int_equal(parse(&v), DNS_ERR_NAME);

	/* The reserved label types 0x80 and 0x40 (a 64-octet "length"). */
	v = header(0, 1, 0, 0, 0);
	put(&v, "\x80\0\0\1\0\1", 6);
	assert_int_equal(parse(&v), DNS_ERR_NAME);
	v = header(0, 1, 0, 0, 0);
	put(&v, "\x41\0\0\1\0\1", 6);
	assert_int_equal(parse(&v), DNS_ERR_NAME);
}

static void test_counts_and_size(void **state)
{
	(void)state;
	static uint8_t huge[DNS_MSG_MAX + 1];
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, huge, sizeof(huge)), DNS_ERR_OVERSIZE);
	assert_false(m.header_ok);

	/* 65535 answers need at least 720 KB: impossible, say so early. */
	struct vec v = with_foo_question(65535, 0);
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_ERR_OVERSIZE);
	assert_true(m.header_ok);
	/* Counts merely beyond this message run out of bytes. */
	v = with_foo_question(10, 0);
	assert_int_equal(parse(&v), DNS_ERR_TRUNCATED);

	/* A forwarder needs exactly one question. */
	v = header(0, 0, 0, 0, 0);
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_false(m.has_question);
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_ERR_COUNTS);
	v = header(0, 2, 0, 0, 0);
	put(&v, "\0\0\1\0\1\0\0\2\0\1", 10);
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_int_equal(m.qtype, DNS_TYPE_A);
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_ERR_COUNTS);
}

static void test_qr_detection(void **state)
{
	(void)state;
	struct dns_msg m;
	struct vec v = with_foo_question(0, 0);
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
	v.b[2] |= 0x80;
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_ERR_NOT_QUERY);
	/* Even a broken response is recognised as one: it is never answered. */
	assert_int_equal(dns_parse_query(&m, v.b, DNS_HEADER_LEN + 2),
			 DNS_ERR_NOT_QUERY);
	assert_int_equal(dns_parse(&m, v.b, DNS_HEADER_LEN + 2),
			 DNS_ERR_TRUNCATED);
}

static void test_edns_errors(void **state)
{
	(void)state;
	const uint8_t good_opt[] = { 0, 10, 0, 2, 0xAA, 0xBB };
	const uint8_t bad_opt[] = { 0, 10, 0, 3, 0xAA, 0xBB };
	struct vec v = with_foo_question(0, 1);
	put_opt(&v, 1232, good_opt, sizeof(good_opt));
	assert_int_equal(parse(&v), DNS_OK);

	v = with_foo_question(0, 1);
	put_opt(&v, 1232, bad_opt, sizeof(bad_opt));
	assert_int_equal(parse(&v), DNS_ERR_EDNS);

	v = with_foo_question(0, 2);
	put_opt(&v, 1232, NULL, 0);
	put_opt(&v, 1232, NULL, 0);
	assert_int_equal(parse(&v), DNS_ERR_EDNS);

	v = with_foo_question(1, 0); /* OPT in the answer section */
	put_opt(&v, 1232, NULL, 0);
	assert_int_equal(parse(&v), DNS_ERR_EDNS);

	v = with_foo_question(0, 1); /* owner "foo." instead of the root */
	put16(&v, 0xC00C);
	put16(&v, DNS_TYPE_OPT);
	put(&v, "\4\320\0\0\0\0\0\0", 8);
	assert_int_equal(parse(&v), DNS_ERR_EDNS);

	/* The root, but through a pointer to the question's last octet (at
	 * 12 + 4): still the root, and opt_rdata_off finds the fixed part. */
	v = with_foo_question(0, 1);
	put16(&v, 0xC000 | (DNS_HEADER_LEN + 4));
	put16(&v, DNS_TYPE_OPT);
	put(&v, "\4\320\0\0\0\0\0\0", 8);
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_true(m.has_opt);
	assert_int_equal(m.udp_size, 1232);
	assert_int_equal(m.opt_rdata_off, v.n);
}

static void test_name_compare(void **state)
{
	(void)state;
	struct vec q = load("dns_query_opt.bin"), r = load("dns_response_cname.bin");
	struct dns_msg qm, rm;
	assert_int_equal(dns_parse(&qm, q.b, q.n), DNS_OK);
	assert_int_equal(dns_parse(&rm, r.b, r.n), DNS_OK);
	/* www.Example.COM (flat) against the response's www.example.com. */
	assert_true(dns_name_equal(q.b, q.n, 12, r.b, r.n, 12));
	assert_false(dns_name_equal_exact(q.b, q.n, 12, r.b, r.n, 12));
	/* The first answer's owner is a pointer to the question. */
	assert_true(dns_name_equal(q.b, q.n, 12, r.b, r.n, rm.question_end));

	/* The CNAME target "web" + pointer, against flat text forms. */
	size_t cname_rdata = rm.question_end + 2 + 10;
	assert_name(r.b, r.n, cname_rdata, "web.example.com.");
	uint8_t flat[DNS_NAME_MAX];
	ssize_t n = dns_name_from_text("WEB.Example.com", flat, sizeof(flat));
	assert_int_equal(n, 17);
	assert_true(dns_name_equal(flat, (size_t)n, 0, r.b, r.n, cname_rdata));
	assert_true(dns_name_equal(r.b, r.n, cname_rdata, flat, (size_t)n, 0));
	assert_false(dns_name_equal_exact(flat, (size_t)n, 0, r.b, r.n,
					  cname_rdata));
	n = dns_name_from_text("web.example.com.", flat, sizeof(flat));
	assert_true(dns_name_equal_exact(flat, (size_t)n, 0, r.b, r.n,
					 cname_rdata));
	/* Different names and a mere suffix are not equal. */
	assert_false(dns_name_equal(q.b, q.n, 12, r.b, r.n, cname_rdata));
	n = dns_name_from_text("example.com", flat, sizeof(flat));
	assert_false(dns_name_equal(flat, (size_t)n, 0, q.b, q.n, 12));
	assert_false(dns_name_equal(q.b, q.n, 12, flat, (size_t)n, 0));

	/* Questions: same name, case-insensitive; type differs here. */
	assert_false(dns_question_matches(&qm, &rm, false));
}

static uint32_t alternate(void *ctx)
{
	unsigned *calls = ctx;
	(*calls)++;
	return 0xAAAAAAAAu; /* lower, upper, lower, ... */
}

static void test_0x20_round_trip(void **state)
{
	(void)state;
	struct vec orig = load("dns_query_a.bin"), v = orig;
	struct dns_msg m, om;
	unsigned calls = 0;
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
	assert_int_equal(dns_parse_query(&om, orig.b, orig.n), DNS_OK);
	assert_int_equal(dns_randomize_case(v.b, &m, alternate, &calls), 13);
	assert_int_equal(calls, 1);
	assert_name(v.b, v.n, 12, "wWw.ExAmPlE.cOm.");
	assert_true(dns_question_matches(&m, &om, false));
	assert_false(dns_question_matches(&m, &om, true));

	/* An upstream echoing the case passes the exact check. */
	struct vec echo = v;
	echo.b[2] |= 0x80;
	struct dns_msg em;
	assert_int_equal(dns_parse(&em, echo.b, echo.n), DNS_OK);
	assert_true(dns_question_matches(&m, &em, true));

	/* The arc4random path keeps the name equal up to case. */
	assert_int_equal(dns_randomize_case(v.b, &m, NULL, NULL), 13);
	assert_true(dns_question_matches(&m, &om, false));
	struct dns_msg none = { .has_question = false };
	assert_int_equal(dns_randomize_case(v.b, &none, NULL, NULL), -EINVAL);
}

static void test_header_edits(void **state)
{
	(void)state;
	struct vec v = load("dns_query_a.bin");
	dns_set_id(v.b, 0xABCD);
	assert_int_equal(v.b[0], 0xAB);
	assert_int_equal(v.b[1], 0xCD);
	assert_int_equal(dns_get_id(v.b), 0xABCD);
	dns_set_flags(v.b, DNS_FLAG_QR | DNS_FLAG_RA | DNS_RCODE_NXDOMAIN);
	dns_set_rcode(v.b, DNS_RCODE_SERVFAIL);
	struct dns_msg m;
	assert_int_equal(dns_parse(&m, v.b, v.n), DNS_OK);
	assert_int_equal(m.hdr.flags, DNS_FLAG_QR | DNS_FLAG_RA | DNS_RCODE_SERVFAIL);
}

static void test_error_responses(void **state)
{
	(void)state;
	struct vec q = load("dns_query_opt.bin");
	struct dns_msg qm, rm;
	uint8_t out[512];
	assert_int_equal(dns_parse_query(&qm, q.b, q.n), DNS_OK);

	ssize_t n = dns_build_error(out, sizeof(out), &qm, DNS_RCODE_FORMERR, 1232);
	assert_true(n > 0);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_int_equal(rm.hdr.id, 0xbeef);
	assert_int_equal(rm.hdr.flags, DNS_FLAG_QR | DNS_FLAG_RD | DNS_FLAG_CD |
					       DNS_RCODE_FORMERR);
	assert_int_equal(rm.hdr.qdcount, 1);
	assert_int_equal(rm.hdr.ancount + rm.hdr.nscount, 0);
	assert_true(dns_question_matches(&qm, &rm, true));
	assert_true(rm.has_opt);
	assert_int_equal(rm.udp_size, 1232);
	assert_int_equal(rm.opt_rdlen, 0);
	assert_true(dns_msg_do(&rm));

	n = dns_build_error(out, sizeof(out), &qm, DNS_RCODE_REFUSED, 0);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_false(rm.has_opt);
	assert_int_equal(dns_msg_rcode(&rm), DNS_RCODE_REFUSED);

	/* BADVERS needs the OPT's extended RCODE. */
	n = dns_build_error(out, sizeof(out), &qm, DNS_RCODE_BADVERS, 1232);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_int_equal(dns_msg_rcode(&rm), DNS_RCODE_BADVERS);
	assert_int_equal(dns_build_error(out, sizeof(out), &qm, DNS_RCODE_BADVERS, 0),
			 -EINVAL);
	assert_int_equal(dns_build_error(out, 20, &qm, DNS_RCODE_SERVFAIL, 0),
			 -ENOSPC);
	assert_int_equal(dns_build_error(out, (size_t)n - 1, &qm,
					 DNS_RCODE_SERVFAIL, 1232), -ENOSPC);

	/* A query whose question is broken gets FORMERR with a bare header. */
	struct vec bad = header(DNS_FLAG_RD, 1, 0, 0, 0);
	put(&bad, "\x80", 1);
	assert_int_equal(dns_parse_query(&qm, bad.b, bad.n), DNS_ERR_NAME);
	n = dns_build_error(out, sizeof(out), &qm, DNS_RCODE_FORMERR, 1232);
	assert_int_equal(n, DNS_HEADER_LEN);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_int_equal(rm.hdr.id, 0x4242);
	assert_int_equal(rm.hdr.qdcount, 0);
	assert_int_equal(dns_msg_rcode(&rm), DNS_RCODE_FORMERR);

	/* No readable header: nothing to answer. */
	assert_int_equal(dns_parse_query(&qm, bad.b, 5), DNS_ERR_TRUNCATED);
	assert_int_equal(dns_build_error(out, sizeof(out), &qm,
					 DNS_RCODE_FORMERR, 0), -EINVAL);
}

/* Read the fixed part and RDATA of the RR at *pos, and step past it. */
static size_t next_rr(const struct dns_msg *m, size_t *pos, uint16_t *type,
		      uint32_t *ttl, uint16_t *rdlen)
{
	size_t end;
	assert_int_equal(dns_name_check(m->buf, m->len, *pos, &end, NULL), DNS_OK);
	assert_true(dns_name_equal(m->buf, m->len, *pos, m->buf, m->len, 12));
	const uint8_t *p = m->buf + end;
	*type = (uint16_t)(p[0] << 8 | p[1]);
	assert_int_equal(p[2] << 8 | p[3], DNS_CLASS_IN);
	*ttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | p[6] << 8 | p[7];
	*rdlen = (uint16_t)(p[8] << 8 | p[9]);
	*pos = end + 10 + *rdlen;
	return end + 10;
}

static void test_local_answers(void **state)
{
	(void)state;
	struct vec q = load("dns_query_opt.bin");
	struct dns_msg qm, rm;
	uint8_t out[512];
	const uint8_t a1[4] = { 192, 0, 2, 7 };
	const uint8_t a6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	const struct dns_local_rr rrs[] = {
		{ .type = DNS_TYPE_A, .ttl = 300, .addr = a1 },
		{ .type = DNS_TYPE_AAAA, .ttl = 3600, .addr = a6 },
		{ .type = DNS_TYPE_PTR, .ttl = 60, .ptr_name = "host.example" },
	};
	assert_int_equal(dns_parse_query(&qm, q.b, q.n), DNS_OK);
	ssize_t n = dns_build_local_answer(out, sizeof(out), &qm, rrs, 3, 1232);
	assert_true(n > 0);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_int_equal(rm.hdr.id, 0xbeef);
	assert_int_equal(rm.hdr.flags, DNS_FLAG_QR | DNS_FLAG_AA | DNS_FLAG_RA |
					       DNS_FLAG_RD | DNS_FLAG_CD);
	assert_int_equal(rm.hdr.ancount, 3);
	assert_true(dns_question_matches(&qm, &rm, true));
	assert_true(rm.has_opt);
	assert_int_equal(rm.udp_size, 1232);

	size_t pos = rm.question_end;
	uint16_t type, rdlen;
	uint32_t ttl;
	size_t rd = next_rr(&rm, &pos, &type, &ttl, &rdlen);
	assert_int_equal(type, DNS_TYPE_A);
	assert_int_equal(ttl, 300);
	assert_int_equal(rdlen, 4);
	assert_memory_equal(out + rd, a1, 4);
	rd = next_rr(&rm, &pos, &type, &ttl, &rdlen);
	assert_int_equal(type, DNS_TYPE_AAAA);
	assert_int_equal(ttl, 3600);
	assert_int_equal(rdlen, 16);
	assert_memory_equal(out + rd, a6, 16);
	rd = next_rr(&rm, &pos, &type, &ttl, &rdlen);
	assert_int_equal(type, DNS_TYPE_PTR);
	assert_int_equal(ttl, 60);
	assert_name(out, (size_t)n, rd, "host.example.");
	assert_int_equal(pos, rm.opt_off);

	/* NODATA, and no OPT when the caller does not want one. */
	n = dns_build_local_answer(out, sizeof(out), &qm, NULL, 0, 0);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_int_equal(rm.hdr.ancount, 0);
	assert_false(rm.has_opt);
	assert_false(rm.hdr.flags & DNS_FLAG_TC);

	/* Too small for the records: TC and no answers, still parseable. */
	size_t fixed = DNS_HEADER_LEN + qm.qname_len + 4 + 11;
	n = dns_build_local_answer(out, fixed + 20, &qm, rrs, 3, 1232);
	assert_int_equal(n, fixed);
	assert_int_equal(dns_parse(&rm, out, (size_t)n), DNS_OK);
	assert_true(rm.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(rm.hdr.ancount, 0);
	assert_int_equal(dns_build_local_answer(out, fixed - 1, &qm, rrs, 3, 1232),
			 -ENOSPC);

	const struct dns_local_rr bad[] = {
		{ .type = DNS_TYPE_NS, .ttl = 1, .ptr_name = "x" },
		{ .type = DNS_TYPE_A, .ttl = 1 },
		{ .type = DNS_TYPE_PTR, .ttl = 1, .ptr_name = "a..b" },
	};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(dns_build_local_answer(out, sizeof(out), &qm,
							&bad[i], 1, 0), -EINVAL);
}

static void test_edns_clamp(void **state)
{
	(void)state;
	struct vec q = load("dns_query_opt.bin");
	struct dns_msg m;
	const struct { uint16_t max, want; } cases[] = {
		{ 8192, 4096 }, { 1232, 1232 }, { 100, 512 },
	};
	for (size_t i = 0; i < 3; i++) {
		struct vec v = q;
		assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
		assert_int_equal(dns_opt_clamp_udp_size(v.b, &m, cases[i].max), 0);
		assert_int_equal(m.udp_size, cases[i].want);
		assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
		assert_int_equal(m.udp_size, cases[i].want);
		assert_true(dns_msg_do(&m));
		/* Only the two CLASS octets of the OPT changed. */
		size_t cls = m.opt_off + 3;
		for (size_t j = 0; j < v.n; j++)
			if (j != cls && j != cls + 1)
				assert_int_equal(v.b[j], q.b[j]);
	}
	/* A client claiming less than 512 is held to 512 (RFC 6891). */
	struct vec v = with_foo_question(0, 1);
	put_opt(&v, 200, NULL, 0);
	assert_int_equal(dns_parse_query(&m, v.b, v.n), DNS_OK);
	assert_int_equal(dns_udp_limit(&m), 512);
	assert_int_equal(dns_opt_clamp_udp_size(v.b, &m, 4096), 0);
	assert_int_equal(m.udp_size, 512);

	struct vec a = load("dns_query_a.bin");
	assert_int_equal(dns_parse_query(&m, a.b, a.n), DNS_OK);
	assert_int_equal(dns_opt_clamp_udp_size(a.b, &m, 1232), -ENOENT);

	/*
	 * A record after the OPT whose owner name points at the OPT's CLASS
	 * (size 0 there reads as the root name): rewritten to 512, those
	 * octets would start a label running into the TTL, whose 0xFF
	 * version octet is no label, so the message would no longer parse.
	 * It is left as it was.
	 */
	for (int to_class = 1; to_class >= 0; to_class--) {
		struct vec t = with_foo_question(0, 2);
		put_u8(&t, 0);                  /* 21: OPT owner, the root */
		put16(&t, DNS_TYPE_OPT);        /* 22..23 */
		put16(&t, 0);                   /* 24..25: CLASS, size 0 */
		put_u8(&t, 0);                  /* 26: extended rcode */
		put_u8(&t, 0xFF);               /* 27: version */
		put16(&t, 0);                   /* 28..29: flags */
		put16(&t, 0);                   /* 30..31: RDLENGTH */
		put16(&t, (uint16_t)(0xC000 | (to_class ? 24 : 12)));
		put_empty_rr_tail(&t);
		struct vec before = t;
		assert_int_equal(dns_parse(&m, t.b, t.n), DNS_OK);
		int rc = dns_opt_clamp_udp_size(t.b, &m, 1232);
		if (to_class) {
			assert_int_equal(rc, -EINVAL);
			assert_int_equal(m.udp_size, 0);
			assert_memory_equal(t.b, before.b, t.n);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(m.udp_size, 512);
		}
		assert_int_equal(dns_parse(&m, t.b, t.n), DNS_OK);
	}
}

static void test_text_forms(void **state)
{
	(void)state;
	uint8_t w[DNS_NAME_MAX + 8];
	char t[64];
	assert_int_equal(dns_name_from_text(".", w, sizeof(w)), 1);
	assert_int_equal(dns_name_to_text(w, 1, 0, t, sizeof(t)), 1);
	assert_string_equal(t, ".");
	const uint8_t odd[] = "\4a.b\\\2\x01 \0";
	assert_true(dns_name_to_text(odd, sizeof(odd) - 1, 0, t, sizeof(t)) > 0);
	assert_string_equal(t, "a\\.b\\\\.\\001\\032.");
	assert_int_equal(dns_name_to_text(odd, sizeof(odd) - 1, 0, t, 5), -ENOSPC);
	assert_int_equal(dns_name_to_text(odd, 3, 0, t, sizeof(t)), -EINVAL);

	const char *bad[] = { "", "..", ".a", "a..b", "a\\.b" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dns_name_from_text(bad[i], w, sizeof(w)), -EINVAL);
	char long_label[70];
	memset(long_label, 'x', 64);
	long_label[64] = '\0';
	assert_int_equal(dns_name_from_text(long_label, w, sizeof(w)), -EINVAL);
	long_label[63] = '\0';
	assert_int_equal(dns_name_from_text(long_label, w, sizeof(w)), 65);
	assert_int_equal(dns_name_from_text(long_label, w, 64), -ENOSPC);
	assert_int_equal(dns_name_from_text("a.b", w, 4), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_without_opt),
		cmocka_unit_test(test_query_with_opt),
		cmocka_unit_test(test_responses_walk),
		cmocka_unit_test(test_every_prefix_truncated),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_pointers),
		cmocka_unit_test(test_pointer_chain_limit),
		cmocka_unit_test(test_label_and_name_limits),
		cmocka_unit_test(test_counts_and_size),
		cmocka_unit_test(test_qr_detection),
		cmocka_unit_test(test_edns_errors),
		cmocka_unit_test(test_name_compare),
		cmocka_unit_test(test_0x20_round_trip),
		cmocka_unit_test(test_header_edits),
		cmocka_unit_test(test_error_responses),
		cmocka_unit_test(test_local_answers),
		cmocka_unit_test(test_edns_clamp),
		cmocka_unit_test(test_text_forms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
