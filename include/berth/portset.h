/*
 * portset: a set over all 65,536 TCP/UDP ports.
 *
 * The set is a fixed 8 KiB bitmap.  It is a value type on purpose: the port
 * plan embeds several of them, copies them and combines them, and nothing on
 * the hot path should allocate, so the struct is public (callers embed it)
 * but its fields are private to portset.c.
 *
 * Ports are host byte order everywhere in this API.
 */
#ifndef BERTH_PORTSET_H
#define BERTH_PORTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORTSET_PORTS 65536u
#define PORTSET_WORDS (PORTSET_PORTS / 64u)

struct portset {
	uint64_t word[PORTSET_WORDS]; /* private: bit p of the set is port p */
};

/* Make s empty. */
void portset_clear(struct portset *s);

/* Add every port lo..hi inclusive to s; nothing happens when lo > hi. */
void portset_add_range(struct portset *s, uint16_t lo, uint16_t hi);

/* Add or remove a single port. */
void portset_add(struct portset *s, uint16_t port);
void portset_del(struct portset *s, uint16_t port);

/* True when port is a member of s. */
bool portset_has(const struct portset *s, uint16_t port);

/* dst = dst ∪ src. */
void portset_union(struct portset *dst, const struct portset *src);

/* dst = dst \ src. */
void portset_diff(struct portset *dst, const struct portset *src);

/* dst = dst ∩ src. */
void portset_intersect(struct portset *dst, const struct portset *src);

/* Number of members, 0..65536. */
uint32_t portset_count(const struct portset *s);

/* True when s and t share at least one port. */
bool portset_overlaps(const struct portset *s, const struct portset *t);

/*
 * The k-th member of s in ascending order, counting from 0, or -1 when
 * k >= portset_count(s).  With k drawn uniformly from [0, count) this draws a
 * member uniformly; the cost is a popcount per 64 ports below the answer.
 */
int32_t portset_nth(const struct portset *s, uint32_t k);

/*
 * A rank index over a set: members before each 64-port word.  Build it once
 * after the set changes (one pass), then portset_rank_nth() finds the k-th
 * member with a binary search instead of a scan: the socket pool draws
 * thousands of ports from one allowed set.  Public so callers can embed it.
 */
struct portset_rank {
	uint32_t before[PORTSET_WORDS + 1]; /* private; [WORDS] = count */
};

/* Index s into r; r is stale once s changes. */
void portset_rank_build(struct portset_rank *r, const struct portset *s);

/* Members counted by the index (the set's size when it was built). */
uint32_t portset_rank_count(const struct portset_rank *r);

/*
 * The k-th member of s, like portset_nth(), using r built from the same s.
 * Returns -1 when k >= portset_rank_count(r).
 */
int32_t portset_rank_nth(const struct portset_rank *r, const struct portset *s,
			 uint32_t k);

/*
 * Walk the maximal runs of consecutive members in ascending order.  Start
 * with *cursor = 0; each call that returns true stores one run in *lo..*hi and
 * advances *cursor.  Returns false when no run is left.
 */
bool portset_next_range(const struct portset *s, uint32_t *cursor,
			uint16_t *lo, uint16_t *hi);

/*
 * Parse a port list and add its ports to s.  A list is single ports and
 * "a-b" ranges separated by commas and/or white space (newlines included),
 * which covers berth's own form, the Windows ReservedPorts form
 * ("4500-4500", "3456-3459") and the kernel's ip_local_reserved_ports form
 * ("8080,9000-9100").  An empty list is valid and adds nothing.
 *
 * Returns 0, or -EINVAL with a one-line reason in err (never NULL, errlen
 * > 0), e.g. "inverted range 5000-4000".  On error s may hold part of the
 * list; parse into a scratch set when that matters.
 */
int portset_parse(struct portset *s, const char *text, char *err,
		  size_t errlen);

/*
 * Write s as a list: runs as "a-b", lone ports as "a", joined by sep (e.g.
 * "," for the kernel, ", " for people).  Behaves like snprintf: writes at most
 * len bytes including the NUL and returns the length the whole list needs.
 */
size_t portset_format(const struct portset *s, char *buf, size_t len,
		      const char *sep);

#endif
