/*
 * dns/wire: parse, compare and build DNS messages without allocating.
 *
 * Every read is bounds-checked against the message length before it
 * happens, so a truncated or hostile datagram costs at most one pass over its
 * own bytes and always ends in a clean error code.
 */
#include "dns/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/rnd.h"

/* Smallest question (root name, QTYPE, QCLASS) and smallest RR. */
#define MIN_QUESTION_LEN 5u
#define MIN_RR_LEN 11u
#define RR_FIXED_LEN 10u /* TYPE, CLASS, TTL, RDLENGTH after the owner */
#define OPT_RR_LEN 11u   /* root owner + fixed part, no options */
#define QNAME_OFF DNS_HEADER_LEN

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/*
 * Reads the labels of one name, following compression pointers.  Each
 * pointer must land strictly below the lowest offset this name has read from
 * so far (the floor), so every jump moves towards the start of the message
 * and a loop is impossible; the jump limit additionally bounds long chains of
 * pointers to pointers.  What a pointer leads to must also end before the
 * pointer itself (the ceiling): it points to a prior occurrence of a name
 * (RFC 1035 4.1.4), not into bytes past it, such as the fixed fields of a
 * later record that a forwarder rewrites in place.
 */
struct name_cursor {
	const uint8_t *buf;
	size_t len;
	size_t pos;   /* next octet to read */
	size_t floor; /* a pointer must target below this */
	size_t ceil;  /* octets read must lie below this */
	size_t end;   /* just past the name's in-place octets */
	size_t total; /* uncompressed octets read so far */
	unsigned jumps;
};

static void cursor_init(struct name_cursor *c, const uint8_t *buf, size_t len,
			size_t off)
{
	*c = (struct name_cursor){ .buf = buf, .len = len, .pos = off,
				   .floor = off, .ceil = len };
}

/*
 * Advance to the next label: stores its octets in *label / *lablen and
 * returns 1, returns 0 after the root label, or a negative dns_err.
 */
static int cursor_next(struct name_cursor *c, const uint8_t **label,
		       size_t *lablen)
{
	for (;;) {
		if (c->pos >= c->len)
			return DNS_ERR_TRUNCATED;
		if (c->pos >= c->ceil)
			return DNS_ERR_NAME; /* ran into the pointer that led here */
		uint8_t b = c->buf[c->pos];
		if ((b & 0xC0) == 0) {
			if (c->pos + 1 + b > c->len)
				return DNS_ERR_TRUNCATED;
			if (c->pos + 1 + b > c->ceil)
				return DNS_ERR_NAME;
			if (c->total + 1 + b > DNS_NAME_MAX)
				return DNS_ERR_NAME;
			c->total += 1u + b;
			*label = c->buf + c->pos + 1;
			*lablen = b;
			c->pos += 1u + b;
			if (c->jumps == 0)
				c->end = c->pos;
			return b == 0 ? 0 : 1;
		}
		/* 0x40 (extended label, RFC 6891) and 0x80 are reserved. */
		if ((b & 0xC0) != 0xC0)
			return DNS_ERR_NAME;
		if (c->pos + 2 > c->len)
			return DNS_ERR_TRUNCATED;
		if (c->pos + 2 > c->ceil)
			return DNS_ERR_NAME;
		size_t target = (size_t)(b & 0x3F) << 8 | c->buf[c->pos + 1];
		if (c->jumps == 0)
			c->end = c->pos + 2;
		if (target > c->pos)
			return DNS_ERR_NAME; /* forward pointer */
		if (target >= c->floor)
			return DNS_ERR_LOOP; /* back into this name itself */
		if (target < DNS_HEADER_LEN)
			return DNS_ERR_NAME; /* into the header */
		if (++c->jumps > DNS_PTR_JUMPS_MAX)
			return DNS_ERR_LOOP;
		c->floor = target;
		c->ceil = c->pos;
		c->pos = target;
	}
}

