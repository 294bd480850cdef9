/*
 * dns/forwarder: the outstanding-query table, upstream attempts with their
 * timeouts and failover, and the matching of upstream replies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "berth/rnd.h"
#include "dns/forwarder_int.h"

static void on_timeout(struct wheel_timer *t, void *ctx);

/* ---- the outstanding-query table ---------------------------------------- */

/*
 * A free record: a recycled one first, else one never used yet.  Records are
 * prepared on first use so that a large table costs memory only as deep as
 * the load ever went (calloc's untouched pages stay unbacked).
 */
static struct fwd_query *rec_alloc(struct dns_fwd *f)
{
	struct fwd_query *r;
	if (f->free_head != FWD_NIL) {
		r = &f->q[f->free_head];
		f->free_head = r->next;
	} else if (f->fresh < f->cap) {
		r = &f->q[f->fresh++];
		r->f = f;
		wheel_timer_init(&r->timer, on_timeout);
	} else {
		return NULL;
	}
	r->next = FWD_NIL;
	r->in_use = true;
	r->utcp = FWD_UTCP_NONE;
	r->sent = false;
	r->losses = 0;
	r->backlogged = false;
	f->st.outstanding++;
	return r;
}

static void rec_free(struct dns_fwd *f, struct fwd_query *r)
{
	r->in_use = false;
	r->next = f->free_head;
	f->free_head = (uint32_t)(r - f->q);
	f->st.outstanding--;
}

/* The record waiting on (port, id), or NULL. */
static struct fwd_query *chain_find(struct dns_fwd *f, uint16_t id,
				    uint16_t port)
{
	for (uint32_t i = f->id_head[id]; i != FWD_NIL; i = f->q[i].next)
		if (f->q[i].h.port == port)
			return &f->q[i];
	return NULL;
}

static void chain_insert(struct dns_fwd *f, struct fwd_query *r, uint16_t id)
{
	r->next = f->id_head[id];
	f->id_head[id] = (uint32_t)(r - f->q);
	r->hashed = true;
}

/* Stop r's deadline, and take r off its ID chain and give its pool socket
 * back, or off its upstream TCP connection. */
static void rec_unhash(struct dns_fwd *f, struct fwd_query *r)
{
	/* First, whatever else r holds: an attempt that found no pool socket
	 * has its deadline armed on no chain, and a timer left in the wheel
	 * would outlive the record table dns_fwd_free() frees on a reload. */
	loop_timer_stop(f->loop, &r->timer);
	if (r->utcp != FWD_UTCP_NONE || r->backlogged) {
		fwd_utcp_detach(f, r);
		return;
	}
	if (!r->hashed)
		return;
	uint16_t id = dns_get_id(r->query);
	uint32_t self = (uint32_t)(r - f->q);
	uint32_t *link = &f->id_head[id];
	while (*link != self)
		link = &f->q[*link].next;
	*link = r->next;
	r->next = FWD_NIL;
	r->hashed = false;
	pool_done(f->pool, &r->h);
}

/* ---- upstream attempts --------------------------------------------------- */

static bool same_addr(const struct sockaddr *a, const union fwd_sockaddr *b)
{
	if (a->sa_family != b->sa.sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)(const void *)a;
		return x->sin_port == b->in.sin_port &&
		       x->sin_addr.s_addr == b->in.sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)a;
		return x->sin6_port == b->in6.sin6_port &&
		       !memcmp(&x->sin6_addr, &b->in6.sin6_addr, sizeof(x->sin6_addr));
	}
	return false;
}

/*
 * The order this query tries upstreams in: healthy ones first, each group in
 * config order.  Each is tried once, a lone one too: its silence turns into
 * SERVFAIL after upstream_timeout, on which a stub resolver asks again at
 * once (glibc does, even of its only server), so one lost datagram costs the
 * client that wait, not the lookup.  A second attempt of ours would double
 * the wait for SERVFAIL from a dead upstream and, past the stub's own
 * timeout (5 s in glibc), race its resend.
 */
static void plan_order(const struct dns_fwd *f, struct fwd_query *r)
{
	r->norder = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < f->nup; i++) {
			bool sick = f->up[i].failures >= DNS_FWD_SICK_AFTER;
			if (sick == (pass == 1))
				r->order[r->norder++] = (uint8_t)i;
		}
	r->attempt = 0;
}

/*
 * A random ID no other query on h's port number uses, or -1 after
 * FWD_ID_TRIES.  The port number, not the socket: an IPv4 and an IPv6 pool
 * socket may share one, and judge() finds a query by ID and port.
 */
