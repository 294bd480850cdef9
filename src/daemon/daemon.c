/* daemon: berthd's core; see daemon.h. */
#include "daemon/daemon.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "berth/loop.h"
#include "berth/portplan.h"
#include "berth/procnet.h"
#include "berth/sockpool.h"
#include "berth/wheel.h"
#include "daemon/control.h"
#include "daemon/daemon_int.h"

/* Every protocol berthd knows how to run. */
static const struct daemon_service_ops *const service_ops[] = {
	&svc_dns_ops,
	&svc_kerberos_ops,
};

static const struct daemon_service_ops *ops_for(enum config_protocol p)
{
	for (size_t i = 0; i < sizeof(service_ops) / sizeof(service_ops[0]); i++)
		if (service_ops[i]->protocol == p)
			return service_ops[i];
	return NULL;
}

/*
 * How long the pool keeps a socket it retires while queries are in flight
 * on it: its default, or longer when a service of cfg may keep a socket
 * longer for one exchange (a long upstream_timeout, Kerberos's late-reply
 * reservation).  Closing earlier would drop answers still awaited, and
 * give the port back while a late reply may still come to it.
 */
static uint32_t pool_drain_ms(const struct berth_config *cfg)
{
	uint64_t ms = POOL_DEFAULT_DRAIN_MS;
	for (size_t i = 0; i < cfg->nservices; i++) {
		const struct config_service *s = &cfg->services[i];
		const struct daemon_service_ops *ops = ops_for(s->protocol);
		uint64_t hold = ops ? ops->pool_hold_ms(s) : 0;
		if (hold > ms)
			ms = hold;
	}
	return ms < UINT32_MAX ? (uint32_t)ms : UINT32_MAX;
}

/* The pool is ticked at least this often, whatever it says is due next. */
#define POOL_TICK_MAX_MS 1000u
/* Datagrams read from one pool socket per recvmmsg, and recvmmsg calls per
 * readiness event (the rest waits for the next loop iteration). */
#define POOL_READ_BATCH 8
#define POOL_READ_ROUNDS 8

struct loop *daemon_loop(struct daemon *d)
{
	return d->loop;
}

struct pool *daemon_pool(struct daemon *d)
{
	return d->gen.pool;
}

const struct plan *daemon_plan(const struct daemon *d)
{
	return d->gen.plan;
}

const struct berth_config *daemon_config(const struct daemon *d)
{
	return &d->gen.cfg;
}

/* Offer one datagram that arrived on pool socket fd/port to the services. */
static void pool_dispatch(struct daemon *d, int fd, uint16_t port,
			  const struct sockaddr_storage *from, socklen_t fromlen,
			  const uint8_t *buf, size_t len)
{
	const struct sockaddr *sa = (const struct sockaddr *)from;
	/* The answer a query waits for first, so that a service sharing an
	 * upstream with another never drops the other's answer as its own
	 * mismatch. */
	for (size_t s = 0; s < d->gen.nsvcs; s++) {
		struct daemon_service *svc = &d->gen.svcs[s];
		if (svc->state &&
		    svc->ops->take_pool_answer(svc->state, fd, port, sa, fromlen,
					       buf, len))
			return;
	}
	for (size_t s = 0; s < d->gen.nsvcs; s++) {
		struct daemon_service *svc = &d->gen.svcs[s];
		if (svc->state &&
		    svc->ops->on_pool_reply(svc->state, fd, port, sa, fromlen,
					    buf, len))
			return;
	}
	d->stats.pool_unclaimed++;
}

/*
 * Datagrams on a pool socket: read them a batch at a time with recvmmsg (a
 * short batch means the socket is drained, so no extra read just to see
 * EAGAIN) and offer each to the services until one claims it.  A service may
 * close or re-open this pool socket while it handles a reply (a rotation or
 * release completing): each datagram goes out with the fd and port it was
 * read from, and the watch is checked before the next read; the watch itself
 * never moves or goes away.
 */
