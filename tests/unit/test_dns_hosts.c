/*
 * Unit tests for dns/hosts: loading hosts(5) files (comments, several lines
 * per name, bad lines reported with file:line) and the local answers built
 * from them: A, AAAA, PTR (in-addr.arpa and ip6.arpa), ANY, NODATA, names the
 * table does not know, duplicates answered once, and answers too big for the
 * caller's buffer (TC set, never a silent cut).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dns/hosts.h"
#include "dns/wire.h"

#define GOOD BERTH_TEST_DATADIR "/dns_hosts_good"
#define BAD BERTH_TEST_DATADIR "/dns_hosts_bad"
#define DUP BERTH_TEST_DATADIR "/dns_hosts_dup"
#define MANY BERTH_TEST_DATADIR "/dns_hosts_many"

#define TYPE_ANY 255u

/* A query for name/type/class with id 0x1234, RD set, no OPT. */
static size_t make_query(uint8_t *buf, size_t size, const char *name,
			 uint16_t type, uint16_t qclass)
{
	memset(buf, 0, DNS_HEADER_LEN);
	buf[0] = 0x12, buf[1] = 0x34, buf[2] = 0x01, buf[5] = 1;
	ssize_t n = dns_name_from_text(name, buf + DNS_HEADER_LEN,
				       size - DNS_HEADER_LEN - 4);
	assert_true(n > 0);
	size_t pos = DNS_HEADER_LEN + (size_t)n;
	buf[pos++] = (uint8_t)(type >> 8), buf[pos++] = (uint8_t)type;
	buf[pos++] = (uint8_t)(qclass >> 8), buf[pos++] = (uint8_t)qclass;
	return pos;
}

struct answer {
	ssize_t len;
	struct dns_msg m;
	uint8_t buf[DNS_MSG_MAX];
};

/* Ask h for name/type with an output buffer of size octets. */
static void ask_in(const struct dns_hosts *h, const char *name, uint16_t type,
		   size_t size, struct answer *a)
{
	uint8_t q[300];
	struct dns_msg qm;
	size_t qlen = make_query(q, sizeof(q), name, type, DNS_CLASS_IN);
	assert_true(size <= sizeof(a->buf));
	assert_int_equal(dns_parse_query(&qm, q, qlen), DNS_OK);
	a->len = dns_hosts_answer(h, &qm, a->buf, size, 0);
	if (a->len > 0)
		assert_int_equal(dns_parse(&a->m, a->buf, (size_t)a->len), DNS_OK);
}

static void ask(const struct dns_hosts *h, const char *name, uint16_t type,
		struct answer *a)
{
	ask_in(h, name, type, 1024, a);
}

/* The RDATA offsets of the answer records, found by walking the section. */
static size_t rdata_of(const struct answer *a, size_t nth, uint16_t *rdlen)
{
	size_t pos = a->m.question_end;
	for (size_t i = 0;; i++) {
		size_t end;
		assert_int_equal(dns_name_check(a->buf, (size_t)a->len, pos, &end,
						NULL), DNS_OK);
		pos = end + 8;
		*rdlen = (uint16_t)(a->buf[pos] << 8 | a->buf[pos + 1]);
		pos += 2;
		if (i == nth)
			return pos;
		pos += *rdlen;
	}
}

/* The type of the nth answer record (its RDATA offset less 10). */
static uint16_t type_of(const struct answer *a, size_t nth)
{
	uint16_t rdlen;
	size_t off = rdata_of(a, nth, &rdlen) - 10;
	return (uint16_t)(a->buf[off] << 8 | a->buf[off + 1]);
}

static struct dns_hosts *load(const char *path)
{
	struct dns_hosts *h = NULL;
	char err[256];
	assert_int_equal(dns_hosts_load(&h, path, 0, NULL, NULL, err, sizeof(err)), 0);
	assert_non_null(h);
	return h;
}

static struct dns_hosts *load_good(void)
{
	return load(GOOD);
}