static int32_t fresh_id(struct dns_fwd *f, const struct pool_handle *h)
{
	for (unsigned t = 0; t < FWD_ID_TRIES; t++) {
		uint16_t id = (uint16_t)rnd_uniform(65536);
		if (!chain_find(f, id, h->port))
			return id;
	}
	return -1;
}

static void client_answer_error(struct dns_fwd *f, struct fwd_query *r,
				unsigned rcode)
{
	dns_set_id(r->query, r->client_id);
	memcpy(r->query + r->qmsg.qname_off, r->client_name,
	       r->qmsg.qname_wire_len);
	if (r->sess)
		fwd_tcp_error(f, r->sess, &r->qmsg, rcode);
	else
		fwd_udp_error(f, &r->client, &r->qmsg, rcode);
}

/* Send r to upstream u over UDP from a fresh random pool socket with a
 * fresh random ID.  Returns 0 or -errno. */
static int send_udp(struct dns_fwd *f, struct fwd_query *r,
		    const struct fwd_upstream *u)
{
	if (pool_acquire(f->pool, u->addr.sa.sa_family, &r->h) < 0) {
		f->st.pool_empty++;
		return -EAGAIN;
	}
	int32_t id = fresh_id(f, &r->h);
	if (id < 0) {
		f->st.pool_empty++;
		pool_done(f->pool, &r->h);
		return -EAGAIN;
	}
	dns_set_id(r->query, (uint16_t)id);
	if (sendto(r->h.fd, r->query, r->qlen, 0, &u->addr.sa, u->len) < 0) {
		int rc = -errno;
		f->st.send_errors++;
		pool_done(f->pool, &r->h);
		return rc;
	}
	chain_insert(f, r, (uint16_t)id);
	return 0;
}

/* Give r's current upstream up: the next attempt goes to the next one, which
 * gets its own retries on fresh TCP connections (fwd_retry_lost). */
static void next_upstream(struct fwd_query *r)
{
	r->attempt++;
	r->losses = 0;
}

/*
 * Send r to its next upstream: over TCP for a TCP client (a truncated UDP
 * answer would be no use to it), else over UDP.  When no upstream is left,
 * the client gets SERVFAIL and the record is freed.
 */
static void send_attempt(struct dns_fwd *f, struct fwd_query *r)
{
	for (; r->attempt < r->norder; next_upstream(r)) {
		unsigned up = r->order[r->attempt];
		if (f->use_0x20)
			dns_randomize_case(r->query, &r->qmsg, NULL, NULL);
		int rc = r->sess ? fwd_utcp_send(f, r, up)
				 : send_udp(f, r, &f->up[up]);
		if (rc < 0 && rc != -EAGAIN)
			continue;
		r->sent_at = loop_now(f->loop);
		loop_timer_start_in(f->loop, &r->timer, f->timeout_ms);
		if (!r->sent)
			f->st.forwarded++;
		else
			f->st.retries++;
		r->sent = true;
		return;
	}
	f->st.servfails++;
	client_answer_error(f, r, DNS_RCODE_SERVFAIL);
	rec_free(f, r);
}

static void on_timeout(struct wheel_timer *t, void *ctx)
{
	(void)ctx;
	struct fwd_query *r = wheel_container_of(t, struct fwd_query, timer);
	struct dns_fwd *f = r->f;
	struct fwd_upstream *u = &f->up[r->order[r->attempt]];
	f->st.timeouts++;
	/* One query an upstream leaves unanswered (a name whose servers are
	 * unreachable, one it chooses to drop) says nothing against it while
	 * it answers others: only silence over the whole attempt is a failure.
	 * An answer stamped with the very millisecond the attempt left counts
	 * as life: the clock is read once per iteration, so it may well have
	 * come after the send; at worst the attempts sent to a dying upstream
	 * in that one millisecond are not held against it, where the other
	 * choice could push a working one back. */
	if (u->answered && u->last_answer >= r->sent_at)
		f->st.timeouts_alive++;
	else
		u->failures++;
	rec_unhash(f, r);
	next_upstream(r);
	send_attempt(f, r);
}

void fwd_backlog_failed(struct dns_fwd *f, struct fwd_query *r)
{
	/* No connection to be had is the upstream failing, whatever it answers
	 * over its other connections or UDP. */
	loop_timer_stop(f->loop, &r->timer);
	f->up[r->order[r->attempt]].failures++;
	next_upstream(r);
	send_attempt(f, r);
}