int dns_name_check(const uint8_t *buf, size_t len, size_t off, size_t *end,
		   size_t *name_len)
{
	struct name_cursor c;
	const uint8_t *label;
	size_t lablen;
	int rc;

	cursor_init(&c, buf, len, off);
	while ((rc = cursor_next(&c, &label, &lablen)) > 0)
		;
	if (rc < 0)
		return rc;
	if (end)
		*end = c.end;
	if (name_len)
		*name_len = c.total;
	return DNS_OK;
}

static uint8_t ascii_lower(uint8_t ch)
{
	return ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch | 0x20) : ch;
}

static bool names_equal(const uint8_t *a, size_t alen, size_t aoff,
			const uint8_t *b, size_t blen, size_t boff, bool exact)
{
	struct name_cursor ca, cb;
	cursor_init(&ca, a, alen, aoff);
	cursor_init(&cb, b, blen, boff);
	for (;;) {
		const uint8_t *la, *lb;
		size_t na, nb;
		int ra = cursor_next(&ca, &la, &na);
		int rb = cursor_next(&cb, &lb, &nb);
		if (ra < 0 || rb < 0 || ra != rb || na != nb)
			return false;
		for (size_t i = 0; i < na; i++) {
			uint8_t x = exact ? la[i] : ascii_lower(la[i]);
			uint8_t y = exact ? lb[i] : ascii_lower(lb[i]);
			if (x != y)
				return false;
		}
		if (ra == 0)
			return true;
	}
}

bool dns_name_equal(const uint8_t *a, size_t alen, size_t aoff,
		    const uint8_t *b, size_t blen, size_t boff)
{
	return names_equal(a, alen, aoff, b, blen, boff, false);
}

bool dns_name_equal_exact(const uint8_t *a, size_t alen, size_t aoff,
			  const uint8_t *b, size_t blen, size_t boff)
{
	return names_equal(a, alen, aoff, b, blen, boff, true);
}

const char *dns_strerror(int err)
{
	switch (err) {
	case DNS_OK: return "ok";
	case DNS_ERR_TRUNCATED: return "truncated message";
	case DNS_ERR_NAME: return "malformed name";
	case DNS_ERR_LOOP: return "compression pointer loop";
	case DNS_ERR_COUNTS: return "section counts do not match the message";
	case DNS_ERR_OVERSIZE: return "message too large";
	case DNS_ERR_EDNS: return "malformed EDNS OPT record";
	case DNS_ERR_NOT_QUERY: return "not a query (QR set)";
	default: return "unknown DNS error";
	}
}

/* Check the options inside OPT RDATA: each is code, length, value. */
static bool opt_options_ok(const uint8_t *p, size_t rdlen)
{
	size_t off = 0;
	while (off < rdlen) {
		if (rdlen - off < 4)
			return false;
		size_t olen = get16(p + off + 2);
		if (rdlen - off - 4 < olen)
			return false;
		off += 4 + olen;
	}
	return true;
}

/* Parse the resource record at *pos of section sect (0 answer .. 2 additional). */
static int parse_rr(struct dns_msg *m, size_t *pos, unsigned sect)
{
	size_t start = *pos, after_name, name_len;
	int rc = dns_name_check(m->buf, m->len, start, &after_name, &name_len);
	if (rc < 0)
		return rc;
	if (m->len - after_name < RR_FIXED_LEN)
		return DNS_ERR_TRUNCATED;
	const uint8_t *f = m->buf + after_name;
	uint16_t type = get16(f), rdlen = get16(f + 8);
	size_t rdata = after_name + RR_FIXED_LEN;
	if (m->len - rdata < rdlen)
		return DNS_ERR_TRUNCATED;
	*pos = rdata + rdlen;
	if (type != DNS_TYPE_OPT)
		return DNS_OK;
	/* RFC 6891 6.1.1: one OPT, owned by the root, in the additional
	 * section.  The root may come as a pointer to a root octet: whoever
	 * rewrites the OPT finds its fixed part from opt_rdata_off. */
	if (sect != 2 || m->has_opt || name_len != 1 ||
	    !opt_options_ok(m->buf + rdata, rdlen))
		return DNS_ERR_EDNS;
	uint32_t ttl = get32(f + 4);
	m->has_opt = true;
	m->opt_off = start;
	m->opt_len = *pos - start;
	m->opt_rdata_off = rdata;
	m->opt_rdlen = rdlen;
	m->udp_size = get16(f + 2);
	m->ext_rcode = (uint8_t)(ttl >> 24);
	m->edns_version = (uint8_t)(ttl >> 16);
	m->edns_flags = (uint16_t)ttl;
	return DNS_OK;
}

