/*
 * sockpool: outbound UDP sockets bound to uniformly random ports.
 *
 * Every port comes from the plan's allowed set (dynamic range minus reserved
 * ports) minus an excluded set (ports local sockets held when the pool was
 * built, ports released by the operator, ports whose bind failed with
 * EACCES, and for POOL_REFUSED_HOLD_MS each port another socket held when
 * the pool tried to bind it: EADDRINUSE).  A draw is k =
 * random_uniform(count); port = portset_nth(available, k), so every
 * available port is equally likely and a reserved or in-use port is never
 * even tried.
 *
 * A refused port is held out for a while, not for good: most ports another
 * program holds are its clients' ephemeral sockets, gone a moment later.
 * Were each refusal for good, the allowed set would shrink with every
 * collision over the pool's life (in per-query mode, by thousands of ports
 * an hour on a busy host), and with it the entropy of every query.  A port
 * a service keeps costs one refused bind per hold, no more.
 *
 * Two modes:
 *  - POOL_MODE_POOL pre-binds `size` sockets on distinct ports.  A query
 *    takes a socket chosen uniformly among them (pool_acquire) and gives it
 *    back (pool_done).  With rotate_ms > 0 each socket moves to a fresh random
 *    port once per period; the deadlines are spread at random over the first
 *    period so rotations trickle instead of arriving all at once.
 *  - POOL_MODE_PER_QUERY holds no sockets at rest: pool_acquire binds a fresh
 *    random port for each query and pool_done closes it.  `size` caps how
 *    many such sockets are open at once.
 *
 * A slot is a port.  With both families enabled a slot holds an IPv4 and an
 * IPv6 socket on the same port number: the port is the unit the plan, the
 * operator ("berthctl release PORT") and the kernel's port tables speak of,
 * so one draw, one exclusion and one release cover both families.  A port
 * is used only when both binds succeed.
 *
 * Sockets that leave a slot (rotation, release) while queries are still in
 * flight on them are "draining": they stay open so replies can still be read,
 * and close when their last query is done or drain_timeout_ms passes,
 * whichever comes first.  A released port is therefore free for another
 * program at once when no query is in flight on it, and otherwise at most
 * drain_timeout_ms later.
 *
 * Time is always the caller's (the event loop's clock, milliseconds); the
 * pool never reads a clock itself.  Ports are host byte order in this API.
 * The pool is not thread-safe: one loop owns it.
 */
#ifndef BERTH_SOCKPOOL_H
#define BERTH_SOCKPOOL_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "berth/portset.h"

#define POOL_DEFAULT_SIZE 2500u          /* SocketPoolSize */
#define POOL_DEFAULT_BIND_ATTEMPTS 16u   /* ports tried per socket */
#define POOL_DEFAULT_DRAIN_MS 5000u      /* longest a draining socket lives */
#define POOL_REFILL_RETRY_MS 1000u       /* retry pace for slots left empty */
#define POOL_REFUSED_HOLD_MS 10000u     /* a refused port sits out this long */

enum pool_mode {
	POOL_MODE_POOL = 0,      /* pre-bound sockets */
	POOL_MODE_PER_QUERY = 1, /* one fresh socket per query */
};

/* Address families a pool binds, as a bit mask. */
#define POOL_FAMILY_INET  1u
#define POOL_FAMILY_INET6 2u

/*
 * The backend: how the pool draws random numbers and opens and closes
 * sockets.  Production passes NULL (pool_sys_ops); unit tests inject a
 * deterministic generator and a fake bind.
 */
struct pool_ops {
	/* A uniform value in [0, bound), bound >= 1. */
	uint32_t (*random_uniform)(void *ctx, uint32_t bound);
	/*
	 * Open a UDP socket of family (AF_INET or AF_INET6) bound to port on
	 * local_addr, which points at a struct in_addr or struct in6_addr
	 * (all zero: the wildcard).  Returns the fd, or -errno: -EADDRINUSE
	 * ("another socket holds it now") makes the pool hold the port out
	 * for POOL_REFUSED_HOLD_MS and draw another, -EACCES ("never ours to
	 * take") exclude it for good and draw another; any other error is
	 * fatal to the draw.
	 */
	int (*bind_udp)(void *ctx, int family, const void *local_addr,
			uint16_t port);
	/*
	 * Open a TCP socket of family bound to port on local_addr and start a
	 * nonblocking connect to `to` (see pool_connect_tcp).  Returns the fd,
	 * connected or connecting, or -errno: -EADDRINUSE and -EACCES mean
	 * "this port will not do for this connection" (another socket holds
	 * it, or the connection's address pair is taken) and make the pool
	 * draw another; any other error is fatal to the call.  May be NULL
	 * when pool_connect_tcp is never called.
	 */
	int (*connect_tcp)(void *ctx, int family, const void *local_addr,
			   uint16_t port, const struct sockaddr *to,
			   socklen_t tolen);
	/* Close an fd returned by bind_udp. */
	int (*close_fd)(void *ctx, int fd);
};