void fwd_retry_lost(struct dns_fwd *f, struct fwd_query *r, bool unreachable)
{
	loop_timer_stop(f->loop, &r->timer);
	struct fwd_upstream *u = &f->up[r->order[r->attempt]];
	/*
	 * A server closing a connection is ordinary (RFC 7766 6.2.3): the
	 * same upstream again, pipelined.  A second loss may be this query's
	 * doing or a neighbour's (some servers drop the connection on a query
	 * they refuse), so it goes alone.  Lost even alone, it moves on, and
	 * that is held against the upstream only when it answered nothing
	 * else meanwhile, as for a timeout.  (The caller counts a connection
	 * that never opened once, not once per query.)
	 */
	if (unreachable) {
		next_upstream(r);
	} else if (++r->losses > FWD_UTCP_SOLO_AFTER) {
		if (!(u->answered && u->last_answer >= r->sent_at))
			u->failures++;
		next_upstream(r);
	}
	send_attempt(f, r);
}

unsigned fwd_malformed(struct dns_fwd *f, const struct dns_msg *q)
{
	if (dns_flags_opcode(q->hdr.flags) != DNS_OPCODE_QUERY)
		return DNS_RCODE_NOTIMP;
	f->st.formerr++;
	return DNS_RCODE_FORMERR;
}

unsigned fwd_screen(struct dns_fwd *f, const struct dns_msg *q)
{
	if (dns_flags_opcode(q->hdr.flags) != DNS_OPCODE_QUERY)
		return DNS_RCODE_NOTIMP;
	/* berthd answers for itself here (RFC 6891 6.1.3): it speaks EDNS
	 * version 0 only, so it must not pass a higher one on as its own. */
	if (q->has_opt && q->edns_version != 0) {
		f->st.badvers++;
		return DNS_RCODE_BADVERS;
	}
	/* A transfer is a stream of messages (RFC 5936 2.2) that a relay of
	 * one answer per query would cut after the first. */
	if (q->qtype == DNS_TYPE_AXFR || q->qtype == DNS_TYPE_IXFR) {
		f->st.zone_transfers++;
		return DNS_RCODE_NOTIMP;
	}
	return 0;
}

bool fwd_start(struct dns_fwd *f, const struct fwd_client *c,
	       const struct dns_msg *q, struct sess *sess)
{
	struct fwd_query *r = rec_alloc(f);
	if (!r) {
		f->st.table_full++;
		return false;
	}
	r->sess = sess;
	r->client_id = q->hdr.id;
	/* TCP answers are never cut: the frame holds any DNS message. */
	r->client_limit = sess ? DNS_MSG_MAX : dns_udp_limit(q);
	if (c)
		r->client = *c;
	else
		memset(&r->client, 0, sizeof(r->client));
	r->qlen = (uint16_t)q->len;
	memcpy(r->query, q->buf, q->len);
	/* Same bytes, so the parse cannot fail; it re-points qmsg at query[]. */
	dns_parse_query(&r->qmsg, r->query, r->qlen);
	if (r->qmsg.has_opt)
		dns_opt_clamp_udp_size(r->query, &r->qmsg, DNS_FWD_EDNS_SIZE);
	memcpy(r->client_name, r->query + r->qmsg.qname_off,
	       r->qmsg.qname_wire_len);
	plan_order(f, r);
	send_attempt(f, r);
	return true;
}

void fwd_cancel_session(struct dns_fwd *f, struct sess *s)
{
	/* Only reached when the session still had queries in flight, which a
	 * client closing early does; ordinary closes cost nothing. */
	for (uint32_t i = 0; i < f->fresh; i++) {
		struct fwd_query *r = &f->q[i];
		if (r->in_use && r->sess == s) {
			rec_unhash(f, r);
			rec_free(f, r);
		}
	}
}

/* ---- replies ------------------------------------------------------------- */

/* Set the three section counts after the question to zero. */
static void clear_counts(uint8_t *buf)
{
	memset(buf + 6, 0, 6);
}

