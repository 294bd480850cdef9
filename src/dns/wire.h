/*
 * dns/wire: the DNS message layer of the forwarder (RFC 1035, RFC 6891).
 *
 * Parsing is zero-copy: struct dns_msg records offsets into the caller's
 * buffer and never allocates, so a forwarder can validate a datagram, find its
 * question and its OPT record, and then rewrite the ID, the question's case or
 * the advertised payload size in place before relaying the same bytes.
 *
 * Everything in this API is host byte order; the conversion to and from
 * network order happens only where bytes are read from or written to a
 * message.  Offsets are byte offsets from the start of the message.
 */
#ifndef BERTH_DNS_WIRE_H
#define BERTH_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DNS_HEADER_LEN 12u
#define DNS_MSG_MAX 65535u
#define DNS_LABEL_MAX 63u
#define DNS_NAME_MAX 255u     /* uncompressed wire length, root octet included */
#define DNS_PTR_JUMPS_MAX 128u /* compression pointers followed per name */
#define DNS_UDP_MIN 512u      /* RFC 1035 limit; RFC 6891 floor for OPT */

/* Header flag bits, host order, as in the 16 bits after the ID. */
#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_AA 0x0400u
#define DNS_FLAG_TC 0x0200u
#define DNS_FLAG_RD 0x0100u
#define DNS_FLAG_RA 0x0080u
#define DNS_FLAG_AD 0x0020u
#define DNS_FLAG_CD 0x0010u
#define DNS_OPCODE_SHIFT 11u
#define DNS_OPCODE_MASK 0x7800u
#define DNS_RCODE_MASK 0x000Fu

/* The DO bit inside the 16 flag bits of the OPT TTL (RFC 3225). */
#define DNS_EDNS_FLAG_DO 0x8000u

enum dns_opcode { DNS_OPCODE_QUERY = 0 };

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16, /* needs an OPT record to carry its upper bits */
	DNS_RCODE_BADCOOKIE = 23, /* RFC 7873; an OPT record, too */
};

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_IXFR = 251,
	DNS_TYPE_AXFR = 252,
};

#define DNS_CLASS_IN 1u

/*
 * Why a message was rejected.  These are not errno values: each kind tells
 * the forwarder something different.  When the message is at least
 * DNS_HEADER_LEN long (and not DNS_ERR_OVERSIZE by length) the header was
 * readable, so a query can be answered with FORMERR; otherwise it is dropped.
 * DNS_ERR_NOT_QUERY means "this is a response": never answer it, so two
 * servers cannot ping-pong errors at each other.
 */
enum dns_err {
	DNS_OK = 0,
	DNS_ERR_TRUNCATED = -1, /* the message ends inside a field or record */
	DNS_ERR_NAME = -2,      /* bad label type, label/name too long, bad pointer */
	DNS_ERR_LOOP = -3,      /* compression pointers loop or chain too long */
	DNS_ERR_COUNTS = -4,    /* QDCOUNT wrong, or bytes left after the last record */
	DNS_ERR_OVERSIZE = -5,  /* over 65535 octets, or counts no message can hold */
	DNS_ERR_EDNS = -6,      /* OPT misplaced, duplicated, not at root, bad options */
	DNS_ERR_NOT_QUERY = -7, /* QR=1 where a query was expected */
};

struct dns_header {
	uint16_t id;    /* host order */
	uint16_t flags; /* host order: QR, OPCODE, AA, TC, RD, RA, Z, AD, CD, RCODE */
	uint16_t qdcount;
	uint16_t ancount;
	uint16_t nscount;
	uint16_t arcount;
};

/*
 * A parsed message: offsets into the caller's buffer, which it must keep
 * alive and unchanged (apart from the in-place rewrites below) while the
 * struct is used.  The struct is public because the forwarder keeps one per
 * packet on its stack; nothing in it needs freeing.
 */
struct dns_msg {
	const uint8_t *buf;  /* borrowed: the message */
	size_t len;          /* its length */
	bool header_ok;      /* hdr is valid (len >= DNS_HEADER_LEN) */
	bool valid;          /* the whole message parsed */
	struct dns_header hdr;

	bool has_question;   /* the first question parsed (qdcount >= 1) */
	size_t qname_off;    /* where the question name starts */
	size_t qname_wire_len; /* octets it takes in place */
	size_t qname_len;    /* uncompressed length, root octet included */
	uint16_t qtype;
	uint16_t qclass;
	size_t question_end; /* offset just past the last question */

