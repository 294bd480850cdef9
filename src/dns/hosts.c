/*
 * dns/hosts: a hosts(5) file as a sorted table of A, AAAA and PTR records.
 *
 * The table is sorted by name, then type, then file order, so the records a
 * query asks for (one type, or every type for ANY) sit side by side, and a
 * parallel array holds them ready for dns_build_local_answer: a lookup
 * passes a slice of it and needs no buffer of its own, however many records
 * a name has.
 */
#include "dns/hosts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/fileio.h"

/* "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.ip6.arpa." */
#define REVERSE_NAME_MAX 80u
#define TEXT_NAME_MAX 1024u /* dns_name_to_text of a 255-octet name, escaped */
#define QTYPE_ANY 255u      /* RFC 1035 3.2.3: a request for all records */

struct hosts_rr {
	char *name;      /* owned: lower case, trailing dot */
	uint16_t type;   /* DNS_TYPE_A, DNS_TYPE_AAAA or DNS_TYPE_PTR */
	uint8_t addr[16];
	char *target;    /* PTR: owned, the host name in text form */
	size_t seq;      /* position in the file, to keep file order */
};

struct dns_hosts {
	struct hosts_rr *rrs; /* sorted by name, type, then file order */
	struct dns_local_rr *local; /* owned: rrs[i] as the builder takes it */
	size_t n, cap;
	uint32_t ttl;
};

static void lower_ascii(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* name in text form, lower case, with exactly one trailing dot; or NULL. */
static char *canonical_name(const char *name)
{
	size_t len = strlen(name);
	char *out = malloc(len + 2);
	if (!out)
		return NULL;
	memcpy(out, name, len);
	if (len == 0 || out[len - 1] != '.')
		out[len++] = '.';
	out[len] = '\0';
	lower_ascii(out);
	return out;
}

static int push_rr(struct dns_hosts *h, struct hosts_rr rr)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct hosts_rr *rrs = realloc(h->rrs, cap * sizeof(*rrs));
		if (!rrs)
			return -ENOMEM;
		h->rrs = rrs;
		h->cap = cap;
	}
	rr.seq = h->n;
	h->rrs[h->n++] = rr;
	return 0;
}

