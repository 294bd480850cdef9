/*
 * dns_msg_fixture: DNS messages built by hand for the forwarder's unit
 * tests, queries as a client sends them and answers as an upstream does.
 */
#ifndef BERTH_TEST_DNS_MSG_FIXTURE_H
#define BERTH_TEST_DNS_MSG_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "dns/wire.h"

static inline size_t put_name(uint8_t *buf, const char *name)
{
	ssize_t n = dns_name_from_text(name, buf, DNS_NAME_MAX);
	assert_true(n > 0);
	return (size_t)n;
}

static inline size_t put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
	return 2;
}

/* An OPT RR advertising udp_size, no options. */
static inline size_t put_opt(uint8_t *p, uint16_t udp_size)
{
	p[0] = 0;
	put16(p + 1, DNS_TYPE_OPT);
	put16(p + 3, udp_size);
	memset(p + 5, 0, 6);
	return 11;
}

/* A query with RD set; opt_size 0 means no OPT. */
static inline size_t make_query(uint8_t *buf, uint16_t id, const char *name,
				uint16_t type, uint16_t qclass, uint16_t opt_size)
{
	memset(buf, 0, DNS_HEADER_LEN);
	put16(buf, id);
	put16(buf + 2, DNS_FLAG_RD);
	put16(buf + 4, 1);
	size_t pos = DNS_HEADER_LEN + put_name(buf + DNS_HEADER_LEN, name);
	pos += put16(buf + pos, type);
	pos += put16(buf + pos, qclass);
	if (opt_size) {
		put16(buf + 10, 1);
		pos += put_opt(buf + pos, opt_size);
	}
	return pos;
}

/*
 * An answer to the query q (as the upstream received it): its header and
 * question, QR and RA set plus extra flags, nans A records of 192.0.2.N,
 * and an OPT of opt_size when non-zero.
 */
static inline size_t make_reply(uint8_t *buf, const uint8_t *q, size_t qlen,
				unsigned nans, uint16_t opt_size, uint16_t extra_flags)
{
	struct dns_msg m;
	assert_int_equal(dns_parse_query(&m, q, qlen), DNS_OK);
	memcpy(buf, q, m.question_end);
	put16(buf + 2, (uint16_t)(m.hdr.flags | DNS_FLAG_QR | DNS_FLAG_RA | extra_flags));
	put16(buf + 6, (uint16_t)nans);
	put16(buf + 8, 0);
	put16(buf + 10, opt_size ? 1 : 0);
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
	if (opt_size)
		pos += put_opt(buf + pos, opt_size);
	return pos;
}

#endif
