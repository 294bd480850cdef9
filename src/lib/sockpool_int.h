/*
 * sockpool_int: the pool's private state, shared by sockpool.c (drawing,
 * binding, rotation, release), sockpool_refused.c (ports held out after a
 * refused bind) and sockpool_info.c (introspection and the socket watch).
 * Nothing outside those three files includes it.
 */
#ifndef BERTH_SOCKPOOL_INT_H
#define BERTH_SOCKPOOL_INT_H

#include "berth/sockpool.h"

enum { FAM_V4 = 0, FAM_V6 = 1, NFAM = 2 };

/* One port bound in one or both families. */
struct psock {
	int fd[NFAM];         /* -1 when that family is not bound */
	uint16_t port;
	uint32_t outstanding; /* queries in flight on it */
	uint32_t gen;         /* tells this socket from earlier ones of the slot */
};

struct pslot {
	struct psock sock;
	bool bound;           /* false: empty (vacant) */
	uint64_t due_ms;      /* next rotation */
};

/* A port held out after a refused bind, and when it may be drawn again. */
struct prefused {
	uint16_t port;
	uint64_t due_ms;
};

/* A socket that left its slot but still has queries in flight. */
struct pdrain {
	struct psock sock;
	uint32_t slot;
	uint64_t deadline_ms;
};

struct pool {
	struct pool_config cfg;       /* defaults applied */
	struct pool_ops ops;
	void *ctx;
	struct portset allowed;       /* the plan's ports, as given */
	struct portset excluded;      /* not drawn: for good, or refused */
	struct portset refused;       /* excluded only until a hold is over */
	uint32_t nrefused;
	/*
	 * The holds in the order the binds were refused, as a ring.  A hold
	 * starts at the first time the caller gives after its refusal (those
	 * not started yet are the last refq_unstarted entries, due_ms
	 * UINT64_MAX); every hold is equally long, so the ring is also the
	 * order they end in: the next port due is always at refq_head.  A port
	 * is in the ring at most once; one released meanwhile keeps its entry,
	 * which then does nothing.
	 */
	struct prefused *refq;
	uint32_t refq_head, refq_len, refq_cap, refq_unstarted;
	uint64_t now_ms;              /* the latest time the caller gave */
	struct portset avail;         /* allowed - excluded - ports we hold */
	uint32_t navail;              /* portset_count(&avail), kept current */
	uint32_t nallowed;
	struct pslot *slot;           /* cfg.size entries */
	uint32_t nslots;
	uint32_t nbound;
	uint32_t *vacant;             /* stack of empty slot indices */
	uint32_t nvacant;
	uint64_t refill_at_ms;        /* pool mode: next retry of empty slots */
	/*
	 * Rotation deadlines are drawn once, sorted and given to slots in
	 * index order; every rotation adds the same period, so the order never
	 * changes and the next slot due is always slot[head]: no heap needed.
	 */
	uint32_t head;
	struct pdrain *drain;
	uint32_t ndrain, drain_cap;
	/* What the last failed draw tried, for the caller's message. */
	uint16_t fail_port;
	int fail_family;
	uint64_t acquires, rotations, releases, bind_failures, drain_timeouts;
	uint64_t readmitted;
	/* pool_connect_tcp draws from tcp_ok = allowed - excluded. */
	struct portset tcp_ok;
	uint32_t ntcp_ok;
	uint64_t tcp_connects, tcp_refusals, tcp_failures;
	pool_watch_fn *watch;
	void *watch_arg;
};

/* Keep port out of the draws (UDP and TCP) for the pool's life. */
void pool__exclude(struct pool *pool, uint16_t port);

/* Make an excluded port drawable again, UDP and TCP, when it is allowed.
 * No socket of ours can hold it: an excluded port is never bound. */
void pool__readmit(struct pool *pool, uint16_t port);

/* Another socket refused port a bind: hold it out for POOL_REFUSED_HOLD_MS
 * from the next time the caller gives (for good when there is no memory to
 * remember the hold). */
void pool__refuse(struct pool *pool, uint16_t port);

/* Take port off the refused set, so its hold ends without a readmission;
 * false when it was not on it. */
bool pool__refused_forget(struct pool *pool, uint16_t port);

/* Start the holds waiting for a time at now_ms, then readmit every refused
 * port whose hold is over. */
void pool__refused_expire(struct pool *pool, uint64_t now_ms);

/* When the next hold ends (the pool's latest time when a hold waits to
 * start), or UINT64_MAX when no port is held out. */
uint64_t pool__refused_next_due(const struct pool *pool);

/* Report every fd of s to the watch, if one is set, as opened or closing. */
void pool__announce(struct pool *pool, const struct psock *s, bool open);

#endif
