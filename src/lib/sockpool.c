/*
 * sockpool: random-port UDP socket pool; see include/berth/sockpool.h.
 *
 * Three port sets drive every draw: `allowed` (the plan's, as given),
 * `excluded` (not drawn: in use at start, released and EACCES, for good;
 * EADDRINUSE refusals, for POOL_REFUSED_HOLD_MS, those also in `refused`)
 * and `avail` = allowed - excluded - ports our own sockets hold.  A draw is
 * a uniform index into avail, so uniformity needs no rejection loop and an
 * excluded port is never tried.  TCP connections (pool_connect_tcp) draw
 * the same way from `tcp_ok` = allowed - excluded: TCP ports are apart from
 * the UDP ports our sockets hold.
 */
#include "sockpool_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const int fam_af[NFAM] = { AF_INET, AF_INET6 };

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Our own sockets hold port now: keep it out of the draws. */
static void take_port(struct pool *pool, uint16_t port)
{
	if (portset_has(&pool->avail, port)) {
		portset_del(&pool->avail, port);
		pool->navail--;
	}
}

/* Our socket on port closed: the port may be drawn again unless excluded. */
static void give_back(struct pool *pool, uint16_t port)
{
	if (portset_has(&pool->allowed, port) &&
	    !portset_has(&pool->excluded, port) &&
	    !portset_has(&pool->avail, port)) {
		portset_add(&pool->avail, port);
		pool->navail++;
	}
}

void pool__exclude(struct pool *pool, uint16_t port)
{
	portset_add(&pool->excluded, port);
	take_port(pool, port);
	if (portset_has(&pool->tcp_ok, port)) {
		portset_del(&pool->tcp_ok, port);
		pool->ntcp_ok--;
	}
}

void pool__readmit(struct pool *pool, uint16_t port)
{
	portset_del(&pool->excluded, port);
	give_back(pool, port);
	if (portset_has(&pool->allowed, port) &&
	    !portset_has(&pool->tcp_ok, port)) {
		portset_add(&pool->tcp_ok, port);
		pool->ntcp_ok++;
	}
}

void pool__announce(struct pool *pool, const struct psock *s, bool open)
{
	if (!pool->watch)
		return;
	for (int f = 0; f < NFAM; f++)
		if (s->fd[f] >= 0)
			pool->watch(pool->watch_arg, s->fd[f], fam_af[f],
				    s->port, open);
}

/* Close every fd of s (telling the watch first) and free its port. */
static void sock_close(struct pool *pool, struct psock *s)
{
	pool__announce(pool, s, false);
	for (int f = 0; f < NFAM; f++) {
		if (s->fd[f] >= 0)
			pool->ops.close_fd(pool->ctx, s->fd[f]);
		s->fd[f] = -1;
	}
	give_back(pool, s->port);
}

/* Bind port in every family of fams into *s; all or nothing. */
static int sock_open(struct pool *pool, unsigned fams, uint16_t port,
		     struct psock *s)
{
	const void *addr[NFAM] = { &pool->cfg.bind4, &pool->cfg.bind6 };
	int rc = 0;
	s->fd[FAM_V4] = s->fd[FAM_V6] = -1;
	s->port = port;
	for (int f = 0; f < NFAM; f++) {
		if (!(fams & (1u << f)))
			continue;
		int fd = pool->ops.bind_udp(pool->ctx, fam_af[f], addr[f], port);
		if (fd < 0) {
			rc = fd;
			pool->fail_family = fam_af[f];
			goto fail;
		}
		s->fd[f] = fd;
	}
	return 0;
fail:
	for (int f = 0; f < NFAM; f++) {
		if (s->fd[f] >= 0)
			pool->ops.close_fd(pool->ctx, s->fd[f]);
		s->fd[f] = -1;
	}
	return rc;
}

/*
 * Draw ports uniformly from avail until one binds in every family of fams,
 * at most max_bind_attempts times.  A port refused with EADDRINUSE belongs to
 * another socket for now: it is held out (pool__refuse) and another is
 * drawn.  One refused with EACCES is not ours to take at all: excluded for
 * good.
 * Returns 0 with *s bound (gen and outstanding left to the caller),
 * -EADDRNOTAVAIL when no port is left, -EADDRINUSE when the attempts ran
 * out, or another bind error as is.
 */
