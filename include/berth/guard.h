/*
 * guard: drop traffic from loop-prone source ports.
 *
 * A service answering a packet from, say, a Kerberos port (88, 464) can end
 * up talking to another server in an endless request/reply loop, so the
 * listener drops such packets.  The blocked list is compared in host byte
 * order: the port is converted with ntohs() once, where it leaves the
 * struct sockaddr, and nowhere else.  (Comparing the raw network-order field
 * against a host-order list is the classic bug: on a little-endian host it
 * blocks 22528 and 53249 instead of 88 and 464.)
 */
#ifndef BERTH_GUARD_H
#define BERTH_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "berth/portset.h"

/*
 * Distinct ports whose drops are counted one by one; drops from further
 * ports only count in guard_drops_total().
 */
#define GUARD_TRACKED_PORTS 32u

struct guard;

/*
 * A guard blocking the ports of blocked (host order; copied, the caller
 * keeps blocked).  Returns NULL when out of memory.  The caller owns the
 * guard and frees it with guard_free().
 */
struct guard *guard_new(const struct portset *blocked);

/* Free g; accepts NULL. */
void guard_free(struct guard *g);

/* The blocked ports (owned by g, valid until guard_free()). */
const struct portset *guard_blocked(const struct guard *g);

/* True when the host-order source port port_host is blocked. */
bool guard_blocks_port(const struct guard *g, uint16_t port_host);

/*
 * True when the source address src (caller-owned, AF_INET or AF_INET6, its
 * port in network order as the kernel fills it) comes from a blocked port.
 * Other families have no port and are never blocked.
 */
bool guard_blocks_sockaddr(const struct guard *g, const struct sockaddr *src);

/*
 * guard_blocks_sockaddr(), counting the drop when the answer is true: the
 * call a listener makes for every packet or connection it receives.
 */
bool guard_drop_sockaddr(struct guard *g, const struct sockaddr *src);

/*
 * Drops counted for port_host: 0 for a port never dropped, and for ports
 * beyond the first GUARD_TRACKED_PORTS distinct ones dropped.
 */
uint64_t guard_drops(const struct guard *g, uint16_t port_host);

/* All drops counted, over every port. */
uint64_t guard_drops_total(const struct guard *g);

/*
 * The host-order source port of src, or -1 when its family has no port.
 * The one place where a guard turns network order into host order.
 */
int32_t guard_port_host(const struct sockaddr *src);

#endif
