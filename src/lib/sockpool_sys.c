/*
 * sockpool_sys: the real backend of the socket pool (pool_sys_ops), kept
 * apart so sockpool.c holds only the drawing and bookkeeping that the unit
 * tests drive through a fake backend.
 */
#include "berth/sockpool.h"
#include "berth/rnd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint32_t sys_random_uniform(void *ctx, uint32_t bound)
{
	(void)ctx;
	return rnd_uniform(bound);
}

/* Fill *ss with local_addr:port for family; returns its length, or 0. */
static socklen_t sys_sockaddr(struct sockaddr_storage *ss, int family,
			      const void *local_addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, local_addr, sizeof(sin->sin_addr));
		return sizeof(*sin);
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, local_addr, sizeof(sin6->sin6_addr));
		return sizeof(*sin6);
	}
	return 0;
}

/*
 * A nonblocking close-on-exec socket of type bound to local_addr:port, with
 * SO_REUSEADDR when reuse is set.
 */
static int sys_bind(int family, int type, const void *local_addr,
		    uint16_t port, bool reuse)
{
	struct sockaddr_storage ss;
	socklen_t len = sys_sockaddr(&ss, family, local_addr, port);
	if (len == 0)
		return -EAFNOSUPPORT;

	int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	/*
	 * Without V6ONLY an IPv6 wildcard socket also takes the IPv4 port,
	 * which is exactly the kind of silent grab the pool exists to avoid.
	 */
	int on = 1;
	if (family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) {
		rc = -errno;
		goto fail;
	}
	if (reuse &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0) {
		rc = -errno;
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&ss, len) < 0) {
		rc = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

static int sys_bind_udp(void *ctx, int family, const void *local_addr,
			uint16_t port)
{
	(void)ctx;
	/*
	 * No SO_REUSEADDR: a port another socket holds must fail with
	 * EADDRINUSE so the pool excludes it instead of sharing it.
	 */
	return sys_bind(family, SOCK_DGRAM, local_addr, port, false);
}

static int sys_connect_tcp(void *ctx, int family, const void *local_addr,
			   uint16_t port, const struct sockaddr *to,
			   socklen_t tolen)
{
	(void)ctx;
	/*
	 * SO_REUSEADDR lets berthd's connections share a port with each other
	 * and with its own TIME_WAIT, as the kernel's own choice would; Linux
	 * still refuses a port that a listener or a socket without the option
	 * holds.
	 */
	int fd = sys_bind(family, SOCK_STREAM, local_addr, port, true);
	if (fd < 0)
		return fd;
	if (connect(fd, to, tolen) < 0 && errno != EINPROGRESS) {
		/* EADDRNOTAVAIL here: the address pair with `to` is taken. */
		int rc = errno == EADDRNOTAVAIL ? -EADDRINUSE : -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int sys_close_fd(void *ctx, int fd)
{
	(void)ctx;
	/* On Linux the fd is gone even when close reports EINTR. */
	return close(fd) == 0 ? 0 : -errno;
}

const struct pool_ops pool_sys_ops = {
	.random_uniform = sys_random_uniform,
	.bind_udp = sys_bind_udp,
	.connect_tcp = sys_connect_tcp,
	.close_fd = sys_close_fd,
};
