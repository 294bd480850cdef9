/*
 * libFuzzer harness for dns/wire.
 *
 * Every input is parsed as a DNS message; beyond "no crash, no sanitizer
 * report", the harness checks properties that must hold for any input: a
 * parse result is one of the documented codes, a parsed question name
 * equals itself and prints, every response built from a message parses back
 * with the same question, 0x20 and the EDNS clamp keep the message valid.
 * The input is also tried as a text host name.  A broken property aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"

#define CHECK(cond)                    \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

static uint32_t counter_random(void *ctx)
{
	uint32_t *state = ctx;
	*state = *state * 1103515245u + 12345u;
	return *state;
}

/* Parse out[0..n) back and check it answers m's question. */
static void check_response(const struct dns_msg *m, const uint8_t *out,
			   ssize_t n)
{
	struct dns_msg r;
	if (n < 0)
		return;
	CHECK(dns_parse(&r, out, (size_t)n) == DNS_OK);
	CHECK(r.hdr.id == m->hdr.id);
	CHECK(r.hdr.flags & DNS_FLAG_QR);
	CHECK(r.has_question == m->has_question);
	if (m->has_question)
		CHECK(dns_question_matches(m, &r, true));
}

/* Properties of a message that parsed completely. */
static void check_valid(const uint8_t *data, size_t size,
			const struct dns_msg *m)
{
	uint8_t out[2048];
	char text[4 * DNS_NAME_MAX + 2];

	if (m->has_question) {
		CHECK(dns_name_to_text(data, size, m->qname_off, text,
				       sizeof(text)) > 0);
		CHECK(dns_name_equal_exact(data, size, m->qname_off, data, size,
					   m->qname_off));
	}
	const uint8_t addr[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	const struct dns_local_rr rrs[] = {
		{ .type = DNS_TYPE_A, .ttl = 1, .addr = addr },
		{ .type = DNS_TYPE_PTR, .ttl = 2, .ptr_name = "h.example" },
	};
	size_t limit = dns_udp_limit(m);
	CHECK(limit >= DNS_UDP_MIN);
	if (limit > sizeof(out))
		limit = sizeof(out);
	if (m->has_question)
		check_response(m, out, dns_build_local_answer(out, limit, m, rrs,
							      2, 1232));

	/* Rewrites in place work on an exact-size copy, as a forwarder's. */
	uint8_t *copy = malloc(size);
	CHECK(copy != NULL);
	memcpy(copy, data, size);
	struct dns_msg c;
	CHECK(dns_parse(&c, copy, size) == DNS_OK);
	uint32_t seed = (uint32_t)size;
	if (c.has_question) {
		CHECK(dns_randomize_case(copy, &c, counter_random, &seed) >= 0);
		struct dns_msg after;
		CHECK(dns_parse(&after, copy, size) == DNS_OK);
		CHECK(dns_question_matches(m, &after, false));
	}
	if (c.has_opt) {
		uint8_t *before = malloc(size);
		CHECK(before != NULL);
		memcpy(before, copy, size);
		int rc = dns_opt_clamp_udp_size(copy, &c, 1232);
		CHECK(rc == 0 || rc == -EINVAL);
		struct dns_msg after;
		CHECK(dns_parse(&after, copy, size) == DNS_OK);
		if (rc == 0)
			CHECK(after.udp_size >= DNS_UDP_MIN &&
			      after.udp_size <= 1232);
		else /* a later name reads the OPT's CLASS: left alone */
			CHECK(memcmp(before, copy, size) == 0);
		free(before);
	}
	free(copy);
}

/* The input as a host name in text form. */
static void check_text(const uint8_t *data, size_t size)
{
	char text[300];
	uint8_t wire[DNS_NAME_MAX];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	ssize_t len = dns_name_from_text(text, wire, sizeof(wire));
	if (len < 0)
		return;
	size_t end, name_len;
	CHECK(dns_name_check(wire, (size_t)len, 0, &end, &name_len) == DNS_OK);
	CHECK(end == (size_t)len && name_len == (size_t)len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_msg m;
	int rc = dns_parse(&m, data, size);
	CHECK(rc <= DNS_OK && rc >= DNS_ERR_EDNS);
	CHECK(dns_strerror(rc) != NULL);
	CHECK((rc == DNS_OK) == m.valid);
	CHECK(m.header_ok == (size >= DNS_HEADER_LEN && size <= DNS_MSG_MAX));
	if (m.valid)
		check_valid(data, size, &m);

	struct dns_msg q;
	rc = dns_parse_query(&q, data, size);
	CHECK(rc <= DNS_OK && rc >= DNS_ERR_NOT_QUERY);
	if (q.header_ok && rc != DNS_ERR_NOT_QUERY) {
		uint8_t out[1024];
		check_response(&q, out, dns_build_error(out, sizeof(out), &q,
							DNS_RCODE_FORMERR, 1232));
	}
	check_text(data, size);
	return 0;
}