/*
 * The real backend: arc4random_uniform, and non-blocking close-on-exec
 * datagram sockets (IPV6_V6ONLY on AF_INET6, so an IPv6 socket never claims
 * the IPv4 port of another program).  Its ctx is unused.
 */
extern const struct pool_ops pool_sys_ops;

/* Zero-initialised fields take the defaults given. */
struct pool_config {
	uint32_t size;               /* sockets (ports); 0 = POOL_DEFAULT_SIZE */
	enum pool_mode mode;         /* default POOL_MODE_POOL */
	uint32_t rotate_ms;          /* pool mode: rotation period; 0 = never */
	unsigned families;           /* POOL_FAMILY_* mask; 0 = IPv4 only */
	struct in_addr bind4;        /* local IPv4 address; 0 = wildcard */
	struct in6_addr bind6;       /* local IPv6 address; :: = wildcard */
	uint32_t max_bind_attempts;  /* ports tried per socket before giving
					up; 0 = POOL_DEFAULT_BIND_ATTEMPTS */
	uint32_t drain_timeout_ms;   /* 0 = POOL_DEFAULT_DRAIN_MS */
};

struct pool;

/*
 * What pool_acquire hands a query: the socket to send from and what
 * pool_done needs to find it again.  A value type; copy it freely.
 */
struct pool_handle {
	uint32_t slot;  /* slot index */
	uint32_t gen;   /* which socket of that slot (changes on re-bind) */
	int fd;         /* the socket of the requested family */
	int family;     /* AF_INET or AF_INET6 */
	uint16_t port;  /* local port, host order */
};

/*
 * Build a pool.  cfg, allowed and excluded_in_use are copied (all borrowed
 * for the call only; cfg == NULL takes every default, excluded_in_use may be
 * NULL).  Ports are drawn from
 * allowed minus excluded_in_use; ops == NULL selects pool_sys_ops, and ctx
 * is passed to every op.  now_ms is the caller's clock, used to spread the
 * first rotation deadlines over [now_ms, now_ms + rotate_ms).
 *
 * Fails, with a one-line reason in err (may be NULL when errlen is 0), when
 * size exceeds the ports left to draw (both numbers named), when a socket
 * could not be bound after max_bind_attempts ports (the message gives the
 * allowed, in-use and failed counts), or on any other bind error.
 *
 * Returns a pool owned by the caller (pool_free), or NULL.
 */
struct pool *pool_create(const struct pool_config *cfg,
			 const struct portset *allowed,
			 const struct portset *excluded_in_use,
			 const struct pool_ops *ops, void *ctx, uint64_t now_ms,
			 char *err, size_t errlen);

/* Close every socket (live and draining) and free pool; NULL is a no-op. */
void pool_free(struct pool *pool);

/*
 * Take a socket for one outbound query.  Pool mode: a slot chosen uniformly
 * among the bound ones, its in-flight count raised.  Per-query mode: a fresh
 * socket on a freshly drawn port.  family is AF_INET or AF_INET6 and must be
 * enabled in the config.  On success fills *out and returns 0; the query must
 * end with pool_done(out).  Returns -EAFNOSUPPORT for a family the pool does
 * not bind, -EAGAIN when no socket is available (every slot empty, or the
 * per-query cap reached), or the bind error in per-query mode.
 */
int pool_acquire(struct pool *pool, int family, struct pool_handle *out);

/*
 * Start one outbound TCP connection (an upstream's TCP leg) to `to` from a
 * port drawn the way the pool's own are: uniformly over the plan's allowed
 * ports minus the excluded ones, on the pool's local address of to's family
 * (AF_INET or AF_INET6, whatever families the pool binds for UDP).  Without
 * this the kernel would pick the port, and its choice knows nothing of the
 * ports the plan reserves.
 *
 * TCP and UDP ports are separate, so a port the pool's UDP sockets hold may
 * be drawn.  The real backend sets SO_REUSEADDR on these sockets, so a port
 * is shared only with sockets that allow it and never with a listener:
 * berthd's own connections share ports, and a port its own closed
 * connection keeps in TIME_WAIT serves connections to other peers at once.
 * A port refused for this connection (held, or its address pair with `to`
 * taken) is skipped, not excluded.  Each port can thus carry one connection
 * per peer at a time, and a connection berthd closes first holds its pair
 * for TIME_WAIT (60 s on Linux), as with the kernel's own choice.
 *
 * Returns a nonblocking close-on-exec fd the caller owns, connected or
 * connecting, with its port (host order) in *port (may be NULL); or
 * -errno: -EADDRINUSE when max_bind_attempts draws were all refused,
 * -EADDRNOTAVAIL when every allowed port is excluded, -EOPNOTSUPP when the
 * backend has no connect_tcp, -EAFNOSUPPORT for another family, or another
 * socket, bind or connect error as is.
 */
int pool_connect_tcp(struct pool *pool, const struct sockaddr *to,
		     socklen_t tolen, uint16_t *port);

