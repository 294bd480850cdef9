/*
 * daemon internals shared by daemon.c (lifecycle, pool sockets) and
 * daemon_cmd.c (control commands).  Not for services: they use daemon.h.
 */
#ifndef BERTH_DAEMON_INT_H
#define BERTH_DAEMON_INT_H

#include <stdint.h>

#include "berth/loop.h"
#include "berth/wheel.h"
#include "daemon/config.h"
#include "daemon/daemon.h"

struct control;

/* One configured service and, when it started, its object. */
struct daemon_service {
	const struct config_service *cfg;      /* borrowed from the gen's cfg */
	const struct daemon_service_ops *ops;  /* NULL: protocol not built */
	void *state;                           /* NULL: not running */
};

/*
 * What a reload replaces as a whole: the config, its plan, the pool and the
 * services built on them.
 */
struct daemon_gen {
	struct berth_config cfg;
	struct plan *plan;
	struct pool *pool;          /* NULL without [pool] */
	struct daemon_service *svcs;
	size_t nsvcs;
};

/* A pool socket the loop watches, indexed by fd in struct daemon. */
struct daemon_pool_watch {
	struct loop_watch w;
	struct daemon *d;
	int fd;
	uint16_t port;
};

struct daemon {
	char *path;                 /* config path; NULL = built-in default */
	struct loop *loop;
	struct daemon_gen gen;
	struct control *control;
	/*
	 * Watches of pool sockets, by fd, npw entries.  Each is allocated once
	 * and kept until daemon_free(): the loop holds pointers to them, so
	 * they must not move when the table grows or go away while a handler
	 * runs.
	 */
	struct daemon_pool_watch **pw;
	size_t npw;
	struct wheel_timer pool_timer;
	uint64_t started_ms;
	struct {
		uint64_t reloads;
		uint64_t pool_unclaimed;    /* pool datagrams no service claimed */
		uint64_t pool_read_errors;
	} stats;
};

/* What SIGHUP logs and `reload` answers before the reason of a failure. */
#define DAEMON_RELOAD_FAILED "reload failed, keeping the running config: "

/* The pool's schedule changed (a release, say): re-arm its tick. */
void daemon_pool_changed(struct daemon *d);

#endif
