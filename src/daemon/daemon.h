/*
 * daemon: berthd's core.  It owns the event loop, the config and its port
 * plan, the socket pool, the control socket and the running services, and
 * rebuilds the plan, pool and services on reload.
 *
 * Services plug in through struct daemon_service_ops, one set per protocol
 * in src/daemon/svc_<protocol>.c.  They get the loop and the pool from the
 * daemon; they never watch pool sockets themselves: the daemon reads every
 * datagram that arrives on a pool socket and offers it to each service's
 * take_pool_answer(), then on_pool_reply(), until one claims it (a pool
 * socket carries the queries of every service that uses the pool).
 */
#ifndef BERTH_DAEMON_H
#define BERTH_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "daemon/config.h"

struct daemon;
struct loop;
struct pool;
struct plan;

/* A protocol's hooks.  Every function pointer but sessions is required. */
struct daemon_service_ops {
	enum config_protocol protocol;
	/*
	 * Check svc of cfg (both borrowed) against what this protocol's
	 * implementation can run (how many upstreams, whether it needs the
	 * pool), without starting anything: berthd --check runs it, and start
	 * runs it first.  Returns 0, or -EINVAL with "FILE:LINE: [service
	 * NAME] KEY: reason" in err.
	 */
	int (*check)(const struct berth_config *cfg,
		     const struct config_service *svc, char *err, size_t errlen);
	/*
	 * Start the service svc (borrowed; valid until stop) on the daemon's
	 * loop and pool.  On success store the service's object in *state and
	 * return 0; else return -errno with a message naming the service,
	 * address or file in err.
	 */
	int (*start)(struct daemon *d, const struct config_service *svc,
		     void **state, char *err, size_t errlen);
	/* Close listeners, drop in-flight work (returning pool handles with
	 * pool_done) and free state. */
	void (*stop)(void *state);
	/*
	 * A datagram arrived on pool socket fd (local port port) from from;
	 * msg is valid only during the call.  Services share the pool's
	 * sockets and may share upstreams, so berthd offers it in two rounds.
	 * First take_pool_answer, to every service in turn: return true only
	 * when it is the answer one of this service's queries waits for, and
	 * handle it.  When no service took it, on_pool_reply, to every service
	 * in turn: return true when it is this service's concern (from one of
	 * its upstreams), having counted it (a mismatch, a late reply); false
	 * to let the next service look.
	 */
	bool (*take_pool_answer)(void *state, int fd, uint16_t port,
				 const struct sockaddr *from, socklen_t fromlen,
				 const uint8_t *msg, size_t len);
	bool (*on_pool_reply)(void *state, int fd, uint16_t port,
			      const struct sockaddr *from, socklen_t fromlen,
			      const uint8_t *msg, size_t len);
	/*
	 * The longest the service svc (borrowed) keeps one pool socket for one
	 * exchange with an upstream, in ms.  The pool keeps a socket it
	 * retires (rotation, release) open at least this long while queries
	 * are in flight on it, so no reply the service still waits for, or
	 * guards against, finds it closed.
	 */
	uint64_t (*pool_hold_ms)(const struct config_service *svc);
	/* Append the service's status lines ("  key: value") to out. */
	void (*status)(void *state, FILE *out);
	/* Append one line per session for `berthctl sessions`; may be NULL. */
	void (*sessions)(void *state, FILE *out);
};

/* The ops of each protocol, defined in svc_<protocol>.c. */
extern const struct daemon_service_ops svc_dns_ops;
extern const struct daemon_service_ops svc_kerberos_ops;

/*
 * Load the config (path NULL: the built-in default), build the plan, the
 * pool, the control socket and the services.  Returns the daemon or NULL
 * with the reason (file:line, key, port...) in err.
 */
struct daemon *daemon_new(const char *path, char *err, size_t errlen);

/*
 * The checks of every service of cfg (borrowed) that its protocol makes
 * before it starts (struct daemon_service_ops check), for berthd --check.
 * A service whose protocol is not part of this build is reported on warn
 * (it is left out at start, as berthd does), not failed.  Returns 0, or
 * -EINVAL with the first failure in err.
 */
int daemon_check_services(const struct berth_config *cfg, FILE *warn,
			  char *err, size_t errlen);

/* Run until SIGTERM/SIGINT.  Returns the process exit status. */
int daemon_run(struct daemon *d);

/* Stop the services, close every socket and free d.  Accepts NULL. */
void daemon_free(struct daemon *d);

/*
 * Reload the config: build the new plan and check that the new pool fits
 * first, and keep running the old config untouched when that fails (err says
 * why, return -errno).  Then stop the old services, close the old pool, bind
 * the new one and start the new services.  When the new pool or a new
 * service cannot start, the new ones are stopped and the old config's
 * services started again on a fresh pool (err names the service or pool and
 * the reason, return -errno).  Either way outstanding queries of the old
 * services are dropped.
 */
int daemon_reload(struct daemon *d, char *err, size_t errlen);

/*
 * Run one control command (a line without its newline: "status", "pool",
 * "release 4500", "sessions", "reload") and write its output to out.
 * Returns 0, or -1 with a one-line reason in err.  (daemon_cmd.c)
 */
int daemon_command(struct daemon *d, const char *line, FILE *out, char *err,
		   size_t errlen);

/*
 * Append one `berthctl sessions` line per session of listener l (borrowed):
 * "SERVICE PEER STATE AGE_MS DEADLINE_IN_MS", where SERVICE is service (the
 * config's service name) and the deadline is "-" while a request is in
 * flight.  Services call it from their sessions op.
 */
struct sess_listener;
void daemon_print_sessions(struct sess_listener *l, const char *service,
			   FILE *out);

/*
 * Session counters for services' status ops: daemon_sum_sess_stats adds
 * listener l's counters (borrowed; NULL adds nothing) into *sum, and
 * daemon_print_sess_stats prints a sum as `berthctl status` lines:
 * sessions_accepted, sessions_active, evictions, refusals, emfile_pauses,
 * nomem_pauses, read_pauses and closes_REASON.  guard_drops and the
 * datagram counts are the services' to print.
 */
struct sess_stats;
void daemon_sum_sess_stats(struct sess_stats *sum,
			   const struct sess_listener *l);
void daemon_print_sess_stats(const struct sess_stats *sum, FILE *out);

/* Accessors for services and commands. */
struct loop *daemon_loop(struct daemon *d);
struct pool *daemon_pool(struct daemon *d); /* NULL without [pool] */
const struct plan *daemon_plan(const struct daemon *d);
const struct berth_config *daemon_config(const struct daemon *d);

#endif
