/*
 * dns/forwarder internals shared by forwarder.c (the outstanding-query
 * table, upstream attempts, reply matching) and forwarder_udp.c (listen
 * sockets and client answers).  Not part of the module's interface.
 */
#ifndef BERTH_DNS_FORWARDER_INT_H
#define BERTH_DNS_FORWARDER_INT_H

#include <netinet/in.h>

#include "berth/guard.h"
#include "berth/loop.h"
#include "berth/session.h"
#include "berth/sockpool.h"
#include "dns/forwarder.h"
#include "dns/wire.h"

#define FWD_NIL UINT32_MAX
#define FWD_RX_BATCH 32u     /* datagrams per recvmmsg on a listen socket */
#define FWD_RX_BUF 4096u     /* longer datagrams are refused as oversize */
#define FWD_ID_TRIES 64u     /* random IDs drawn before giving up a socket */

/* A client address of either family, without the size of sockaddr_storage. */
union fwd_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/*
 * One outstanding query.  Records live in one array allocated at start; a
 * free record is on the free list, a record waiting for an answer is on the
 * chain of its outbound ID (next links either list).
 */
struct fwd_query {
	struct wheel_timer timer;   /* the current attempt's deadline */
	struct dns_fwd *f;          /* owner, for the timer callback */
	uint32_t next;              /* free list or ID chain link */
	bool in_use;
	bool hashed;                /* on an ID chain, holding a pool socket */
	uint8_t listen_idx;         /* UDP listener the query came on */
	struct sess *sess;          /* TCP client's session, or NULL for UDP */
	uint8_t attempt;            /* index into order[] */
	uint8_t norder;
	uint8_t order[DNS_FWD_MAX_UPSTREAMS]; /* upstreams to try, in turn */
	struct pool_handle h;       /* the pool socket of the current attempt */
	uint16_t client_id;         /* the ID the client chose */
	uint16_t client_limit;      /* largest UDP answer the client takes */
	union fwd_sockaddr client;
	socklen_t client_len;
	struct dns_msg qmsg;        /* parse of query[], kept across rewrites */
	uint16_t qlen;
	uint8_t query[DNS_FWD_QUERY_MAX];   /* as sent: our ID, 0x20 case */
	uint8_t client_name[DNS_NAME_MAX];  /* 0x20: the client's own case */
};

struct fwd_upstream {
	union fwd_sockaddr addr;
	socklen_t len;
	unsigned failures;          /* consecutive timeouts */
};

struct fwd_listen {
	struct loop_watch w;
	struct dns_fwd *f;
	int fd;
	uint16_t port;
};

struct dns_fwd {
	struct loop *loop;
	struct pool *pool;
	const struct dns_hosts *hosts;
	struct guard *guard;
	uint64_t timeout_ms;
	bool use_0x20;
	struct fwd_upstream up[DNS_FWD_MAX_UPSTREAMS];
	size_t nup;
	struct fwd_listen listen[DNS_FWD_MAX_LISTEN];
	size_t nlisten;
	struct sess_listener *tcp[DNS_FWD_MAX_LISTEN];
	size_t ntcp;

	struct fwd_query *q;        /* cap records */
	uint32_t cap;
	uint32_t free_head;         /* recycled records */
	uint32_t fresh;             /* records [fresh, cap) never used yet */
	uint32_t *id_head;          /* 65536 chain heads, by outbound ID */

	struct dns_fwd_stats st;
	uint8_t tx[DNS_MSG_MAX];    /* one answer being built */
	uint8_t txtcp[DNS_MSG_MAX + 2]; /* the same, framed for TCP */
	uint8_t rx[FWD_RX_BATCH][FWD_RX_BUF];
};

/* Send len octets of msg from UDP listener idx to the client to. */
void fwd_udp_send(struct dns_fwd *f, unsigned idx, const struct sockaddr *to,
		  socklen_t tolen, const uint8_t *msg, size_t len);

/* Send an error response with rcode to the query q (parsed, maybe broken). */
void fwd_udp_error(struct dns_fwd *f, unsigned idx, const struct sockaddr *to,
		   socklen_t tolen, const struct dns_msg *q, unsigned rcode);

/*
 * Start forwarding the valid query q from a client: over UDP (listener idx,
 * address from) when sess is NULL, else from TCP session sess.  Returns
 * false, counting table_full, when no record is free.
 */
bool fwd_start(struct dns_fwd *f, unsigned idx, const struct sockaddr *from,
	       socklen_t fromlen, const struct dns_msg *q, struct sess *sess);

/* Close every listen socket. */
void fwd_udp_close_all(struct dns_fwd *f);

/* TCP counterparts of fwd_udp_send / fwd_udp_error (forwarder_tcp.c). */
void fwd_tcp_send(struct dns_fwd *f, struct sess *s, const uint8_t *msg,
		  size_t len);
void fwd_tcp_error(struct dns_fwd *f, struct sess *s, const struct dns_msg *q,
		   unsigned rcode);

/* Drop the outstanding queries of a closing session (forwarder.c). */
void fwd_cancel_session(struct dns_fwd *f, struct sess *s);

/* Free every TCP listener, closing its sessions. */
void fwd_tcp_close_all(struct dns_fwd *f);

#endif
