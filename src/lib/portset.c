/* portset: a bitmap over the 65,536 ports; see include/berth/portset.h. */
#include "berth/portset.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

void portset_clear(struct portset *s)
{
	memset(s->word, 0, sizeof(s->word));
}

void portset_add(struct portset *s, uint16_t port)
{
	s->word[port / 64u] |= UINT64_C(1) << (port % 64u);
}

void portset_del(struct portset *s, uint16_t port)
{
	s->word[port / 64u] &= ~(UINT64_C(1) << (port % 64u));
}

bool portset_has(const struct portset *s, uint16_t port)
{
	return (s->word[port / 64u] >> (port % 64u)) & 1u;
}

/* Bits lo..hi (0..63, lo <= hi) of a word. */
static uint64_t bit_span(unsigned lo, unsigned hi)
{
	uint64_t upto_hi = hi == 63 ? ~UINT64_C(0) : (UINT64_C(1) << (hi + 1)) - 1;
	return upto_hi & ~((UINT64_C(1) << lo) - 1);
}

void portset_add_range(struct portset *s, uint16_t lo, uint16_t hi)
{
	if (lo > hi)
		return;
	unsigned wlo = lo / 64u, whi = hi / 64u;
	if (wlo == whi) {
		s->word[wlo] |= bit_span(lo % 64u, hi % 64u);
		return;
	}
	s->word[wlo] |= bit_span(lo % 64u, 63);
	for (unsigned w = wlo + 1; w < whi; w++)
		s->word[w] = ~UINT64_C(0);
	s->word[whi] |= bit_span(0, hi % 64u);
}

void portset_union(struct portset *dst, const struct portset *src)
{
	for (unsigned w = 0; w < PORTSET_WORDS; w++)
		dst->word[w] |= src->word[w];
}

void portset_diff(struct portset *dst, const struct portset *src)
{
	for (unsigned w = 0; w < PORTSET_WORDS; w++)
		dst->word[w] &= ~src->word[w];
}

void portset_intersect(struct portset *dst, const struct portset *src)
{
	for (unsigned w = 0; w < PORTSET_WORDS; w++)
		dst->word[w] &= src->word[w];
}

uint32_t portset_count(const struct portset *s)
{
	uint32_t n = 0;
	for (unsigned w = 0; w < PORTSET_WORDS; w++)
		n += (uint32_t)__builtin_popcountll(s->word[w]);
	return n;
}

bool portset_overlaps(const struct portset *s, const struct portset *t)
{
	for (unsigned w = 0; w < PORTSET_WORDS; w++)
		if (s->word[w] & t->word[w])
			return true;
	return false;
}

/* The k-th lowest member of word w (k < its popcount). */
static int32_t select_in_word(const struct portset *s, unsigned w, uint32_t k)
{
	uint64_t bits = s->word[w];
	/* Drop the k lowest members of this word; the next one is it. */
	while (k--)
		bits &= bits - 1;
	return (int32_t)(w * 64u + (unsigned)__builtin_ctzll(bits));
}

int32_t portset_nth(const struct portset *s, uint32_t k)
{
	for (unsigned w = 0; w < PORTSET_WORDS; w++) {
		uint32_t here = (uint32_t)__builtin_popcountll(s->word[w]);
		if (k < here)
			return select_in_word(s, w, k);
		k -= here;
	}
	return -1;
}

void portset_rank_build(struct portset_rank *r, const struct portset *s)
{
	uint32_t n = 0;
	for (unsigned w = 0; w < PORTSET_WORDS; w++) {
		r->before[w] = n;
		n += (uint32_t)__builtin_popcountll(s->word[w]);
	}
	r->before[PORTSET_WORDS] = n;
}

uint32_t portset_rank_count(const struct portset_rank *r)
{
	return r->before[PORTSET_WORDS];
}

int32_t portset_rank_nth(const struct portset_rank *r, const struct portset *s,
			 uint32_t k)
{
	if (k >= r->before[PORTSET_WORDS])
		return -1;
	/* Find the first i with before[i] > k; the member is in word i - 1.
	 * Empty words share their neighbour's count, so "first greater" (not
	 * "last less or equal") is what lands on a word that has members. */
	unsigned lo = 1, hi = PORTSET_WORDS;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (r->before[mid] > k)
			hi = mid;
		else
			lo = mid + 1;
	}
	unsigned w = lo - 1;
	return select_in_word(s, w, k - r->before[w]);
}

/* The first member >= from, or PORTSET_PORTS when there is none. */
static uint32_t next_member(const struct portset *s, uint32_t from)
{
	while (from < PORTSET_PORTS) {
		uint64_t bits = s->word[from / 64u] >> (from % 64u);
		if (bits)
			return from + (uint32_t)__builtin_ctzll(bits);
		from = (from / 64u + 1) * 64u;
	}
	return PORTSET_PORTS;
}