int dns_parse(struct dns_msg *m, const uint8_t *buf, size_t len)
{
	*m = (struct dns_msg){ .buf = buf, .len = len };
	if (len > DNS_MSG_MAX)
		return DNS_ERR_OVERSIZE;
	if (len < DNS_HEADER_LEN)
		return DNS_ERR_TRUNCATED;
	m->hdr = (struct dns_header){
		.id = get16(buf), .flags = get16(buf + 2),
		.qdcount = get16(buf + 4), .ancount = get16(buf + 6),
		.nscount = get16(buf + 8), .arcount = get16(buf + 10),
	};
	m->header_ok = true;

	/*
	 * Counts that no 64 KiB message could hold are a lie, not a short
	 * read: say so before walking.  Counts merely larger than this
	 * message end in DNS_ERR_TRUNCATED where the bytes run out.
	 */
	uint16_t counts[3] = { m->hdr.ancount, m->hdr.nscount, m->hdr.arcount };
	size_t need = (size_t)m->hdr.qdcount * MIN_QUESTION_LEN +
		      ((size_t)counts[0] + counts[1] + counts[2]) * MIN_RR_LEN;
	if (need > DNS_MSG_MAX - DNS_HEADER_LEN)
		return DNS_ERR_OVERSIZE;

	size_t pos = DNS_HEADER_LEN;
	for (unsigned i = 0; i < m->hdr.qdcount; i++) {
		size_t end, name_len;
		int rc = dns_name_check(buf, len, pos, &end, &name_len);
		if (rc < 0)
			return rc;
		if (len - end < 4)
			return DNS_ERR_TRUNCATED;
		if (i == 0) {
			m->has_question = true;
			m->qname_off = pos;
			m->qname_wire_len = end - pos;
			m->qname_len = name_len;
			m->qtype = get16(buf + end);
			m->qclass = get16(buf + end + 2);
		}
		pos = end + 4;
	}
	m->question_end = pos;

	for (unsigned s = 0; s < 3; s++) {
		for (unsigned i = 0; i < counts[s]; i++) {
			int rc = parse_rr(m, &pos, s);
			if (rc < 0)
				return rc;
		}
	}
	if (pos != len)
		return DNS_ERR_COUNTS; /* bytes no record accounts for */
	m->valid = true;
	return DNS_OK;
}

int dns_parse_query(struct dns_msg *m, const uint8_t *buf, size_t len)
{
	int rc = dns_parse(m, buf, len);
	/*
	 * QR first: a response must never be answered, even a broken one,
	 * or two servers could bounce FORMERRs at each other forever.
	 */
	if (m->header_ok && (m->hdr.flags & DNS_FLAG_QR))
		return DNS_ERR_NOT_QUERY;
	if (m->header_ok && m->hdr.qdcount != 1)
		return DNS_ERR_COUNTS;
	return rc;
}

unsigned dns_msg_rcode(const struct dns_msg *m)
{
	unsigned rc = dns_flags_rcode(m->hdr.flags);
	return m->has_opt ? (unsigned)m->ext_rcode << 4 | rc : rc;
}