static int draw_bind(struct pool *pool, unsigned fams, struct psock *s)
{
	for (uint32_t n = 0; n < pool->cfg.max_bind_attempts; n++) {
		if (pool->navail == 0)
			return -EADDRNOTAVAIL;
		uint32_t k = pool->ops.random_uniform(pool->ctx, pool->navail);
		int32_t port = portset_nth(&pool->avail, k);
		if (port < 0)
			return -EINVAL; /* a generator out of [0, bound) */
		pool->fail_port = (uint16_t)port;
		int rc = sock_open(pool, fams, (uint16_t)port, s);
		if (rc == 0) {
			take_port(pool, (uint16_t)port);
			pool__announce(pool, s, true);
			return 0;
		}
		if (rc != -EADDRINUSE && rc != -EACCES)
			return rc;
		pool->bind_failures++;
		/* In use by another socket: most likely a client's, gone soon.
		 * EACCES (a privileged port, a security policy) lasts. */
		if (rc == -EADDRINUSE)
			pool__refuse(pool, (uint16_t)port);
		else
			pool__exclude(pool, (uint16_t)port);
	}
	return -EADDRINUSE;
}

/* Put a fresh socket into empty slot idx, in the families fams. */
static int slot_fill(struct pool *pool, uint32_t idx, unsigned fams)
{
	struct pslot *sl = &pool->slot[idx];
	struct psock fresh;
	int rc = draw_bind(pool, fams, &fresh);
	if (rc < 0)
		return rc;
	fresh.gen = sl->sock.gen + 1;
	fresh.outstanding = 0;
	sl->sock = fresh;
	sl->bound = true;
	pool->nbound++;
	return 0;
}

/* Mark slot idx empty (its socket already moved elsewhere). */
static void slot_vacate(struct pool *pool, uint32_t idx)
{
	struct pslot *sl = &pool->slot[idx];
	sl->bound = false;
	sl->sock.fd[FAM_V4] = sl->sock.fd[FAM_V6] = -1;
	sl->sock.outstanding = 0;
	sl->sock.port = 0;
	pool->nbound--;
	pool->vacant[pool->nvacant++] = idx;
}

/*
 * A socket left slot idx: close it now when nothing is in flight on it,
 * else keep it for the replies.  Returns 1 when it drains, 0 when closed.
 */
static int retire(struct pool *pool, uint32_t idx, struct psock *old,
		  uint64_t now_ms)
{
	if (old->outstanding == 0) {
		sock_close(pool, old);
		return 0;
	}
	if (pool->ndrain == pool->drain_cap) {
		uint32_t cap = pool->drain_cap ? pool->drain_cap * 2 : 16;
		struct pdrain *d = realloc(pool->drain, cap * sizeof(*d));
		if (!d) {
			/* Losing a few replies beats leaking the socket. */
			sock_close(pool, old);
			return 0;
		}
		pool->drain = d;
		pool->drain_cap = cap;
	}
	pool->drain[pool->ndrain++] = (struct pdrain){
		.sock = *old,
		.slot = idx,
		.deadline_ms = now_ms + pool->cfg.drain_timeout_ms,
	};
	return 1;
}

