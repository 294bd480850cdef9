/*
 * sockpool_int: the pool's private state, shared by sockpool.c (drawing,
 * binding, rotation, release) and sockpool_info.c (introspection and the
 * socket watch).  Nothing outside those two files includes it.
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
	struct portset excluded;      /* never drawn again */
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
	/* pool_connect_tcp draws from tcp_ok = allowed - excluded. */
	struct portset tcp_ok;
	uint32_t ntcp_ok;
	uint64_t tcp_connects, tcp_refusals, tcp_failures;
	pool_watch_fn *watch;
	void *watch_arg;
};

/* Report every fd of s to the watch, if one is set, as opened or closing. */
void pool__announce(struct pool *pool, const struct psock *s, bool open);

#endif