static void on_pool_readable(struct loop *loop, struct loop_watch *w,
			     unsigned events)
{
	struct daemon_pool_watch *pw = wheel_container_of(w, struct daemon_pool_watch, w);
	struct daemon *d = pw->d;
	static uint8_t buf[POOL_READ_BATCH][65536];
	struct sockaddr_storage from[POOL_READ_BATCH];
	struct iovec iov[POOL_READ_BATCH];
	struct mmsghdr mm[POOL_READ_BATCH];
	(void)loop, (void)events;

	for (int round = 0; round < POOL_READ_ROUNDS && loop_watch_active(&pw->w); round++) {
		int fd = pw->fd;
		uint16_t port = pw->port;
		for (int i = 0; i < POOL_READ_BATCH; i++) {
			iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = sizeof(buf[i]) };
			mm[i] = (struct mmsghdr){ .msg_hdr = {
				.msg_name = &from[i], .msg_namelen = sizeof(from[i]),
				.msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int n = recvmmsg(fd, mm, POOL_READ_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				d->stats.pool_read_errors++;
			return;
		}
		for (int i = 0; i < n; i++)
			pool_dispatch(d, fd, port, &from[i], mm[i].msg_hdr.msg_namelen,
				      buf[i], mm[i].msg_len);
		if (n < POOL_READ_BATCH)
			return;
	}
}

/* The watch slot for fd, allocated on first use; NULL when out of memory. */
static struct daemon_pool_watch *pool_watch_slot(struct daemon *d, int fd)
{
	if ((size_t)fd >= d->npw) {
		size_t n = (size_t)fd * 2 + 64;
		struct daemon_pool_watch **grown = realloc(d->pw, n * sizeof(*grown));
		if (!grown)
			return NULL;
		memset(grown + d->npw, 0, (n - d->npw) * sizeof(*grown));
		d->pw = grown;
		d->npw = n;
	}
	if (!d->pw[fd])
		d->pw[fd] = calloc(1, sizeof(*d->pw[fd]));
	return d->pw[fd];
}

/* The pool opened or is about to close a socket: watch it or forget it. */
static void on_pool_socket(void *arg, int fd, int family, uint16_t port,
			   bool open)
{
	struct daemon *d = arg;
	(void)family;
	if (fd < 0)
		return;
	if (!open) {
		if ((size_t)fd < d->npw && d->pw[fd])
			loop_watch_stop(d->loop, &d->pw[fd]->w);
		return;
	}
	struct daemon_pool_watch *pw = pool_watch_slot(d, fd);
	if (!pw) {
		fprintf(stderr, "berthd: out of memory watching pool socket %d\n", fd);
		return;
	}
	*pw = (struct daemon_pool_watch){ .d = d, .fd = fd, .port = port };
	loop_watch_init(&pw->w, fd, on_pool_readable);
	int rc = loop_watch_set(d->loop, &pw->w, LOOP_READ);
	if (rc < 0)
		fprintf(stderr, "berthd: cannot watch pool socket on port %u: %s\n",
			port, strerror(-rc));
}

/* Tick the pool (rotation, drain timeouts, refills) and re-arm. */
static void arm_pool_timer(struct daemon *d)
{
	if (!d->gen.pool)
		return;
	uint64_t now = loop_now(d->loop);
	uint64_t due = pool_next_due(d->gen.pool);
	uint64_t cap = now + POOL_TICK_MAX_MS;
	loop_timer_start(d->loop, &d->pool_timer, due < cap ? due : cap);
}

static void on_pool_timer(struct wheel_timer *t, void *ctx)
{
	struct daemon *d = wheel_container_of(t, struct daemon, pool_timer);
	(void)ctx;
	if (d->gen.pool)
		pool_tick(d->gen.pool, loop_now(d->loop));
	arm_pool_timer(d);
}

void daemon_pool_changed(struct daemon *d)
{
	arm_pool_timer(d);
}

/* True when any service listens on or forwards to IPv6. */
static bool config_uses_ipv6(const struct berth_config *cfg)
{
	for (size_t i = 0; i < cfg->nservices; i++) {
		const struct config_service *s = &cfg->services[i];
		for (size_t a = 0; a < s->nlisten; a++)
			if (s->listen[a].sa.ss_family == AF_INET6)
				return true;
		for (size_t a = 0; a < s->nupstream; a++)
			if (s->upstream[a].sa.ss_family == AF_INET6)
				return true;
	}
	return false;
}

/*
 * The ports g's pool must not draw, into *in_use: with avoid_in_use every
 * port a local UDP socket holds, less ours (ports of this berthd that a
 * reload closes before the new pool binds; NULL for none), and always the
 * listen ports of g's own services (they bind after the pool is built).
 */
static int pool_in_use(const struct daemon_gen *g, const struct portset *ours,
		       struct portset *in_use, char *err, size_t errlen)
{
	portset_clear(in_use);
	if (g->plan->avoid_in_use) {
		struct procnet_stats st = { 0 };
		int rc = procnet_ports_in_use("/proc", IPPROTO_UDP, in_use, &st);
		if (rc < 0) {
			snprintf(err, errlen, "%s: avoid_in_use: cannot read /proc/net/udp: %s",
				 g->cfg.file, strerror(-rc));
			return rc;
		}
		if (ours)
			portset_diff(in_use, ours);
	}
	config_listen_ports(&g->cfg, in_use);
	return 0;
}

/* Build the pool the config asks for, or none without [pool]. */
static int build_pool(struct daemon *d, struct daemon_gen *g, char *err,
		      size_t errlen)
{
	if (!g->cfg.pool.present)
		return 0;
	struct portset in_use;
	int rc = pool_in_use(g, NULL, &in_use, err, errlen);
	if (rc < 0)
		return rc;
	const struct pool_config pc = {
		.size = g->cfg.pool.size,
		.mode = g->cfg.pool.mode == CONFIG_POOL_PER_QUERY ? POOL_MODE_PER_QUERY
								  : POOL_MODE_POOL,
		/* The config refuses a period over UINT32_MAX ms. */
		.rotate_ms = (uint32_t)g->cfg.pool.rotate_ms,
		.drain_timeout_ms = pool_drain_ms(&g->cfg),
		.families = POOL_FAMILY_INET |
			    (config_uses_ipv6(&g->cfg) ? POOL_FAMILY_INET6 : 0),
		.bind4 = { .s_addr = htonl(INADDR_ANY) },
		.bind6 = in6addr_any,
	};
	char why[384];
	g->pool = pool_create(&pc, &g->plan->allowed, &in_use, NULL, NULL,
			      loop_now(d->loop), why, sizeof(why));
	if (!g->pool) {
		snprintf(err, errlen, "%s:%u: [pool]: %s", g->cfg.file,
			 g->cfg.pool.line, why);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

/*
 * Before a reload lets the running pool go: would g's pool fit in the ports
 * left once the running generation's pool sockets and listeners are closed?
 * Catches a pool too large for its range while the old config still runs
 * undisturbed.  Returns 0 or -EADDRNOTAVAIL with the reason in err.
 */
static int check_pool_fits(const struct daemon *d, const struct daemon_gen *g,
			   char *err, size_t errlen)
{
	if (!g->cfg.pool.present)
		return 0;
	struct portset ours, in_use;
	portset_clear(&ours);
	config_listen_ports(&d->gen.cfg, &ours);
	struct pool_sock_info info;
	uint32_t cursor = 0;
	while (d->gen.pool && pool_sock_next(d->gen.pool, &cursor, &info))
		if (info.port)
			portset_add(&ours, info.port);
	int rc = pool_in_use(g, &ours, &in_use, err, errlen);
	if (rc < 0)
		return rc;
	struct portset avail = g->plan->allowed;
	portset_diff(&avail, &in_use);
	uint32_t navail = portset_count(&avail);
	if (g->cfg.pool.size > navail) {
		uint32_t nallowed = portset_count(&g->plan->allowed);
		snprintf(err, errlen, "%s:%u: [pool] size: %u exceeds the %u "
			 "ports left to draw (the plan allows %u ports; %u of them "
			 "are listen ports of the config's services or held by "
			 "other sockets)",
			 g->cfg.file, g->cfg.ports.pool_size_line, g->cfg.pool.size,
			 navail, nallowed, nallowed - navail);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

/* Load the config and build its plan into g (no pool, no services yet). */
static int build_gen(struct daemon *d, struct daemon_gen *g, char *err,
		     size_t errlen)
{
	int rc = d->path ? config_load(d->path, &g->cfg, err, errlen)
			 : config_load_default(&g->cfg, err, errlen);
	if (rc < 0)
		return rc;
	g->plan = plan_build(&g->cfg.ports, NULL, err, errlen);
	return g->plan ? 0 : -EINVAL;
}

int daemon_check_services(const struct berth_config *cfg, FILE *warn,
			  char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nservices; i++) {
		const struct config_service *cs = &cfg->services[i];
		const struct daemon_service_ops *ops = ops_for(cs->protocol);
		if (!ops) {
			fprintf(warn, "berthd: %s:%u: [service %s]: the %s service is "
				"not part of this build yet: berthd will not start it\n",
				cfg->file, cs->line, cs->name,
				config_protocol_name(cs->protocol));
			continue;
		}
		int rc = ops->check(cfg, cs, err, errlen);
		if (rc < 0)
			return rc;
		/* Runs, but only half: as starting it would say. */
		if (cs->protocol == CONFIG_PROTO_KERBEROS && !cfg->pool.present)
			fprintf(warn, "berthd: %s:%u: [service %s]: no [pool] section: "
				"UDP requests cannot be relayed and get "
				"KDC_ERR_SVC_UNAVAILABLE; TCP works\n",
				cfg->file, cs->line, cs->name);
	}
	return 0;
}

/*
 * Start every service of g.  A service that fails to start is reported and
 * left out; the others run (an operator fixing one service should not lose
 * the rest).  A service whose protocol is not part of this build is reported
 * but not a failure: it could never start, in any config.  Returns 0, or the
 * first failure's -errno with that service's name and reason in err.
 */
static int start_services(struct daemon *d, struct daemon_gen *g, char *err,
			  size_t errlen)
{
	int failed = 0;
	err[0] = '\0';
	g->svcs = calloc(g->cfg.nservices ? g->cfg.nservices : 1, sizeof(*g->svcs));
	if (!g->svcs) {
		snprintf(err, errlen, "out of memory starting services");
		fprintf(stderr, "berthd: %s\n", err);
		return -ENOMEM;
	}
	g->nsvcs = g->cfg.nservices;
	for (size_t i = 0; i < g->nsvcs; i++) {
		struct daemon_service *s = &g->svcs[i];
		const struct config_service *cs = &g->cfg.services[i];
		const char *proto = config_protocol_name(cs->protocol);
		char why[512] = "";
		s->cfg = cs;
		s->ops = ops_for(cs->protocol);
		int rc = s->ops ? s->ops->check(&g->cfg, cs, why, sizeof(why))
				: -ENOSYS;
		if (rc == 0)
			rc = s->ops->start(d, cs, &s->state, why, sizeof(why));
		if (rc == -ENOSYS) {
			fprintf(stderr, "berthd: %s:%u: [service %s]: not started: the %s "
				"service is not part of this build yet\n",
				g->cfg.file, cs->line, cs->name, proto);
			s->state = NULL;
		} else if (rc < 0) {
			fprintf(stderr, "berthd: service %s not started: %s\n", cs->name, why);
			if (!failed) {
				snprintf(err, errlen, "service %s not started: %s",
					 cs->name, why);
				failed = rc;
			}
			s->state = NULL;
		}
	}
	return failed;
}

static void stop_services(struct daemon_gen *g)
{
	for (size_t i = 0; i < g->nsvcs; i++)
		if (g->svcs[i].state)
			g->svcs[i].ops->stop(g->svcs[i].state);
	free(g->svcs);
	g->svcs = NULL;
	g->nsvcs = 0;
}

static void free_gen(struct daemon_gen *g)
{
	stop_services(g);
	pool_free(g->pool);
	plan_free(g->plan);
	config_free(&g->cfg);
	memset(g, 0, sizeof(*g));
}

/* Point the pool's socket watch at the daemon and tick it. */
static void adopt_pool(struct daemon *d)
{
	if (d->gen.pool)
		pool_set_watch(d->gen.pool, on_pool_socket, d);
	arm_pool_timer(d);
}

/* The reload itself; daemon_reload() logs a failure. */
static int reload(struct daemon *d, char *err, size_t errlen)
{
	struct daemon_gen next = { 0 };
	int rc = build_gen(d, &next, err, errlen);
	if (rc == 0)
		rc = check_pool_fits(d, &next, err, errlen);
	if (rc < 0) {
		free_gen(&next);
		return rc;
	}
	/*
	 * The old services must let go of their listen addresses before the
	 * new ones bind them, and the old pool of its ports: a pool may use
	 * most of its range, and the new one must be free to draw any of it.
	 * The old config and plan are kept until the new services run, so
	 * that berthd can go back to them when the new pool or one of the new
	 * services cannot start.
	 */
	loop_timer_stop(d->loop, &d->pool_timer);
	stop_services(&d->gen);
	pool_free(d->gen.pool);
	d->gen.pool = NULL;
	struct daemon_gen old = d->gen;
	d->gen = next;
	char why[512];
	rc = build_pool(d, &d->gen, why, sizeof(why));
	if (rc == 0) {
		adopt_pool(d);
		rc = start_services(d, &d->gen, why, sizeof(why));
	}
	if (rc == 0) {
		/* The control socket is the one berthctl reached us on: it
		 * stays where it is until berthd restarts. */
		if (strcmp(old.cfg.control.socket, d->gen.cfg.control.socket) != 0)
			fprintf(stderr, "berthd: %s:%u: [control] socket: still %s; "
				"the new path %s takes effect when berthd restarts\n",
				d->gen.cfg.file, d->gen.cfg.control.line,
				old.cfg.control.socket, d->gen.cfg.control.socket);
		free_gen(&old);
		d->stats.reloads++;
		fprintf(stderr, "berthd: reloaded %s\n", d->gen.cfg.file);
		return 0;
	}

	/* Back to the old config, on a freshly drawn pool. */
	loop_timer_stop(d->loop, &d->pool_timer);
	free_gen(&d->gen);
	d->gen = old;
	char pool_err[512], svc_err[512];
	int pool_rc = build_pool(d, &d->gen, pool_err, sizeof(pool_err));
	adopt_pool(d);
	int svc_rc = start_services(d, &d->gen, svc_err, sizeof(svc_err));
	if (pool_rc < 0 || svc_rc < 0)
		snprintf(err, errlen, "%s; and restarting the running config: %s",
			 why, pool_rc < 0 ? pool_err : svc_err);
	else
		snprintf(err, errlen, "%s", why);
	return rc;
}

int daemon_reload(struct daemon *d, char *err, size_t errlen)
{
	/*
	 * Every failed reload goes to berthd's log here, whether SIGHUP or
	 * `berthctl reload` asked for it: the operator reading the log must
	 * see it either way, and in the same words.
	 */
	char why[1536]; /* the longest reason: two of 512 and the words between */
	int rc = reload(d, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "berthd: " DAEMON_RELOAD_FAILED "%s\n", why);
		snprintf(err, errlen, "%s", why);
	}
	return rc;
}

static void on_signal(struct loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;
	if (signo == SIGHUP) {
		char err[512];
		daemon_reload(d, err, sizeof(err)); /* it logs a failure */
		return;
	}
	fprintf(stderr, "berthd: %s, shutting down\n", strsignal(signo));
	loop_stop(loop);
}

/*
 * A pool of thousands of sockets needs more descriptors than the usual soft
 * limit of 1024: raise the soft limit to the hard one.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			fprintf(stderr, "berthd: cannot raise the open-file limit: %s\n",
				strerror(errno));
	}
}

/* The control socket's command function. */
static int run_command(void *arg, const char *line, FILE *out, char *err,
		       size_t errlen)
{
	return daemon_command(arg, line, out, err, errlen);
}

struct daemon *daemon_new(const char *path, char *err, size_t errlen)
{
	struct daemon *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	wheel_timer_init(&d->pool_timer, on_pool_timer);
	if (path && !(d->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	raise_fd_limit();
	d->loop = loop_new(NULL);
	if (!d->loop) {
		snprintf(err, errlen, "cannot create the event loop");
		goto fail;
	}
	d->started_ms = loop_now(d->loop);
	if (build_gen(d, &d->gen, err, errlen) < 0 ||
	    build_pool(d, &d->gen, err, errlen) < 0)
		goto fail;
	const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		int rc = loop_signal(d->loop, sigs[i], on_signal, d);
		if (rc < 0) {
			snprintf(err, errlen, "cannot handle %s: %s", strsignal(sigs[i]),
				 strerror(-rc));
			goto fail;
		}
	}
	d->control = control_open(d->loop, d->gen.cfg.control.socket,
				  d->gen.cfg.control.private_dir, run_command, d,
				  err, errlen);
	if (!d->control)
		goto fail;
	adopt_pool(d);
	char why[512];
	start_services(d, &d->gen, why, sizeof(why));
	if (d->gen.cfg.metrics.enabled)
		fprintf(stderr, "berthd: %s:%u: [metrics] listen: not serving metrics: "
			"the metrics listener is not part of this build yet\n",
			d->gen.cfg.file, d->gen.cfg.metrics.line);
	return d;
fail:
	daemon_free(d);
	return NULL;
}

int daemon_run(struct daemon *d)
{
	if (d->gen.pool) {
		struct pool_stats st;
		pool_stats(d->gen.pool, &st);
		fprintf(stderr, "berthd: pool of %u UDP sockets (%s) on random ports "
			"from %u allowed in %u-%u\n", st.bound,
			st.mode == POOL_MODE_POOL ? "pre-bound" : "per-query",
			st.allowed, d->gen.plan->dynamic_lo, d->gen.plan->dynamic_hi);
	}
	fprintf(stderr, "berthd: control socket %s; running\n",
		d->gen.cfg.control.socket);
	int rc = loop_run(d->loop);
	if (rc < 0) {
		fprintf(stderr, "berthd: event loop failed: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	if (d->loop)
		loop_timer_stop(d->loop, &d->pool_timer);
	control_close(d->control);
	free_gen(&d->gen);
	loop_free(d->loop);
	for (size_t i = 0; i < d->npw; i++)
		free(d->pw[i]);
	free(d->pw);
	free(d->path);
	free(d);
}