/* Close draining socket i and drop it from the list. */
static void drain_close(struct pool *pool, uint32_t i)
{
	sock_close(pool, &pool->drain[i].sock);
	pool->drain[i] = pool->drain[--pool->ndrain];
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/*
 * Give slot i the deadline now + the i-th smallest of nslots uniform draws
 * from [0, rotate): random, so nobody can predict when a port moves, and
 * spread, so the pool never rotates in one burst.
 */
static int spread_deadlines(struct pool *pool, uint64_t now_ms)
{
	uint64_t *off = calloc(pool->nslots, sizeof(*off));
	if (!off)
		return -ENOMEM;
	for (uint32_t i = 0; i < pool->nslots; i++)
		off[i] = pool->ops.random_uniform(pool->ctx, pool->cfg.rotate_ms);
	qsort(off, pool->nslots, sizeof(*off), cmp_u64);
	for (uint32_t i = 0; i < pool->nslots; i++)
		pool->slot[i].due_ms = now_ms + off[i];
	free(off);
	return 0;
}

/* The config with defaults applied, or -EINVAL with a reason. */
static int config_resolve(struct pool_config *c, const struct pool_config *in,
			  char *err, size_t errlen)
{
	*c = in ? *in : (struct pool_config){0};
	if (c->size == 0)
		c->size = POOL_DEFAULT_SIZE;
	if (c->families == 0)
		c->families = POOL_FAMILY_INET;
	if (c->max_bind_attempts == 0)
		c->max_bind_attempts = POOL_DEFAULT_BIND_ATTEMPTS;
	if (c->drain_timeout_ms == 0)
		c->drain_timeout_ms = POOL_DEFAULT_DRAIN_MS;
	if (c->mode != POOL_MODE_POOL && c->mode != POOL_MODE_PER_QUERY) {
		set_err(err, errlen, "pool: unknown mode %d", (int)c->mode);
		return -EINVAL;
	}
	if (c->families & ~(POOL_FAMILY_INET | POOL_FAMILY_INET6)) {
		set_err(err, errlen, "pool: unknown family mask %#x",
			c->families);
		return -EINVAL;
	}
	return 0;
}

/* Explain why slot `filled` of pool_create could not be bound. */
static void create_error(const struct pool *pool, uint32_t filled,
			 uint32_t in_use, int rc, char *err, size_t errlen)
{
	uint32_t failed = (uint32_t)pool->bind_failures;
	if (rc == -EADDRINUSE)
		set_err(err, errlen,
			"pool: socket %u of %u: %u ports in a row refused to "
			"bind (EADDRINUSE/EACCES, last port %u); the plan "
			"allows %u ports, %u were in use, %u failed to bind",
			filled + 1, pool->nslots, pool->cfg.max_bind_attempts,
			pool->fail_port, pool->nallowed, in_use, failed);
	else if (rc == -EADDRNOTAVAIL)
		set_err(err, errlen,
			"pool: ran out of ports after %u of %u sockets; the "
			"plan allows %u ports, %u were in use, %u failed to "
			"bind",
			filled, pool->nslots, pool->nallowed, in_use, failed);
	else
		set_err(err, errlen, "pool: binding UDP port %u (%s) failed: %s",
			pool->fail_port,
			pool->fail_family == AF_INET6 ? "IPv6" : "IPv4",
			strerror(-rc));
}

struct pool *pool_create(const struct pool_config *cfg,
			 const struct portset *allowed,
			 const struct portset *excluded_in_use,
			 const struct pool_ops *ops, void *ctx, uint64_t now_ms,
			 char *err, size_t errlen)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	if (!pool) {
		set_err(err, errlen, "pool: out of memory");
		return NULL;
	}
	if (config_resolve(&pool->cfg, cfg, err, errlen) < 0)
		goto fail;
	pool->ops = ops ? *ops : pool_sys_ops;
	pool->ctx = ctx;
	pool->now_ms = now_ms;
	if (!pool->ops.random_uniform || !pool->ops.bind_udp ||
	    !pool->ops.close_fd) {
		set_err(err, errlen, "pool: incomplete backend (pool_ops)");
		goto fail;
	}

	pool->allowed = *allowed;
	portset_clear(&pool->excluded);
	portset_clear(&pool->refused);
	if (excluded_in_use)
		pool->excluded = *excluded_in_use;
	pool->avail = pool->allowed;
	portset_diff(&pool->avail, &pool->excluded);
	pool->navail = portset_count(&pool->avail);
	pool->tcp_ok = pool->avail;
	pool->ntcp_ok = pool->navail;
	pool->nallowed = portset_count(&pool->allowed);
	uint32_t in_use = pool->nallowed - pool->navail;
	if (pool->cfg.size > pool->navail) {
		set_err(err, errlen,
			"pool: size %u exceeds the %u ports left to draw (the "
			"plan allows %u ports, %u of them in use)",
			pool->cfg.size, pool->navail, pool->nallowed, in_use);
		goto fail;
	}

	pool->nslots = pool->cfg.size;
	pool->slot = calloc(pool->nslots, sizeof(*pool->slot));
	pool->vacant = calloc(pool->nslots, sizeof(*pool->vacant));
	if (!pool->slot || !pool->vacant) {
		set_err(err, errlen, "pool: out of memory for %u slots",
			pool->nslots);
		goto fail;
	}
	for (uint32_t i = 0; i < pool->nslots; i++)
		pool->slot[i].sock = (struct psock){ .fd = { -1, -1 } };

	if (pool->cfg.mode == POOL_MODE_PER_QUERY) {
		/* Every slot starts empty; the stack pops slot 0 first. */
		for (uint32_t i = 0; i < pool->nslots; i++)
			pool->vacant[i] = pool->nslots - 1 - i;
		pool->nvacant = pool->nslots;
		return pool;
	}
	for (uint32_t i = 0; i < pool->nslots; i++) {
		int rc = slot_fill(pool, i, pool->cfg.families);
		if (rc < 0) {
			create_error(pool, i, in_use, rc, err, errlen);
			goto fail;
		}
	}
	if (pool->cfg.rotate_ms > 0 && spread_deadlines(pool, now_ms) < 0) {
		set_err(err, errlen, "pool: out of memory");
		goto fail;
	}
	return pool;
fail:
	pool_free(pool);
	return NULL;
}

