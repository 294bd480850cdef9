/*
 * sockpool_info: what the pool tells the outside about itself (figures for
 * `berthctl pool`, the socket walk, the loop's next deadline and the socket
 * watch); see include/berth/sockpool.h.
 */
#include "sockpool_int.h"

uint64_t pool_next_due(const struct pool *pool)
{
	uint64_t due = UINT64_MAX;
	for (uint32_t i = 0; i < pool->ndrain; i++)
		if (pool->drain[i].deadline_ms < due)
			due = pool->drain[i].deadline_ms;
	uint64_t readmit = pool__refused_next_due(pool);
	if (readmit < due)
		due = readmit;
	if (pool->cfg.mode != POOL_MODE_POOL)
		return due;
	if (pool->cfg.rotate_ms > 0 && pool->slot[pool->head].due_ms < due)
		due = pool->slot[pool->head].due_ms;
	if (pool->nvacant > 0 && pool->refill_at_ms < due)
		due = pool->refill_at_ms;
	return due;
}

void pool_stats(const struct pool *pool, struct pool_stats *out)
{
	struct portset ex = pool->excluded;
	portset_intersect(&ex, &pool->allowed);
	uint32_t outstanding = 0;
	for (uint32_t i = 0; i < pool->nslots; i++)
		if (pool->slot[i].bound)
			outstanding += pool->slot[i].sock.outstanding;
	for (uint32_t i = 0; i < pool->ndrain; i++)
		outstanding += pool->drain[i].sock.outstanding;
	*out = (struct pool_stats){
		.mode = pool->cfg.mode,
		.families = pool->cfg.families,
		.size = pool->cfg.size,
		.rotate_ms = pool->cfg.rotate_ms,
		.allowed = pool->nallowed,
		.excluded = portset_count(&ex),
		.refused = pool->nrefused,
		.available = pool->navail,
		.bound = pool->nbound,
		.outstanding = outstanding,
		.draining = pool->ndrain,
		.drain_timeout_ms = pool->cfg.drain_timeout_ms,
		.acquires = pool->acquires,
		.rotations = pool->rotations,
		.releases = pool->releases,
		.bind_failures = pool->bind_failures,
		.readmitted = pool->readmitted,
		.drain_timeouts = pool->drain_timeouts,
		.tcp_connects = pool->tcp_connects,
		.tcp_refusals = pool->tcp_refusals,
		.tcp_failures = pool->tcp_failures,
	};
}

bool pool_sock_next(const struct pool *pool, uint32_t *cursor,
		    struct pool_sock_info *out)
{
	uint32_t c = *cursor;
	if (c < pool->nslots) {
		const struct pslot *sl = &pool->slot[c];
		bool rotates = pool->cfg.mode == POOL_MODE_POOL &&
			       pool->cfg.rotate_ms > 0;
		*out = (struct pool_sock_info){
			.slot = c,
			.port = sl->bound ? sl->sock.port : 0,
			.fd4 = sl->bound ? sl->sock.fd[FAM_V4] : -1,
			.fd6 = sl->bound ? sl->sock.fd[FAM_V6] : -1,
			.outstanding = sl->bound ? sl->sock.outstanding : 0,
			.draining = false,
			.deadline_ms = rotates ? sl->due_ms : 0,
		};
	} else if (c - pool->nslots < pool->ndrain) {
		const struct pdrain *d = &pool->drain[c - pool->nslots];
		*out = (struct pool_sock_info){
			.slot = d->slot,
			.port = d->sock.port,
			.fd4 = d->sock.fd[FAM_V4],
			.fd6 = d->sock.fd[FAM_V6],
			.outstanding = d->sock.outstanding,
			.draining = true,
			.deadline_ms = d->deadline_ms,
		};
	} else {
		return false;
	}
	*cursor = c + 1;
	return true;
}

void pool_set_watch(struct pool *pool, pool_watch_fn *fn, void *arg)
{
	pool->watch = fn;
	pool->watch_arg = arg;
	for (uint32_t i = 0; i < pool->nslots; i++)
		if (pool->slot[i].bound)
			pool__announce(pool, &pool->slot[i].sock, true);
	for (uint32_t i = 0; i < pool->ndrain; i++)
		pool__announce(pool, &pool->drain[i].sock, true);
}