bool dns_msg_do(const struct dns_msg *m)
{
	return m->has_opt && (m->edns_flags & DNS_EDNS_FLAG_DO);
}

bool dns_question_matches(const struct dns_msg *q, const struct dns_msg *resp,
			  bool exact_case)
{
	if (!q->has_question || !resp->has_question || q->qtype != resp->qtype ||
	    q->qclass != resp->qclass)
		return false;
	return names_equal(q->buf, q->len, q->qname_off, resp->buf, resp->len,
			   resp->qname_off, exact_case);
}

/* Append n octets of src to out at *pos, or fail when they do not fit. */
static bool append(char *out, size_t outsize, size_t *pos, const char *src,
		   size_t n)
{
	if (outsize - *pos <= n)
		return false; /* keep room for the NUL */
	memcpy(out + *pos, src, n);
	*pos += n;
	out[*pos] = '\0';
	return true;
}

static bool append_octet(char *out, size_t outsize, size_t *pos, uint8_t ch)
{
	char esc[5];
	if (ch == '.' || ch == '\\') {
		esc[0] = '\\';
		esc[1] = (char)ch;
		return append(out, outsize, pos, esc, 2);
	}
	if (ch > 0x20 && ch < 0x7F) {
		esc[0] = (char)ch;
		return append(out, outsize, pos, esc, 1);
	}
	int n = snprintf(esc, sizeof(esc), "\\%03u", ch);
	return append(out, outsize, pos, esc, (size_t)n);
}

ssize_t dns_name_to_text(const uint8_t *buf, size_t len, size_t off,
			 char *out, size_t outsize)
{
	struct name_cursor c;
	const uint8_t *label;
	size_t lablen, pos = 0;
	int rc;

	out[0] = '\0';
	cursor_init(&c, buf, len, off);
	while ((rc = cursor_next(&c, &label, &lablen)) > 0) {
		for (size_t i = 0; i < lablen; i++)
			if (!append_octet(out, outsize, &pos, label[i]))
				return -ENOSPC;
		if (!append(out, outsize, &pos, ".", 1))
			return -ENOSPC;
	}
	if (rc < 0)
		return -EINVAL;
	if (pos == 0 && !append(out, outsize, &pos, ".", 1))
		return -ENOSPC;
	return (ssize_t)pos;
}

ssize_t dns_name_from_text(const char *text, uint8_t *out, size_t outsize)
{
	size_t pos = 0;
	const char *p = text;

	if (strcmp(text, ".") != 0) {
		while (*p != '\0') {
			size_t n = strcspn(p, ".");
			if (n == 0 || n > DNS_LABEL_MAX || memchr(p, '\\', n))
				return -EINVAL;
			if (pos + 1 + n + 1 > DNS_NAME_MAX)
				return -EINVAL;
			if (outsize - pos < 1 + n)
				return -ENOSPC;
			out[pos] = (uint8_t)n;
			memcpy(out + pos + 1, p, n);
			pos += 1 + n;
			p += n;
			if (*p == '.')
				p++;
		}
		if (pos == 0)
			return -EINVAL; /* the empty string */
	}
	if (outsize - pos < 1)
		return -ENOSPC;
	out[pos++] = 0;
	return (ssize_t)pos;
}

uint16_t dns_get_id(const uint8_t *buf)
{
	return get16(buf);
}

uint16_t dns_get_flags(const uint8_t *buf)
{
	return get16(buf + 2);
}

void dns_set_id(uint8_t *buf, uint16_t id)
{
	put16(buf, id);
}

void dns_set_flags(uint8_t *buf, uint16_t flags)
{
	put16(buf + 2, flags);
}

void dns_set_rcode(uint8_t *buf, unsigned rcode)
{
	uint16_t flags = get16(buf + 2) & (uint16_t)~DNS_RCODE_MASK;
	put16(buf + 2, (uint16_t)(flags | (rcode & DNS_RCODE_MASK)));
}

