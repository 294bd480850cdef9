/*
 * dns/hosts: names from a hosts(5) file, answered locally by the forwarder.
 *
 * Each line is an IPv4 or IPv6 address followed by one or more host names;
 * '#' starts a comment.  The file gives:
 *  - A / AAAA records for every name on a line (several lines may give the
 *    same name more addresses); a name listed again for the same address
 *    gives no second record (RFC 2181 5: no duplicates in an RRset);
 *  - one PTR record per address (in-addr.arpa / ip6.arpa), pointing at the
 *    first name of the first line that lists the address.
 * Names compare case-insensitively.  A query for a name the file knows, but
 * for a type it has nothing of, gets NODATA (NOERROR, no answer) rather than
 * going upstream: the file is authoritative for its names.  ANY (type 255)
 * gets every record of the name: its A and AAAA, or for a reverse name its
 * PTR.
 *
 * The table is immutable after loading, so lookups on the hot path only
 * search a sorted array and build into the caller's buffer.
 */
#ifndef BERTH_DNS_HOSTS_H
#define BERTH_DNS_HOSTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dns/wire.h"

/*
 * The TTL of local answers.  Zero, as dnsmasq does for its hosts file, so
 * that a client never keeps an answer after the file changes and berthd is
 * reloaded.
 */
#define DNS_HOSTS_DEFAULT_TTL 0u

struct dns_hosts;

/*
 * Called for each line that is skipped: msg is "FILE:LINE: reason"
 * (borrowed, valid during the call); arg is passed back untouched.
 */
typedef void dns_hosts_warn_fn(void *arg, const char *msg);

/*
 * Load the hosts file at path (borrowed).  A line with a bad address or a bad
 * name is skipped and reported through warn (may be NULL) as "FILE:LINE:
 * 'text' is not an IPv4 or IPv6 address", "... is not a valid host name" or
 * "... is not printable ASCII, so no query can match it (write an
 * internationalised name in its xn-- form)" (the octets outside printable
 * ASCII shown as \DDD); the rest of the file still loads.  ttl is the TTL
 * of every record.
 *
 * Returns 0 and stores a table owned by the caller (dns_hosts_free) in *out,
 * or -errno (-ENOENT, -EACCES, ... when the file cannot be read, -ENOMEM)
 * with "FILE: reason" in err (errlen may be 0).
 */
int dns_hosts_load(struct dns_hosts **out, const char *path, uint32_t ttl,
		   dns_hosts_warn_fn *warn, void *arg, char *err,
		   size_t errlen);

/* Free h; accepts NULL. */
void dns_hosts_free(struct dns_hosts *h);

/* Number of records (A, AAAA and PTR) in the table. */
size_t dns_hosts_count(const struct dns_hosts *h);

/*
 * Answer the parsed, valid query q (borrowed) from the table when it asks,
 * in class IN, for a name the table knows.  The answer is built into out
 * (caller-owned, outsize octets; for UDP pass the client's limit,
 * dns_udp_limit, for TCP DNS_MSG_MAX) with dns_build_local_answer, an OPT of
 * udp_size included when q had one and udp_size != 0.  Allocates nothing.
 *
 * Every record of the name of the asked type (of every type for ANY) is
 * answered, or none: when they do not all fit in outsize octets (nor in
 * DNS_MSG_MAX, however large outsize is), the answer holds the header, the
 * question and the OPT only, with TC set, so that a UDP client asks again
 * over TCP (RFC 2181 9), much as the forwarder truncates an upstream's
 * answer too big for its client.  That answer is still returned with its
 * length: a caller that needs to know reads DNS_FLAG_TC in out.  It is
 * never cut to the records that fit.
 *
 * Returns the answer's length (> 0), 0 when the table does not know the name
 * (the query goes upstream), or a negative errno from the builder (-ENOSPC
 * when not even the header and question fit in outsize).
 */
ssize_t dns_hosts_answer(const struct dns_hosts *h, const struct dns_msg *q,
			 uint8_t *out, size_t outsize, uint16_t udp_size);

#endif