/* The first non-member >= from, or PORTSET_PORTS when there is none. */
static uint32_t next_gap(const struct portset *s, uint32_t from)
{
	while (from < PORTSET_PORTS) {
		uint64_t bits = ~s->word[from / 64u] >> (from % 64u);
		if (bits)
			return from + (uint32_t)__builtin_ctzll(bits);
		from = (from / 64u + 1) * 64u;
	}
	return PORTSET_PORTS;
}

bool portset_next_range(const struct portset *s, uint32_t *cursor,
			uint16_t *lo, uint16_t *hi)
{
	uint32_t start = next_member(s, *cursor);
	if (start >= PORTSET_PORTS)
		return false;
	uint32_t end = next_gap(s, start); /* one past the run */
	*lo = (uint16_t)start;
	*hi = (uint16_t)(end - 1);
	*cursor = end;
	return true;
}

static bool is_separator(char c)
{
	return c == ',' || isspace((unsigned char)c);
}

/*
 * Parse the decimal number at text[0..len) into *out.  Only digits are
 * accepted; anything above 65535 is reported as too big with *out holding a
 * saturated value so the caller can say which end is wrong.
 */
static int parse_number(const char *text, size_t len, unsigned long *out)
{
	if (len == 0)
		return -EINVAL;
	unsigned long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)text[i]))
			return -EINVAL;
		if (v <= 65535ul)
			v = v * 10 + (unsigned long)(text[i] - '0');
	}
	*out = v;
	return 0;
}

/* Parse one list element (no separators inside) and add it to s. */
static int parse_element(struct portset *s, const char *tok, size_t len,
			 char *err, size_t errlen)
{
	const char *dash = memchr(tok, '-', len);
	unsigned long lo, hi;
	int n = (int)(len > 64 ? 64 : len); /* what we quote back */

	if (!dash) {
		if (parse_number(tok, len, &lo) < 0) {
			snprintf(err, errlen, "garbage '%.*s' in port list", n, tok);
			return -EINVAL;
		}
		if (lo > 65535ul) {
			snprintf(err, errlen, "port %.*s is out of range 0-65535", n, tok);
			return -EINVAL;
		}
		portset_add(s, (uint16_t)lo);
		return 0;
	}
	size_t lo_len = (size_t)(dash - tok), hi_len = len - lo_len - 1;
	if (parse_number(tok, lo_len, &lo) < 0 ||
	    parse_number(dash + 1, hi_len, &hi) < 0) {
		snprintf(err, errlen, "garbage '%.*s' in port list (a range is a-b)", n, tok);
		return -EINVAL;
	}
	if (lo > 65535ul) {
		snprintf(err, errlen, "range %.*s starts out of range 0-65535", n, tok);
		return -EINVAL;
	}
	if (hi > 65535ul) {
		snprintf(err, errlen, "range %.*s runs past 65535", n, tok);
		return -EINVAL;
	}
	if (lo > hi) {
		snprintf(err, errlen, "inverted range %.*s (start above end)", n, tok);
		return -EINVAL;
	}
	portset_add_range(s, (uint16_t)lo, (uint16_t)hi);
	return 0;
}

int portset_parse(struct portset *s, const char *text, char *err,
		  size_t errlen)
{
	const char *p = text;
	for (;;) {
		while (*p && is_separator(*p))
			p++;
		if (!*p)
			return 0;
		const char *tok = p;
		while (*p && !is_separator(*p))
			p++;
		int rc = parse_element(s, tok, (size_t)(p - tok), err, errlen);
		if (rc < 0)
			return rc;
	}
}

size_t portset_format(const struct portset *s, char *buf, size_t len,
		      const char *sep)
{
	size_t need = 0;
	uint32_t cursor = 0;
	uint16_t lo, hi;
	char item[16];

	if (len > 0)
		buf[0] = '\0';
	while (portset_next_range(s, &cursor, &lo, &hi)) {
		int n = lo == hi ? snprintf(item, sizeof(item), "%u", lo)
				 : snprintf(item, sizeof(item), "%u-%u", lo, hi);
		const char *parts[2] = { need ? sep : "", item };
		for (int i = 0; i < 2; i++) {
			size_t plen = i ? (size_t)n : strlen(parts[0]);
			if (need + plen < len) {
				memcpy(buf + need, parts[i], plen);
				buf[need + plen] = '\0';
			} else if (len > 0 && need < len) {
				/* Truncate like snprintf: fill what fits. */
				size_t fit = len - 1 - need;
				memcpy(buf + need, parts[i], fit);
				buf[len - 1] = '\0';
			}
			need += plen;
		}
	}
	return need;
}