/* The reverse-lookup name of an address, e.g. "4.3.2.1.in-addr.arpa.". */
static void reverse_name(int family, const uint8_t *addr, char *out,
			 size_t outsize)
{
	size_t pos = 0;
	if (family == AF_INET) {
		snprintf(out, outsize, "%u.%u.%u.%u.in-addr.arpa.", addr[3],
			 addr[2], addr[1], addr[0]);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	for (int i = 15; i >= 0 && pos + 4 < outsize; i--) {
		out[pos++] = hex[addr[i] & 0xf];
		out[pos++] = '.';
		out[pos++] = hex[addr[i] >> 4];
		out[pos++] = '.';
	}
	snprintf(out + pos, outsize - pos, "ip6.arpa.");
}

static void warn_line(dns_hosts_warn_fn *warn, void *arg, const char *path,
		      unsigned line, const char *what, const char *why)
{
	char msg[512];
	if (!warn)
		return;
	snprintf(msg, sizeof(msg), "%s:%u: '%s' %s", path, line, what, why);
	warn(arg, msg);
}

/*
 * True when every octet of s is printable ASCII other than the space: the
 * only octets that a query's name, in the text form lookups compare, shows
 * as themselves (dns_name_to_text writes the others as \DDD).
 */
static bool printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* s in out, each octet outside printable ASCII as \DDD, cut to fit. */
static void escape_text(const char *s, char *out, size_t outsize)
{
	size_t pos = 0;
	for (; *s && outsize - pos > 4; s++) {
		unsigned char c = (unsigned char)*s;
		if (c > 0x20 && c < 0x7f)
			out[pos++] = (char)c;
		else
			pos += (size_t)snprintf(out + pos, outsize - pos,
						"\\%03u", c);
	}
	out[pos] = '\0';
}

/* Split at blanks in place: up to max fields.  Returns the count. */
static size_t split_fields(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;
	while (*p && n < max) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			break;
		fields[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

/*
 * One line of the file: address, then names.  Bad parts are reported and
 * skipped; only running out of memory is an error.
 */
static int load_line(struct dns_hosts *h, char *line, const char *path,
		     unsigned lineno, dns_hosts_warn_fn *warn, void *arg)
{
	char *hash = strchr(line, '#');
	if (hash)
		*hash = '\0';
	char *f[64];
	size_t nf = split_fields(line, f, 64);
	if (nf == 0)
		return 0;
	uint8_t addr[16] = { 0 };
	int family = AF_INET;
	if (inet_pton(AF_INET, f[0], addr) != 1) {
		family = AF_INET6;
		if (inet_pton(AF_INET6, f[0], addr) != 1) {
			warn_line(warn, arg, path, lineno, f[0],
				  "is not an IPv4 or IPv6 address");
			return 0;
		}
	}
	if (nf == 1) {
		warn_line(warn, arg, path, lineno, f[0], "has no host name");
		return 0;
	}
	const char *first = NULL;
	for (size_t i = 1; i < nf; i++) {
		uint8_t wire[DNS_NAME_MAX];
		if (dns_name_from_text(f[i], wire, sizeof(wire)) < 0 ||
		    !strcmp(f[i], ".")) {
			warn_line(warn, arg, path, lineno, f[i],
				  "is not a valid host name");
			continue;
		}
		if (!printable_ascii(f[i])) {
			/* Shown escaped: raw octets could be anything on the
			 * terminal or in the log. */
			char shown[256];
			escape_text(f[i], shown, sizeof(shown));
			warn_line(warn, arg, path, lineno, shown,
				  "is not printable ASCII, so no query can match "
				  "it (write an internationalised name in its "
				  "xn-- form)");
			continue;
		}
		struct hosts_rr rr = {
			.name = canonical_name(f[i]),
			.type = family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA,
		};
		memcpy(rr.addr, addr, sizeof(addr));
		if (!rr.name || push_rr(h, rr) < 0) {
			free(rr.name);
			return -ENOMEM;
		}
		if (!first)
			first = f[i];
	}
	if (!first)
		return 0;
	char rname[REVERSE_NAME_MAX];
	reverse_name(family, addr, rname, sizeof(rname));
	struct hosts_rr ptr = {
		.name = strdup(rname),
		.type = DNS_TYPE_PTR,
		.target = strdup(first),
	};
	if (!ptr.name || !ptr.target || push_rr(h, ptr) < 0) {
		free(ptr.name);
		free(ptr.target);
		return -ENOMEM;
	}
	return 0;
}

/* By name, then type. */
static int key_cmp(const struct hosts_rr *x, const struct hosts_rr *y)
{
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->type < y->type ? -1 : x->type > y->type;
}

static int seq_cmp(const struct hosts_rr *x, const struct hosts_rr *y)
{
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* By name, type, then file order: the table's order. */
static int rr_cmp(const void *a, const void *b)
{
	int c = key_cmp(a, b);
	return c ? c : seq_cmp(a, b);
}

/* By name, type, address, then file order: duplicates side by side, the
 * one first in the file first. */
static int rr_cmp_addr(const void *a, const void *b)
{
	const struct hosts_rr *x = a, *y = b;
	int c = key_cmp(x, y);
	if (!c)
		c = memcmp(x->addr, y->addr, sizeof(x->addr));
	return c ? c : seq_cmp(x, y);
}

/*
 * Two records are the same when they share name, type and address; for
 * PTRs, name and type alone, since an address has one canonical name.
 */
static bool same_rr(const struct hosts_rr *x, const struct hosts_rr *y)
{
	return key_cmp(x, y) == 0 &&
	       (x->type == DNS_TYPE_PTR ||
		!memcmp(x->addr, y->addr, sizeof(x->addr)));
}

/*
 * Keep only the first of each record the file gives more than once: an
 * RRset holds no duplicates (RFC 2181 5), yet a name may be listed twice for
 * an address, on one line or on several.  An address listed on several lines
 * gets a PTR from each; only the first line's counts (hosts(5): the first
 * name is the canonical one).  Leaves the table in its final order.
 */
static void drop_duplicates(struct dns_hosts *h)
{
	size_t w = 0;
	qsort(h->rrs, h->n, sizeof(*h->rrs), rr_cmp_addr);
	for (size_t r = 0; r < h->n; r++) {
		struct hosts_rr *rr = &h->rrs[r];
		if (w > 0 && same_rr(&h->rrs[w - 1], rr)) {
			free(rr->name);
			free(rr->target);
			continue;
		}
		h->rrs[w++] = *rr;
	}
	h->n = w;
	qsort(h->rrs, h->n, sizeof(*h->rrs), rr_cmp);
}

/*
 * The records as the answer builder takes them, in table order, so that a
 * lookup hands it a slice.  They point into h->rrs, which must not move
 * afterwards.
 */
static int build_local(struct dns_hosts *h)
{
	h->local = calloc(h->n, sizeof(*h->local));
	if (!h->local)
		return -ENOMEM;
	for (size_t i = 0; i < h->n; i++)
		h->local[i] = (struct dns_local_rr){
			.type = h->rrs[i].type,
			.ttl = h->ttl,
			.addr = h->rrs[i].addr,
			.ptr_name = h->rrs[i].target,
		};
	return 0;
}

int dns_hosts_load(struct dns_hosts **out, const char *path, uint32_t ttl,
		   dns_hosts_warn_fn *warn, void *arg, char *err,
		   size_t errlen)
{
	struct dns_hosts *h = calloc(1, sizeof(*h));
	FILE *fp = NULL;
	char *line = NULL;
	size_t linecap = 0;
	unsigned lineno = 0;
	int rc = -ENOMEM;

	if (!h)
		goto fail;
	h->ttl = ttl;
	fp = fileio_open_regular(path);
	if (!fp) {
		rc = -errno;
		goto fail;
	}
	while (getline(&line, &linecap, fp) >= 0) {
		lineno++;
		rc = load_line(h, line, path, lineno, warn, arg);
		if (rc < 0)
			goto fail;
	}
	if (ferror(fp)) {
		rc = -EIO;
		goto fail;
	}
	if (h->n) {
		drop_duplicates(h);
		rc = build_local(h);
		if (rc < 0)
			goto fail;
	}
	free(line);
	fclose(fp);
	*out = h;
	return 0;
fail:
	if (errlen)
		snprintf(err, errlen, "%s: %s", path, fileio_strerror(-rc));
	free(line);
	if (fp)
		fclose(fp);
	dns_hosts_free(h);
	return rc;
}

void dns_hosts_free(struct dns_hosts *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++) {
		free(h->rrs[i].name);
		free(h->rrs[i].target);
	}
	free(h->rrs);
	free(h->local);
	free(h);
}

size_t dns_hosts_count(const struct dns_hosts *h)
{
	return h ? h->n : 0;
}

/*
 * The first record at or after (name, type) in table order, or h->n; a type
 * above UINT16_MAX finds the end of name's records.
 */
static size_t lower_bound(const struct dns_hosts *h, const char *name,
			  uint32_t type)
{
	size_t lo = 0, hi = h->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct hosts_rr *rr = &h->rrs[mid];
		int c = strcmp(rr->name, name);
		if (c < 0 || (c == 0 && rr->type < type))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

ssize_t dns_hosts_answer(const struct dns_hosts *h, const struct dns_msg *q,
			 uint8_t *out, size_t outsize, uint16_t udp_size)
{
	char name[TEXT_NAME_MAX];
	if (!h || h->n == 0 || !q->valid || !q->has_question ||
	    q->qclass != DNS_CLASS_IN)
		return 0;
	if (dns_name_to_text(q->buf, q->len, q->qname_off, name, sizeof(name)) < 0)
		return 0;
	lower_ascii(name);
	size_t first = lower_bound(h, name, 0);
	size_t end = lower_bound(h, name, UINT16_MAX + 1u);
	if (first == end)
		return 0;
	/* ANY gets every record of the name (RFC 8482 would allow fewer, but
	 * never none: an empty answer says the name has no records). */
	if (q->qtype != QTYPE_ANY) {
		first = lower_bound(h, name, q->qtype);
		end = lower_bound(h, name, q->qtype + 1u);
	}
	/*
	 * No DNS message is longer than DNS_MSG_MAX octets, and every record
	 * takes at least one, so more than UINT16_MAX records (more than
	 * ANCOUNT counts, which the builder refuses) never fit: with out
	 * capped at DNS_MSG_MAX, UINT16_MAX of them are enough for the
	 * builder to answer with TC set, as it does any answer too big for
	 * out.
	 */
	size_t n = end - first;
	if (n > UINT16_MAX)
		n = UINT16_MAX;
	if (outsize > DNS_MSG_MAX)
		outsize = DNS_MSG_MAX;
	return dns_build_local_answer(out, outsize, q, h->local + first, n,
				      udp_size);
}