	bool has_opt;        /* an OPT RR was found in the additional section */
	size_t opt_off;      /* the OPT RR: owner name .. end of RDATA */
	size_t opt_len;
	size_t opt_rdata_off; /* its options */
	uint16_t opt_rdlen;
	uint16_t udp_size;   /* advertised payload size, as sent (may be < 512) */
	uint8_t ext_rcode;   /* upper 8 bits of the 12-bit RCODE */
	uint8_t edns_version;
	uint16_t edns_flags; /* DO and the Z bits */
};

/* The opcode and the low 4 bits of the RCODE of host-order header flags. */
static inline unsigned dns_flags_opcode(uint16_t flags)
{
	return (flags & DNS_OPCODE_MASK) >> DNS_OPCODE_SHIFT;
}

static inline unsigned dns_flags_rcode(uint16_t flags)
{
	return flags & DNS_RCODE_MASK;
}

/* The full 12-bit RCODE of a parsed message, OPT extension included. */
unsigned dns_msg_rcode(const struct dns_msg *m);

/* True when a parsed message carries the EDNS DO bit. */
bool dns_msg_do(const struct dns_msg *m);

/* A one-line description of a dns_err value, e.g. "truncated message". */
const char *dns_strerror(int err);

/*
 * Parse and validate the whole message buf[0..len): header, every question,
 * and every resource record of the three sections (owner names validated,
 * RDATA skipped by length).  The first question and the OPT RR are recorded
 * in *m.  Pointers in names must point strictly backwards, before every part
 * of the name already read, and not into the header.
 *
 * m (caller-owned) is always filled as far as parsing got: m->header_ok says
 * whether the header can be trusted for an error reply.  buf is borrowed and
 * must outlive m.  Returns DNS_OK or a negative enum dns_err.
 */
int dns_parse(struct dns_msg *m, const uint8_t *buf, size_t len);

/*
 * dns_parse, then the rules for a query a forwarder accepts: QR=0
 * (DNS_ERR_NOT_QUERY) and exactly one question (DNS_ERR_COUNTS).
 */
int dns_parse_query(struct dns_msg *m, const uint8_t *buf, size_t len);

/*
 * Validate the name at buf[off..] inside the message buf[0..len).  On
 * success stores the offset just past its in-place octets in *end and its
 * uncompressed length in *name_len (either may be NULL).  Returns DNS_OK or a
 * negative enum dns_err.  A flat name (no pointers) at offset 0 of its own
 * buffer is accepted too.
 */
int dns_name_check(const uint8_t *buf, size_t len, size_t off, size_t *end,
		   size_t *name_len);

/*
 * Compare the name at a[aoff..] in message a[0..alen) with the name at
 * b[boff..] in b[0..blen); either may be compressed.  dns_name_equal ignores
 * ASCII case (RFC 4343), as answer matching needs (RFC 5452);
 * dns_name_equal_exact compares octets, as 0x20 verification needs.  A name
 * that fails dns_name_check never equals anything.  Buffers are borrowed.
 */
bool dns_name_equal(const uint8_t *a, size_t alen, size_t aoff,
		    const uint8_t *b, size_t blen, size_t boff);
bool dns_name_equal_exact(const uint8_t *a, size_t alen, size_t aoff,
			  const uint8_t *b, size_t blen, size_t boff);

/*
 * True when the response resp answers the query q: both have a question,
 * with equal QTYPE, QCLASS and name (octet-exact when exact_case is set, to
 * verify 0x20 randomisation).  The forwarder also checks ID and peer.
 */
bool dns_question_matches(const struct dns_msg *q, const struct dns_msg *resp,
			  bool exact_case);

/*
 * Write the name at buf[off..] of message buf[0..len) in presentation form
 * ("www.example.com.", the root as "."), escaping '.', '\\' and bytes
 * outside printable ASCII as \DDD.  out (caller-owned, outsize > 0) is
 * always NUL-terminated.  Returns the text length, -EINVAL for an invalid
 * name, or -ENOSPC when out is too small.
 */
ssize_t dns_name_to_text(const uint8_t *buf, size_t len, size_t off,
			 char *out, size_t outsize);

/*
 * Encode a host name in text form ("host.example", a trailing dot optional,
 * "." for the root) as an uncompressed wire name into out (caller-owned).
 * Escapes are not supported: names come from hosts files and config.
 * Returns the wire length, -EINVAL for an empty label, a backslash, a label
 * over 63 or a name over 255 octets, or -ENOSPC when out is too small.
 */
ssize_t dns_name_from_text(const char *text, uint8_t *out, size_t outsize);