static void test_load_good_file(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	/* localhost A+AAAA, ip6-localhost AAAA, www/alias A(.10) and
	 * www.example.test A(.10, .11) + AAAA, second-line A, v4only A;
	 * PTRs for .1, ::1, .10, .11, 2001:db8::10, 198.51.100.7. */
	assert_int_equal(dns_hosts_count(h), 10 + 6);
	dns_hosts_free(h);
}

static void expect_ptr(const struct dns_hosts *h, const char *rname,
		       const char *target);

struct warnings {
	char msg[8][256];
	int n;
};

static void collect(void *arg, const char *msg)
{
	struct warnings *w = arg;
	if (w->n < 8)
		snprintf(w->msg[w->n], sizeof(w->msg[0]), "%s", msg);
	w->n++;
}

static void test_bad_lines_reported_with_file_line(void **state)
{
	(void)state;
	struct dns_hosts *h = NULL;
	struct warnings w = { .n = 0 };
	char err[256];
	assert_int_equal(dns_hosts_load(&h, BAD, 0, collect, &w, err, sizeof(err)), 0);
	assert_int_equal(w.n, 5);
	assert_string_equal(w.msg[0], BAD ":3: '192.0.2.300' is not an IPv4 or IPv6 address");
	assert_string_equal(w.msg[1], BAD ":4: '192.0.2.2' has no host name");
	assert_string_equal(w.msg[2], BAD ":5: 'not-an-address' is not an IPv4 or IPv6 address");
	assert_string_equal(w.msg[3], BAD ":6: 'bad\\name.test' is not a valid host name");
	/* The UTF-8 of "é" shows as DNS escapes, never as raw octets. */
	assert_string_equal(w.msg[4], BAD ":7: 'caf\\195\\169.example' is not printable "
			    "ASCII, so no query can match it (write an "
			    "internationalised name in its xn-- form)");
	/* good.test, fine.test and cafe.example, each A + PTR: the rest of the
	 * file loaded. */
	assert_int_equal(dns_hosts_count(h), 6);
	struct answer a;
	ask(h, "fine.test", DNS_TYPE_A, &a);
	assert_int_equal(a.m.hdr.ancount, 1);
	/* The skipped name is not the address's canonical name. */
	expect_ptr(h, "4.2.0.192.in-addr.arpa", "cafe.example.");
	ask(h, "caf\xc3\xa9.example", DNS_TYPE_A, &a);
	assert_int_equal(a.len, 0);
	dns_hosts_free(h);
}