void pool_free(struct pool *pool)
{
	if (!pool)
		return;
	for (uint32_t i = 0; pool->slot && i < pool->nslots; i++)
		if (pool->slot[i].bound)
			sock_close(pool, &pool->slot[i].sock);
	while (pool->ndrain > 0)
		drain_close(pool, pool->ndrain - 1);
	free(pool->drain);
	free(pool->refq);
	free(pool->vacant);
	free(pool->slot);
	free(pool);
}

static int family_index(const struct pool *pool, int family)
{
	int f = family == AF_INET ? FAM_V4 : family == AF_INET6 ? FAM_V6 : -1;
	if (f < 0 || !(pool->cfg.families & (1u << f)))
		return -1;
	return f;
}

int pool_acquire(struct pool *pool, int family, struct pool_handle *out)
{
	int f = family_index(pool, family);
	if (f < 0)
		return -EAFNOSUPPORT;
	uint32_t idx;
	if (pool->cfg.mode == POOL_MODE_PER_QUERY) {
		if (pool->nvacant == 0)
			return -EAGAIN;
		idx = pool->vacant[pool->nvacant - 1];
		/* Only the asked family: a per-query socket serves one query. */
		int rc = slot_fill(pool, idx, 1u << f);
		if (rc < 0)
			return rc;
		pool->nvacant--;
	} else {
		if (pool->nbound == 0)
			return -EAGAIN;
		/*
		 * Redrawing on an empty slot keeps the choice uniform over the
		 * bound ones; empty slots are rare (a failed re-bind), so the
		 * expected number of draws stays close to one.
		 */
		do
			idx = pool->ops.random_uniform(pool->ctx, pool->nslots);
		while (idx >= pool->nslots || !pool->slot[idx].bound);
	}
	struct psock *s = &pool->slot[idx].sock;
	s->outstanding++;
	pool->acquires++;
	*out = (struct pool_handle){
		.slot = idx,
		.gen = s->gen,
		.fd = s->fd[f],
		.family = family,
		.port = s->port,
	};
	return 0;
}

int pool_connect_tcp(struct pool *pool, const struct sockaddr *to,
		     socklen_t tolen, uint16_t *port)
{
	if (!pool->ops.connect_tcp)
		return -EOPNOTSUPP;
	const void *addr;
	if (to->sa_family == AF_INET)
		addr = &pool->cfg.bind4;
	else if (to->sa_family == AF_INET6)
		addr = &pool->cfg.bind6;
	else
		return -EAFNOSUPPORT;
	for (uint32_t n = 0; n < pool->cfg.max_bind_attempts; n++) {
		if (pool->ntcp_ok == 0) {
			pool->tcp_failures++;
			return -EADDRNOTAVAIL;
		}
		uint32_t k = pool->ops.random_uniform(pool->ctx, pool->ntcp_ok);
		int32_t p = portset_nth(&pool->tcp_ok, k);
		if (p < 0)
			return -EINVAL; /* a generator out of [0, bound) */
		int fd = pool->ops.connect_tcp(pool->ctx, to->sa_family, addr,
					       (uint16_t)p, to, tolen);
		if (fd >= 0) {
			pool->tcp_connects++;
			if (port)
				*port = (uint16_t)p;
			return fd;
		}
		if (fd != -EADDRINUSE && fd != -EACCES) {
			pool->tcp_failures++;
			return fd;
		}
		pool->tcp_refusals++;
	}
	pool->tcp_failures++;
	return -EADDRINUSE;
}