/* Relay the accepted reply resp (parsed from msg) to r's client. */
static void relay_answer(struct dns_fwd *f, struct fwd_query *r,
			 struct dns_msg *resp, const uint8_t *msg, size_t len)
{
	uint8_t *out = f->tx;
	memcpy(out, msg, len);
	dns_set_id(out, r->client_id);
	/* The question as the client wrote it, whatever case the upstream
	 * (or 0x20) gave it: a client checking case itself would drop the
	 * answer otherwise.  The match made the names equal but for case; a
	 * question name compressed to another length keeps the upstream's. */
	if (resp->qname_wire_len == r->qmsg.qname_wire_len)
		memcpy(out + resp->qname_off, r->client_name, resp->qname_wire_len);
	if (resp->has_opt)
		dns_opt_clamp_udp_size(out, resp, DNS_FWD_EDNS_SIZE);
	if (len > r->client_limit) {
		/* Header and question only, TC set: the client asks again over
		 * TCP (RFC 2181 9, RFC 7766 5).  The OPT stays, without its
		 * options (RFC 6891 7: an EDNS query gets an EDNS answer; the
		 * OPT carries the upper bits of the RCODE and the DO bit). */
		clear_counts(out);
		len = resp->question_end;
		if (resp->has_opt) {
			/* Root owner (written out: the upstream's may be a
			 * pointer), TYPE, CLASS and TTL; RDLENGTH 0. */
			out[len] = 0;
			memmove(out + len + 1, out + resp->opt_rdata_off - 10, 8);
			out[len + 9] = out[len + 10] = 0;
			len += 11;
			out[11] = 1;
		}
		dns_set_flags(out, resp->hdr.flags | DNS_FLAG_TC);
		f->st.truncated++;
	}
	if (r->sess)
		fwd_tcp_send(f, r->sess, out, len, dns_msg_rcode(resp));
	else
		fwd_udp_send(f, &r->client, out, len, dns_msg_rcode(resp));
}

static bool from_upstream(const struct dns_fwd *f, const struct sockaddr *from)
{
	for (size_t i = 0; i < f->nup; i++)
		if (same_addr(from, &f->up[i].addr))
			return true;
	return false;
}

/* What a datagram on a pool socket is to the forwarder. */
enum verdict {
	V_NONE,             /* not ours: no concern of the forwarder */
	V_STRANGER,         /* for a query of ours, from an address not ours */
	V_ANSWER,           /* the answer to *r, parsed into *resp */
	V_GARBAGE,          /* from an upstream, not a DNS response */
	V_MISMATCH_ID,      /* from an upstream, an ID not outstanding */
	V_MISMATCH_SOCKET,  /* the ID is outstanding on another socket */
	V_MISMATCH_ADDRESS, /* from another upstream than the one asked */
	V_MISMATCH_QUESTION,
};

/* Judge a datagram (RFC 5452 9.1: address, port, ID and question must all
 * match); for V_ANSWER, *rp is the query it answers, *resp its parse. */
static enum verdict judge(struct dns_fwd *f, int fd, uint16_t local_port,
			  const struct sockaddr *from, const uint8_t *msg,
			  size_t len, struct fwd_query **rp, struct dns_msg *resp)
{
	bool known_peer = from_upstream(f, from);
	if (len < DNS_HEADER_LEN)
		return known_peer ? V_GARBAGE : V_NONE;
	uint16_t id = dns_get_id(msg);
	struct fwd_query *r = chain_find(f, id, local_port);
	if (!known_peer)
		/* Someone else answering a query of ours: a spoofing attempt, a
		 * misconfigured upstream, or an answer for another service that
		 * shares the pool socket (a KDC reply can start with the same two
		 * octets). */
		return r ? V_STRANGER : V_NONE;
	if (!r)
		return f->id_head[id] != FWD_NIL ? V_MISMATCH_SOCKET : V_MISMATCH_ID;
	if (r->h.fd != fd)
		return V_MISMATCH_SOCKET;
	if (!same_addr(from, &f->up[r->order[r->attempt]].addr))
		return V_MISMATCH_ADDRESS;
	if (dns_parse(resp, msg, len) != DNS_OK || !(resp->hdr.flags & DNS_FLAG_QR))
		return V_GARBAGE;
	if (!dns_question_matches(&r->qmsg, resp, f->use_0x20))
		return V_MISMATCH_QUESTION;
	*rp = r;
	return V_ANSWER;
}

bool dns_fwd_take_answer(struct dns_fwd *f, int fd, uint16_t local_port,
			 const struct sockaddr *from, socklen_t fromlen,
			 const uint8_t *msg, size_t len)
{
	(void)fromlen;
	struct fwd_query *r = NULL;
	struct dns_msg resp;
	if (judge(f, fd, local_port, from, msg, len, &r, &resp) != V_ANSWER)
		return false;
	fwd_accept(f, r, &resp, msg, len);
	return true;
}