static uint32_t default_random(void *ctx)
{
	(void)ctx;
	return rnd_u32();
}

int dns_randomize_case(uint8_t *buf, const struct dns_msg *m, dns_random_fn rnd,
		       void *ctx)
{
	if (!m->has_question)
		return -EINVAL;
	if (!rnd)
		rnd = default_random;
	/*
	 * The first name of a message cannot be compressed (a pointer would
	 * have to target the header), so the whole name lies in place.
	 */
	uint8_t *p = buf + m->qname_off;
	uint8_t *end = p + m->qname_wire_len;
	uint32_t bits = 0;
	int letters = 0;
	while (p < end && *p != 0) {
		uint8_t *label_end = p + 1 + *p;
		for (p++; p < label_end; p++) {
			uint8_t lower = ascii_lower(*p);
			if (lower < 'a' || lower > 'z')
				continue;
			if (letters % 32 == 0)
				bits = rnd(ctx);
			*p = (bits & 1) ? (uint8_t)(lower & ~0x20) : lower;
			bits >>= 1;
			letters++;
		}
	}
	return letters;
}

uint16_t dns_udp_limit(const struct dns_msg *q)
{
	if (!q->has_opt || q->udp_size < DNS_UDP_MIN)
		return DNS_UDP_MIN;
	return q->udp_size;
}

int dns_opt_clamp_udp_size(uint8_t *buf, struct dns_msg *m, uint16_t max)
{
	if (!m->has_opt)
		return -ENOENT;
	uint16_t v = m->udp_size < max ? m->udp_size : max;
	if (v < DNS_UDP_MIN)
		v = DNS_UDP_MIN;
	/* CLASS sits before TTL (4) and RDLENGTH (2) ahead of the RDATA. */
	uint8_t *cls = buf + m->opt_rdata_off - 8;
	const uint8_t was[2] = { cls[0], cls[1] };
	put16(cls, v);
	/* A name before the OPT never reads it (pointers lead back, to names
	 * that end before them); one after it may, and records after the OPT
	 * are rare (TSIG): check the message only then. */
	struct dns_msg again;
	if (m->opt_off + m->opt_len < m->len &&
	    dns_parse(&again, buf, m->len) != DNS_OK) {
		cls[0] = was[0];
		cls[1] = was[1];
		return -EINVAL;
	}
	m->udp_size = v;
	return 0;
}

/*
 * Write the start of a response to q: header with the given flags and
 * counts, then q's question.  Returns the length written, or 0 when out is
 * too small.
 */
static size_t put_head(uint8_t *out, size_t outsize, const struct dns_msg *q,
		       uint16_t flags, uint16_t ancount, uint16_t arcount)
{
	size_t qlen = q->has_question ? q->qname_wire_len + 4 : 0;
	if (outsize < DNS_HEADER_LEN + qlen)
		return 0;
	put16(out, q->hdr.id);
	put16(out + 2, flags);
	put16(out + 4, q->has_question ? 1 : 0);
	put16(out + 6, ancount);
	put16(out + 8, 0);
	put16(out + 10, arcount);
	if (qlen)
		memcpy(out + DNS_HEADER_LEN, q->buf + q->qname_off, qlen);
	return DNS_HEADER_LEN + qlen;
}

/* Flags a response inherits from its query: opcode, RD, CD. */
static uint16_t echoed_flags(const struct dns_msg *q)
{
	return q->hdr.flags & (DNS_OPCODE_MASK | DNS_FLAG_RD | DNS_FLAG_CD);
}

static void put_opt(uint8_t *p, uint16_t udp_size, unsigned rcode,
		    const struct dns_msg *q)
{
	p[0] = 0; /* root owner */
	put16(p + 1, DNS_TYPE_OPT);
	put16(p + 3, udp_size);
	uint32_t ttl = (uint32_t)(rcode >> 4) << 24 |
		       (dns_msg_do(q) ? DNS_EDNS_FLAG_DO : 0u);
	put32(p + 5, ttl);
	put16(p + 9, 0);
}