int pool_done(struct pool *pool, const struct pool_handle *h)
{
	if (h->slot >= pool->nslots)
		return -ENOENT;
	struct pslot *sl = &pool->slot[h->slot];
	if (sl->bound && sl->sock.gen == h->gen) {
		if (sl->sock.outstanding > 0)
			sl->sock.outstanding--;
		if (pool->cfg.mode == POOL_MODE_PER_QUERY &&
		    sl->sock.outstanding == 0) {
			sock_close(pool, &sl->sock);
			slot_vacate(pool, h->slot);
		}
		return 0;
	}
	for (uint32_t i = 0; i < pool->ndrain; i++) {
		struct pdrain *d = &pool->drain[i];
		if (d->slot != h->slot || d->sock.gen != h->gen)
			continue;
		if (d->sock.outstanding > 0)
			d->sock.outstanding--;
		if (d->sock.outstanding == 0)
			drain_close(pool, i);
		return 0;
	}
	return -ENOENT;
}

/* Move bound slot idx to a fresh port; the old socket retires. */
static int slot_rotate(struct pool *pool, uint32_t idx, uint64_t now_ms)
{
	struct pslot *sl = &pool->slot[idx];
	struct psock old = sl->sock;
	struct psock fresh;
	int rc = draw_bind(pool, pool->cfg.families, &fresh);
	if (rc < 0)
		return rc; /* keep serving on the old port */
	fresh.gen = old.gen + 1;
	fresh.outstanding = 0;
	sl->sock = fresh;
	retire(pool, idx, &old, now_ms);
	return 0;
}

void pool_tick(struct pool *pool, uint64_t now_ms)
{
	if (now_ms > pool->now_ms)
		pool->now_ms = now_ms;
	pool__refused_expire(pool, now_ms);
	/*
	 * The drain list holds only sockets that left a slot with queries in
	 * flight, so it stays a handful long and a scan is the cheap choice.
	 */
	for (uint32_t i = 0; i < pool->ndrain;) {
		if (now_ms >= pool->drain[i].deadline_ms) {
			pool->drain_timeouts++;
			drain_close(pool, i);
		} else {
			i++;
		}
	}
	if (pool->cfg.mode != POOL_MODE_POOL)
		return;
	if (pool->cfg.rotate_ms > 0) {
		/* Each slot at most once per call, even after a long stall. */
		for (uint32_t n = 0; n < pool->nslots; n++) {
			struct pslot *sl = &pool->slot[pool->head];
			if (now_ms < sl->due_ms)
				break;
			if (sl->bound && slot_rotate(pool, pool->head, now_ms) == 0)
				pool->rotations++;
			sl->due_ms += pool->cfg.rotate_ms;
			pool->head = (pool->head + 1) % pool->nslots;
		}
	}
	if (pool->nvacant > 0 && now_ms >= pool->refill_at_ms) {
		while (pool->nvacant > 0) {
			uint32_t idx = pool->vacant[pool->nvacant - 1];
			if (slot_fill(pool, idx, pool->cfg.families) < 0) {
				pool->refill_at_ms = now_ms + POOL_REFILL_RETRY_MS;
				break;
			}
			pool->nvacant--;
		}
	}
}

int pool_release_port(struct pool *pool, uint16_t port, uint64_t now_ms)
{
	if (now_ms > pool->now_ms)
		pool->now_ms = now_ms;
	pool__refused_expire(pool, pool->now_ms);
	pool->releases++;
	pool__exclude(pool, port);
	/* Released is for good, even for a port only held out until now. */
	(void)pool__refused_forget(pool, port);
	int result = -ENOENT;
	/* An operator action, not the hot path: a scan is fine. */
	for (uint32_t i = 0; i < pool->nslots; i++) {
		struct pslot *sl = &pool->slot[i];
		if (!sl->bound || sl->sock.port != port)
			continue;
		if (pool->cfg.mode == POOL_MODE_PER_QUERY) {
			/* Its single query ends with pool_done, which closes. */
			result = 1;
			break;
		}
		struct psock old = sl->sock;
		struct psock fresh;
		if (draw_bind(pool, pool->cfg.families, &fresh) == 0) {
			fresh.gen = old.gen + 1;
			fresh.outstanding = 0;
			sl->sock = fresh;
		} else {
			/* The port must go even when no other can be bound. */
			slot_vacate(pool, i);
			sl->sock.gen = old.gen + 1;
		}
		result = retire(pool, i, &old, now_ms);
		break;
	}
	for (uint32_t i = 0; i < pool->ndrain; i++)
		if (pool->drain[i].sock.port == port)
			result = 1;
	return result;
}