bool dns_fwd_on_upstream_reply(struct dns_fwd *f, int fd, uint16_t local_port,
			       const struct sockaddr *from, socklen_t fromlen,
			       const uint8_t *msg, size_t len)
{
	(void)fromlen;
	struct fwd_query *r = NULL;
	struct dns_msg resp;
	switch (judge(f, fd, local_port, from, msg, len, &r, &resp)) {
	case V_NONE:
		return false;
	case V_STRANGER:
		/* Counted, but left to the other services. */
		f->st.mismatch_address++;
		return false;
	case V_ANSWER:
		fwd_accept(f, r, &resp, msg, len);
		break;
	case V_GARBAGE:
		f->st.garbage++;
		break;
	case V_MISMATCH_ID:
		f->st.mismatch_id++;
		break;
	case V_MISMATCH_SOCKET:
		f->st.mismatch_socket++;
		break;
	case V_MISMATCH_ADDRESS:
		f->st.mismatch_address++;
		break;
	case V_MISMATCH_QUESTION:
		f->st.mismatch_question++;
		break;
	}
	return true;
}

void fwd_accept(struct dns_fwd *f, struct fwd_query *r, struct dns_msg *resp,
		const uint8_t *msg, size_t len)
{
	struct fwd_upstream *u = &f->up[r->order[r->attempt]];
	f->st.upstream_answers++;
	u->failures = 0;
	u->answered = true;
	u->last_answer = loop_now(f->loop);
	rec_unhash(f, r);
	relay_answer(f, r, resp, msg, len);
	rec_free(f, r);
}

/* ---- life cycle and counters --------------------------------------------- */

/*
 * The loop's flush hook: queries waiting for room on upstream TCP
 * connections go out, then the UDP answers of the whole iteration.
 */
static void on_iteration_end(struct loop *l, void *arg)
{
	(void)l;
	struct dns_fwd *f = arg;
	fwd_utcp_drain(f);
	fwd_udp_flush(f);
}

struct dns_fwd *dns_fwd_new(struct loop *l, struct pool *p,
			    const struct dns_fwd_config *cfg, char *err,
			    size_t errlen)
{
	struct dns_fwd *f = NULL;
	const char *why = "out of memory";

	if (cfg->nupstream > DNS_FWD_MAX_UPSTREAMS) {
		why = "too many upstreams";
		goto fail;
	}
	if (cfg->nupstream > 0 && !p) {
		why = "upstreams need a socket pool ([pool] section)";
		goto fail;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		goto fail;
	*f = (struct dns_fwd){
		.loop = l,
		.pool = p,
		.hosts = cfg->hosts,
		.timeout_ms = cfg->upstream_timeout_ms ? cfg->upstream_timeout_ms
						       : DNS_FWD_DEFAULT_TIMEOUT_MS,
		.use_0x20 = cfg->use_0x20,
		.cap = cfg->max_outstanding ? cfg->max_outstanding
					    : DNS_FWD_DEFAULT_MAX_OUTSTANDING,
		.nup = cfg->nupstream,
		.free_head = FWD_NIL,
	};
	for (size_t i = 0; i < cfg->nupstream; i++) {
		const struct dns_fwd_addr *a = &cfg->upstreams[i];
		if (a->len > sizeof(f->up[i].addr)) {
			why = "upstream address of an unknown family";
			goto fail;
		}
		memcpy(&f->up[i].addr, &a->sa, a->len);
		f->up[i].len = a->len;
	}
	struct portset none;
	portset_clear(&none);
	f->guard = guard_new(cfg->blocked_source_ports ? cfg->blocked_source_ports
						       : &none);
	f->q = calloc(f->cap, sizeof(*f->q));
	f->id_head = malloc(65536 * sizeof(*f->id_head));
	if (!f->guard || !f->q || !f->id_head)
		goto fail;
	for (uint32_t i = 0; i < 65536; i++)
		f->id_head[i] = FWD_NIL;
	if (loop_add_flush(l, on_iteration_end, f) < 0) {
		why = "too many services on one loop";
		goto fail;
	}
	fwd_utcp_init(f);
	return f;
fail:
	if (errlen)
		snprintf(err, errlen, "dns forwarder: %s", why);
	dns_fwd_free(f);
	return NULL;
}

void dns_fwd_free(struct dns_fwd *f)
{
	if (!f)
		return;
	if (f->q)
		fwd_tcp_close_all(f);
	if (f->q)
		for (uint32_t i = 0; i < f->fresh; i++)
			if (f->q[i].in_use)
				rec_unhash(f, &f->q[i]);
	fwd_utcp_close_all(f);
	/* Answers still queued leave before their listeners close. */
	fwd_udp_flush(f);
	loop_remove_flush(f->loop, on_iteration_end, f);
	fwd_udp_close_all(f);
	guard_free(f->guard);
	free(f->id_head);
	free(f->q);
	free(f);
}
