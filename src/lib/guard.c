/* guard: source-port guard; see include/berth/guard.h. */
#include "berth/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct port_drops {
	uint16_t port_host;
	uint64_t drops;
};

struct guard {
	struct portset blocked; /* host order */
	/*
	 * Per-port counters for the first GUARD_TRACKED_PORTS ports seen
	 * dropping; a wide blocked range must not cost 65,536 counters.
	 */
	struct port_drops tracked[GUARD_TRACKED_PORTS];
	unsigned ntracked;
	uint64_t total_drops;
};

struct guard *guard_new(const struct portset *blocked)
{
	struct guard *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->blocked = *blocked;
	return g;
}

void guard_free(struct guard *g)
{
	free(g);
}

const struct portset *guard_blocked(const struct guard *g)
{
	return &g->blocked;
}

bool guard_blocks_port(const struct guard *g, uint16_t port_host)
{
	return portset_has(&g->blocked, port_host);
}

int32_t guard_port_host(const struct sockaddr *src)
{
	uint16_t port_net;
	/*
	 * Copy the field rather than cast the pointer: callers pass a
	 * struct sockaddr_storage or a bare struct sockaddr_in, and a copy
	 * is right for both without alignment or aliasing questions.
	 */
	switch (src->sa_family) {
	case AF_INET:
		memcpy(&port_net, (const char *)src + offsetof(struct sockaddr_in, sin_port),
		       sizeof(port_net));
		break;
	case AF_INET6:
		memcpy(&port_net, (const char *)src + offsetof(struct sockaddr_in6, sin6_port),
		       sizeof(port_net));
		break;
	default:
		return -1;
	}
	return ntohs(port_net);
}

bool guard_blocks_sockaddr(const struct guard *g, const struct sockaddr *src)
{
	int32_t port_host = guard_port_host(src);
	return port_host >= 0 && guard_blocks_port(g, (uint16_t)port_host);
}

static void count_drop(struct guard *g, uint16_t port_host)
{
	g->total_drops++;
	for (unsigned i = 0; i < g->ntracked; i++) {
		if (g->tracked[i].port_host == port_host) {
			g->tracked[i].drops++;
			return;
		}
	}
	if (g->ntracked < GUARD_TRACKED_PORTS)
		g->tracked[g->ntracked++] =
			(struct port_drops){ .port_host = port_host, .drops = 1 };
}

bool guard_drop_sockaddr(struct guard *g, const struct sockaddr *src)
{
	int32_t port_host = guard_port_host(src);
	if (port_host < 0 || !guard_blocks_port(g, (uint16_t)port_host))
		return false;
	count_drop(g, (uint16_t)port_host);
	return true;
}

uint64_t guard_drops(const struct guard *g, uint16_t port_host)
{
	for (unsigned i = 0; i < g->ntracked; i++)
		if (g->tracked[i].port_host == port_host)
			return g->tracked[i].drops;
	return 0;
}

uint64_t guard_drops_total(const struct guard *g)
{
	return g->total_drops;
}