ssize_t dns_build_error(uint8_t *out, size_t outsize, const struct dns_msg *q,
			unsigned rcode, uint16_t udp_size)
{
	bool opt = udp_size != 0 && q->valid && q->has_opt;
	if (!q->header_ok || rcode > 0xFFF || (rcode > 15 && !opt))
		return -EINVAL;
	uint16_t flags = (uint16_t)(DNS_FLAG_QR | echoed_flags(q) |
				    (rcode & DNS_RCODE_MASK));
	size_t pos = put_head(out, outsize, q, flags, 0, opt ? 1 : 0);
	if (pos == 0)
		return -ENOSPC;
	if (opt) {
		if (outsize - pos < OPT_RR_LEN)
			return -ENOSPC;
		put_opt(out + pos, udp_size, rcode, q);
		pos += OPT_RR_LEN;
	}
	return (ssize_t)pos;
}

/* RDATA of one local record into rdata[], or -EINVAL. */
static ssize_t local_rdata(const struct dns_local_rr *rr, uint8_t *rdata,
			   size_t size)
{
	switch (rr->type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA: {
		size_t n = rr->type == DNS_TYPE_A ? 4 : 16;
		if (!rr->addr)
			return -EINVAL;
		memcpy(rdata, rr->addr, n);
		return (ssize_t)n;
	}
	case DNS_TYPE_PTR:
		if (!rr->ptr_name)
			return -EINVAL;
		return dns_name_from_text(rr->ptr_name, rdata, size);
	default:
		return -EINVAL;
	}
}

ssize_t dns_build_local_answer(uint8_t *out, size_t outsize,
			       const struct dns_msg *q,
			       const struct dns_local_rr *rrs, size_t n,
			       uint16_t udp_size)
{
	uint8_t rdata[DNS_NAME_MAX];
	size_t answers_len = 0;

	if (!q->header_ok || !q->has_question || n > UINT16_MAX)
		return -EINVAL;
	/* Validate and size every record before writing anything. */
	for (size_t i = 0; i < n; i++) {
		ssize_t rdlen = local_rdata(&rrs[i], rdata, sizeof(rdata));
		if (rdlen < 0)
			return -EINVAL;
		answers_len += 2 + RR_FIXED_LEN + (size_t)rdlen;
	}
	bool opt = udp_size != 0 && q->valid && q->has_opt;
	size_t fixed = DNS_HEADER_LEN + q->qname_wire_len + 4 +
		       (opt ? OPT_RR_LEN : 0);
	if (outsize < fixed)
		return -ENOSPC;
	bool fits = outsize - fixed >= answers_len;
	uint16_t flags = (uint16_t)(DNS_FLAG_QR | DNS_FLAG_AA | DNS_FLAG_RA |
				    echoed_flags(q) | (fits ? 0 : DNS_FLAG_TC));
	size_t pos = put_head(out, outsize, q, flags,
			      fits ? (uint16_t)n : 0, opt ? 1 : 0);
	for (size_t i = 0; fits && i < n; i++) {
		ssize_t rdlen = local_rdata(&rrs[i], rdata, sizeof(rdata));
		uint8_t *p = out + pos;
		/* The owner is the question name, always at offset 12. */
		put16(p, (uint16_t)(0xC000u | QNAME_OFF));
		put16(p + 2, rrs[i].type);
		put16(p + 4, DNS_CLASS_IN);
		put32(p + 6, rrs[i].ttl);
		put16(p + 10, (uint16_t)rdlen);
		memcpy(p + 12, rdata, (size_t)rdlen);
		pos += 12 + (size_t)rdlen;
	}
	if (opt) {
		put_opt(out + pos, udp_size, DNS_RCODE_NOERROR, q);
		pos += OPT_RR_LEN;
	}
	return (ssize_t)pos;
}