static void test_missing_file_names_it(void **state)
{
	(void)state;
	struct dns_hosts *h = NULL;
	char err[256];
	int rc = dns_hosts_load(&h, BERTH_TEST_DATADIR "/no-such-hosts", 0, NULL,
				NULL, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_null(h);
	assert_non_null(strstr(err, "no-such-hosts: No such file"));
}

static void test_a_records_case_insensitive(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	struct answer a;
	ask(h, "WWW.example.Test", DNS_TYPE_A, &a);
	assert_true(a.len > 0);
	assert_int_equal(dns_flags_rcode(a.m.hdr.flags), DNS_RCODE_NOERROR);
	assert_true(a.m.hdr.flags & DNS_FLAG_AA);
	assert_int_equal(a.m.hdr.id, 0x1234);
	assert_int_equal(a.m.hdr.ancount, 2);
	uint16_t rdlen;
	size_t off = rdata_of(&a, 0, &rdlen);
	assert_int_equal(rdlen, 4);
	assert_memory_equal(a.buf + off, "\xc0\x00\x02\x0a", 4);
	off = rdata_of(&a, 1, &rdlen);
	assert_memory_equal(a.buf + off, "\xc0\x00\x02\x0b", 4);
	/* The TTL (4 octets before RDLENGTH) is the table's: 0. */
	assert_memory_equal(a.buf + off - 6, "\0\0\0\0", 4);
	dns_hosts_free(h);
}

static void test_aaaa_record(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	struct answer a;
	ask(h, "www.example.test.", DNS_TYPE_AAAA, &a);
	assert_int_equal(a.m.hdr.ancount, 1);
	uint16_t rdlen;
	size_t off = rdata_of(&a, 0, &rdlen);
	uint8_t want[16];
	inet_pton(AF_INET6, "2001:db8::10", want);
	assert_int_equal(rdlen, 16);
	assert_memory_equal(a.buf + off, want, 16);
	dns_hosts_free(h);
}

static void expect_ptr(const struct dns_hosts *h, const char *rname,
		       const char *target)
{
	struct answer a;
	char text[300];
	ask(h, rname, DNS_TYPE_PTR, &a);
	assert_int_equal(a.m.hdr.ancount, 1);
	uint16_t rdlen;
	size_t off = rdata_of(&a, 0, &rdlen);
	assert_true(dns_name_to_text(a.buf, (size_t)a.len, off, text, sizeof(text)) > 0);
	assert_string_equal(text, target);
}

static void test_ptr_v4_and_v6_first_name_wins(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	/* 192.0.2.10 is on two lines: the first line's first name answers. */
	expect_ptr(h, "10.2.0.192.in-addr.arpa", "www.Example.TEST.");
	expect_ptr(h, "1.0.0.127.IN-ADDR.ARPA", "localhost.");
	expect_ptr(h, "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
		   "www.example.test.");
	expect_ptr(h, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
		   "localhost.");
	dns_hosts_free(h);
}

static void test_nodata_for_known_name(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	struct answer a;
	ask(h, "v4only.test", DNS_TYPE_AAAA, &a);
	assert_true(a.len > 0);
	assert_int_equal(dns_flags_rcode(a.m.hdr.flags), DNS_RCODE_NOERROR);
	assert_int_equal(a.m.hdr.ancount, 0);
	ask(h, "www.example.test", 15 /* MX */, &a);
	assert_true(a.len > 0);
	assert_int_equal(a.m.hdr.ancount, 0);
	dns_hosts_free(h);
}

static void test_unknown_name_and_class_go_upstream(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	struct answer a;
	ask(h, "nowhere.test", DNS_TYPE_A, &a);
	assert_int_equal(a.len, 0);
	/* A suffix of a known name is not the name. */
	ask(h, "example.test", DNS_TYPE_A, &a);
	assert_int_equal(a.len, 0);
	uint8_t q[300];
	struct dns_msg qm;
	size_t qlen = make_query(q, sizeof(q), "www.example.test", DNS_TYPE_A, 3);
	assert_int_equal(dns_parse_query(&qm, q, qlen), DNS_OK);
	assert_int_equal(dns_hosts_answer(h, &qm, a.buf, sizeof(a.buf), 0), 0);
	assert_int_equal(dns_hosts_answer(NULL, &qm, a.buf, sizeof(a.buf), 0), 0);
	dns_hosts_free(h);
}

static void test_duplicates_answered_once(void **state)
{
	(void)state;
	struct dns_hosts *h = load(DUP);
	/* A .1 and .2, one AAAA (two spellings of 2001:db8::1), their PTRs. */
	assert_int_equal(dns_hosts_count(h), 3 + 3);
	struct answer a;
	ask(h, "dup.example", DNS_TYPE_A, &a);
	assert_int_equal(a.m.hdr.ancount, 2);
	uint16_t rdlen;
	/* File order: the first line's address first. */
	assert_memory_equal(a.buf + rdata_of(&a, 0, &rdlen), "\xc0\x00\x02\x01", 4);
	assert_memory_equal(a.buf + rdata_of(&a, 1, &rdlen), "\xc0\x00\x02\x02", 4);
	ask(h, "dup.example", DNS_TYPE_AAAA, &a);
	assert_int_equal(a.m.hdr.ancount, 1);
	expect_ptr(h, "1.2.0.192.in-addr.arpa", "dup.example.");
	dns_hosts_free(h);
}

static void test_every_record_answered(void **state)
{
	(void)state;
	struct dns_hosts *h = load(MANY);
	struct answer a;
	/* 12 + 18 + 40 * 16 = 670 octets fit in 1024. */
	ask(h, "many.example", DNS_TYPE_A, &a);
	assert_false(a.m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(a.m.hdr.ancount, 40);
	uint16_t rdlen;
	assert_memory_equal(a.buf + rdata_of(&a, 39, &rdlen), "\x0a\x01\x00\x28", 4);
	ask_in(h, "many.example", DNS_TYPE_A, DNS_MSG_MAX, &a);
	assert_int_equal(a.m.hdr.ancount, 40);
	dns_hosts_free(h);
}

static void test_too_big_for_buffer_sets_tc(void **state)
{
	(void)state;
	struct dns_hosts *h = load(MANY);
	struct answer a;
	/* 670 octets do not fit a plain UDP client's 512: none of the records,
	 * TC set, so the client asks again over TCP. */
	ask_in(h, "many.example", DNS_TYPE_A, 512, &a);
	assert_true(a.len > 0);
	assert_true(a.m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(a.m.hdr.ancount, 0);
	assert_int_equal(a.len, (ssize_t)a.m.question_end);
	/* Not even the header and question. */
	ask_in(h, "many.example", DNS_TYPE_A, DNS_HEADER_LEN, &a);
	assert_int_equal(a.len, -ENOSPC);
	dns_hosts_free(h);
}

static void test_more_records_than_a_message_holds_sets_tc(void **state)
{
	(void)state;
	/* 70,000 addresses for one name: more records than ANCOUNT counts,
	 * and far more than a DNS message (65,535 octets, 16 or more a
	 * record) holds.  Written here: 1.3 MB is no file to keep. */
	char path[] = "/tmp/test_dns_hosts.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "w");
	assert_non_null(fp);
	for (unsigned i = 0; i < 70000; i++)
		fprintf(fp, "10.%u.%u.%u huge.example\n", i >> 16, (i >> 8) & 255,
			i & 255);
	assert_int_equal(fclose(fp), 0);
	struct dns_hosts *h = load(path);
	unlink(path);
	struct answer a;
	ask_in(h, "huge.example", DNS_TYPE_A, DNS_MSG_MAX, &a);
	assert_true(a.len > 0);
	assert_true(a.m.hdr.flags & DNS_FLAG_TC);
	assert_int_equal(a.m.hdr.ancount, 0);
	dns_hosts_free(h);
}

static void test_any_answers_every_record(void **state)
{
	(void)state;
	struct dns_hosts *h = load_good();
	struct answer a;
	ask(h, "www.example.test", TYPE_ANY, &a);
	assert_int_equal(dns_flags_rcode(a.m.hdr.flags), DNS_RCODE_NOERROR);
	assert_int_equal(a.m.hdr.ancount, 3);
	assert_int_equal(type_of(&a, 0), DNS_TYPE_A);
	assert_int_equal(type_of(&a, 1), DNS_TYPE_A);
	assert_int_equal(type_of(&a, 2), DNS_TYPE_AAAA);
	ask(h, "localhost", TYPE_ANY, &a);
	assert_int_equal(a.m.hdr.ancount, 2);
	ask(h, "10.2.0.192.in-addr.arpa", TYPE_ANY, &a);
	assert_int_equal(a.m.hdr.ancount, 1);
	assert_int_equal(type_of(&a, 0), DNS_TYPE_PTR);
	ask(h, "nowhere.test", TYPE_ANY, &a);
	assert_int_equal(a.len, 0);
	dns_hosts_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_good_file),
		cmocka_unit_test(test_bad_lines_reported_with_file_line),
		cmocka_unit_test(test_missing_file_names_it),
		cmocka_unit_test(test_a_records_case_insensitive),
		cmocka_unit_test(test_aaaa_record),
		cmocka_unit_test(test_ptr_v4_and_v6_first_name_wins),
		cmocka_unit_test(test_nodata_for_known_name),
		cmocka_unit_test(test_unknown_name_and_class_go_upstream),
		cmocka_unit_test(test_duplicates_answered_once),
		cmocka_unit_test(test_every_record_answered),
		cmocka_unit_test(test_too_big_for_buffer_sets_tc),
		cmocka_unit_test(test_more_records_than_a_message_holds_sets_tc),
		cmocka_unit_test(test_any_answers_every_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