/*
 * In-place header edits on a message of at least DNS_HEADER_LEN octets
 * (callers parse first).  The ID and the flags are host order here and
 * written in network order.  dns_set_rcode replaces the low 4 RCODE bits.
 */
uint16_t dns_get_id(const uint8_t *buf);
uint16_t dns_get_flags(const uint8_t *buf);
void dns_set_id(uint8_t *buf, uint16_t id);
void dns_set_flags(uint8_t *buf, uint16_t flags);
void dns_set_rcode(uint8_t *buf, unsigned rcode);

/*
 * Source of random bits for dns_randomize_case: returns 32 random bits.
 * ctx is whatever the caller passed along.
 */
typedef uint32_t (*dns_random_fn)(void *ctx);

/*
 * Apply random 0x20 case (draft-vixie-dnsext-dns0x20) to the letters of the
 * question name of the parsed message m, in place in buf, which must be the
 * (writable) buffer m was parsed from.  rnd may be NULL for rnd_u32().
 * Remember the result: the answer must echo it octet for octet
 * (dns_question_matches with exact_case).  Returns the number of letters
 * seen (each got a random case), or -EINVAL when m has no question.
 */
int dns_randomize_case(uint8_t *buf, const struct dns_msg *m, dns_random_fn rnd,
		       void *ctx);

/*
 * The largest response the client of query q accepts over UDP: 512 without
 * OPT, otherwise its advertised size, never below 512 (RFC 6891 6.2.5).
 */
uint16_t dns_udp_limit(const struct dns_msg *q);

/*
 * Rewrite the UDP payload size of the OPT RR of m in place in buf (the
 * writable buffer m was parsed from) to min(advertised, max), and to at
 * least 512; m->udp_size is updated.
 *
 * Intent: an advertised size is a promise about what the sender can
 * receive.  A forwarder relays both ways, so it clamps the query it sends
 * upstream to what its own receive buffer holds, and clamps the response it
 * relays to the client to what it can itself receive from that client, so
 * no one is ever promised more than the forwarder can deliver.
 *
 * A record after the OPT may compress its owner name through the bytes
 * rewritten (any backward pointer is legal); when the message would then no
 * longer parse, it is left as it was.
 * Returns 0, -ENOENT when m has no OPT, or -EINVAL when left as it was.
 */
int dns_opt_clamp_udp_size(uint8_t *buf, struct dns_msg *m, uint16_t max);

/*
 * Build an error response (FORMERR, SERVFAIL, REFUSED, ...) to the query q
 * into out (caller-owned, outsize octets): the ID, opcode, RD and CD of the
 * query, QR set, then the question copied when q has one (a query too broken
 * to have one gets a bare header).  When udp_size is non-zero and q is a
 * valid query with an OPT, an OPT with that payload size, version 0, the
 * query's DO bit and no options is appended; RCODEs above 15 need it.
 * Returns the response length, -EINVAL when q's header was unreadable or the
 * RCODE needs an OPT that is not there, or -ENOSPC when out is too small.
 */
ssize_t dns_build_error(uint8_t *out, size_t outsize, const struct dns_msg *q,
			unsigned rcode, uint16_t udp_size);

/* One locally known record for dns_build_local_answer. */
struct dns_local_rr {
	uint16_t type;        /* DNS_TYPE_A, DNS_TYPE_AAAA or DNS_TYPE_PTR */
	uint32_t ttl;         /* seconds, host order */
	const uint8_t *addr;  /* borrowed: A: 4 octets, AAAA: 16, network order */
	const char *ptr_name; /* borrowed: PTR target in text form */
};

/*
 * Build an authoritative answer for a locally known name into out
 * (caller-owned, outsize octets; pass the client's limit, dns_udp_limit, for
 * UDP): header (ID, opcode, RD, CD from q; QR, AA, RA set; NOERROR), the
 * question of q, then one RR per element of rrs (class IN, owner a pointer
 * to the question name), then an OPT when q had one and udp_size != 0.
 * n == 0 gives a NODATA answer.  When the records do not fit but the rest
 * does, the answer is sent without them and with TC set (RFC 2181 9).
 * Returns the length, -EINVAL for a q without a valid question, an unknown
 * type, a NULL addr or a bad PTR name, or -ENOSPC when not even the header
 * and question fit.  rrs is borrowed for the call only.
 */
ssize_t dns_build_local_answer(uint8_t *out, size_t outsize,
			       const struct dns_msg *q,
			       const struct dns_local_rr *rrs, size_t n,
			       uint16_t udp_size);

#endif