/*
 * End a query taken with pool_acquire.  Lowers the socket's in-flight count;
 * a draining socket whose count reaches zero is closed now, and so is a
 * per-query socket.  h is borrowed.  Returns 0, or -ENOENT when the socket
 * is already gone (its drain timed out): harmless, nothing changes.
 */
int pool_done(struct pool *pool, const struct pool_handle *h);

/*
 * Do what time asks, with now_ms from the caller's clock: rotate each slot
 * whose deadline has passed (at most once per slot per call), close draining
 * sockets past drain_timeout_ms, retry empty slots every
 * POOL_REFILL_RETRY_MS, and make refused ports drawable again once their
 * hold is over.  A hold starts at the first pool_tick (or
 * pool_release_port) after the refusal, since pool_acquire has no clock:
 * a caller that ticks at least every T ms holds a port between
 * POOL_REFUSED_HOLD_MS and POOL_REFUSED_HOLD_MS + T, never less.  After a
 * pool_acquire, pool_next_due may be earlier than before (a hold waiting to
 * start is due at once).  Cheap when nothing is due.
 */
void pool_tick(struct pool *pool, uint64_t now_ms);

/*
 * The earliest time pool_tick has work to do, or UINT64_MAX when none is
 * scheduled, so a loop can size its poll timeout.
 */
uint64_t pool_next_due(const struct pool *pool);

/*
 * Give a port back while running: the port joins the excluded set for the
 * pool's lifetime (a refused port's hold becomes for good), and a slot
 * holding it is re-bound to a fresh port at once (the slot stays empty,
 * retried by pool_tick, if no port can be bound).
 * The old socket closes now when no query is in flight on it, else it drains.
 *
 * Returns 0 when the pool held the port and it is free now, 1 when it is
 * still held by in-flight queries (free when they finish, at most
 * drain_timeout_ms from now), -ENOENT when the pool held no socket on it (it
 * is still excluded from future draws).
 */
int pool_release_port(struct pool *pool, uint16_t port, uint64_t now_ms);

/* Counters and sizes for `berthctl pool` and metrics. */
struct pool_stats {
	enum pool_mode mode;
	unsigned families;        /* POOL_FAMILY_* mask */
	uint32_t size;            /* configured sockets (per-query: cap) */
	uint32_t rotate_ms;
	uint32_t allowed;         /* ports in the plan's allowed set */
	uint32_t excluded;        /* allowed ports not drawn now: in use at
				     start, released, EACCES, and refused */
	uint32_t refused;         /* of those, EADDRINUSE refusals held out
				     for POOL_REFUSED_HOLD_MS, then back in
				     the draws */
	uint32_t available;       /* allowed ports free to draw now */
	uint32_t bound;           /* slots holding a socket now */
	uint32_t outstanding;     /* queries in flight, live and draining */
	uint32_t draining;        /* sockets left behind, not yet closed */
	uint32_t drain_timeout_ms; /* longest one stays open after it left */
	uint64_t acquires;
	uint64_t rotations;       /* slots moved to a fresh port by rotation */
	uint64_t releases;        /* pool_release_port calls */
	uint64_t bind_failures;   /* binds refused with EADDRINUSE/EACCES */
	uint64_t readmitted;      /* refused ports back in the draws */
	uint64_t drain_timeouts;  /* draining sockets closed by the timeout */
	uint64_t tcp_connects;    /* TCP connections pool_connect_tcp started */
	uint64_t tcp_refusals;    /* ports it drew and had to skip */
	uint64_t tcp_failures;    /* calls that found no port, or failed */
};

/* Fill *out (caller-owned) with the pool's current figures. */
void pool_stats(const struct pool *pool, struct pool_stats *out);

/* One socket as `berthctl pool` lists it. */
struct pool_sock_info {
	uint32_t slot;
	uint16_t port;            /* 0 for an empty slot */
	int fd4, fd6;             /* -1 when that family is not bound */
	uint32_t outstanding;
	bool draining;            /* left its slot, closes when done */
	uint64_t deadline_ms;     /* next rotation (live, 0 = none) or drain
				     timeout (draining) */
};

/*
 * Walk every slot (empty ones included) and then every draining socket.
 * Start with *cursor = 0; each call that returns true fills *out and advances
 * *cursor; false means the walk is over.  The pool must not change during a
 * walk.
 */
bool pool_sock_next(const struct pool *pool, uint32_t *cursor,
		    struct pool_sock_info *out);

/*
 * Socket watch: the event loop needs every fd the pool opens (to read the
 * replies) and must forget each one before it is closed.  fn is called with
 * open = true after a socket is bound and open = false just before it is
 * closed.  Setting a watch reports every socket already open; fn == NULL
 * removes the watch.  arg is borrowed and passed back untouched.
 */
typedef void pool_watch_fn(void *arg, int fd, int family, uint16_t port,
			   bool open);
void pool_set_watch(struct pool *pool, pool_watch_fn *fn, void *arg);

#endif
