/*
 * sockpool_refused: ports whose bind another socket refused, held out of the
 * draws for POOL_REFUSED_HOLD_MS and then drawn again (see the reasons in
 * include/berth/sockpool.h).
 */
#include <stdlib.h>

#include "sockpool_int.h"

/* Make room for one more hold: 0, or -1 when out of memory. */
static int ring_reserve(struct pool *pool)
{
	if (pool->refq_len < pool->refq_cap)
		return 0;
	/* At most one entry per port: 65536 entries is the most ever. */
	uint32_t cap = pool->refq_cap ? pool->refq_cap * 2 : 64;
	if (cap > 65536)
		cap = 65536;
	if (cap <= pool->refq_len)
		return -1;
	struct prefused *q = malloc(cap * sizeof(*q));
	if (!q)
		return -1;
	/* Unroll the ring so the oldest hold is first again. */
	for (uint32_t i = 0; i < pool->refq_len; i++)
		q[i] = pool->refq[(pool->refq_head + i) % pool->refq_cap];
	free(pool->refq);
	pool->refq = q;
	pool->refq_cap = cap;
	pool->refq_head = 0;
	return 0;
}

void pool__refuse(struct pool *pool, uint16_t port)
{
	pool__exclude(pool, port);
	if (portset_has(&pool->refused, port) || ring_reserve(pool) < 0)
		return;
	uint32_t tail = (pool->refq_head + pool->refq_len) % pool->refq_cap;
	pool->refq[tail] = (struct prefused){ .port = port,
					      .due_ms = UINT64_MAX };
	pool->refq_len++;
	pool->refq_unstarted++;
	portset_add(&pool->refused, port);
	pool->nrefused++;
}

bool pool__refused_forget(struct pool *pool, uint16_t port)
{
	if (!portset_has(&pool->refused, port))
		return false;
	portset_del(&pool->refused, port);
	pool->nrefused--;
	return true;
}

void pool__refused_expire(struct pool *pool, uint64_t now_ms)
{
	uint64_t due = now_ms + POOL_REFUSED_HOLD_MS;
	for (uint32_t i = pool->refq_len - pool->refq_unstarted;
	     i < pool->refq_len; i++)
		pool->refq[(pool->refq_head + i) % pool->refq_cap].due_ms = due;
	pool->refq_unstarted = 0;
	while (pool->refq_len > 0) {
		const struct prefused *e = &pool->refq[pool->refq_head];
		if (now_ms < e->due_ms)
			break;
		uint16_t port = e->port;
		pool->refq_head = (pool->refq_head + 1) % pool->refq_cap;
		pool->refq_len--;
		/* Released since it was refused: that is for good. */
		if (!pool__refused_forget(pool, port))
			continue;
		pool__readmit(pool, port);
		pool->readmitted++;
	}
}

uint64_t pool__refused_next_due(const struct pool *pool)
{
	if (pool->refq_unstarted > 0)
		return pool->now_ms;
	return pool->refq_len ? pool->refq[pool->refq_head].due_ms : UINT64_MAX;
}
