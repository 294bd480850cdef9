/* The control socket's commands: status, pool, release, sessions, reload. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "berth/loop.h"
#include "berth/portplan.h"
#include "berth/session.h"
#include "berth/sockpool.h"
#include "daemon/control.h"
#include "daemon/daemon_int.h"

static void print_pool_summary(const struct daemon *d, FILE *out)
{
	const struct plan *plan = d->gen.plan;
	if (!d->gen.pool) {
		fputs("pool: none (the config has no [pool] section)\n", out);
		return;
	}
	struct pool_stats st;
	pool_stats(d->gen.pool, &st);
	fprintf(out, "pool: %u sockets (%s), %u allowed ports in %u-%u, "
		"%u outstanding, %llu rotations, %llu releases\n",
		st.bound, st.mode == POOL_MODE_POOL ? "pool" : "per-query",
		st.allowed, plan->dynamic_lo, plan->dynamic_hi, st.outstanding,
		(unsigned long long)st.rotations, (unsigned long long)st.releases);
}

static int cmd_status(struct daemon *d, FILE *out)
{
	const struct plan *plan = d->gen.plan;
	uint64_t up = loop_now(d->loop) - d->started_ms;
	fprintf(out, "berthd %s, pid %ld, up %llu.%03llu s, config %s, %llu reloads\n",
		BERTH_VERSION, (long)getpid(), (unsigned long long)(up / 1000),
		(unsigned long long)(up % 1000), d->gen.cfg.file,
		(unsigned long long)d->stats.reloads);
	fprintf(out, "plan: dynamic %u-%u (%s), %u reserved ports, %u allowed\n",
		plan->dynamic_lo, plan->dynamic_hi, plan->dynamic_how,
		portset_count(&plan->reserved), portset_count(&plan->allowed));
	print_pool_summary(d, out);
	struct control_stats cs;
	control_get_stats(d->control, &cs);
	fprintf(out, "control: %zu clients (at most %u), %llu refused, "
		"%llu accept pauses (out of file descriptors)\n", cs.clients,
		CONTROL_CLIENTS_MAX, (unsigned long long)cs.refused,
		(unsigned long long)cs.accept_pauses);
	for (size_t i = 0; i < d->gen.nsvcs; i++) {
		const struct daemon_service *s = &d->gen.svcs[i];
		fprintf(out, "service %s (%s): %s\n", s->cfg->name,
			config_protocol_name(s->cfg->protocol),
			s->state ? "running" : "not running");
		if (s->state)
			s->ops->status(s->state, out);
	}
	return 0;
}

static int cmd_pool(struct daemon *d, FILE *out, char *err, size_t errlen)
{
	if (!d->gen.pool) {
		snprintf(err, errlen, "no pool: the config has no [pool] section");
		return -1;
	}
	struct pool_stats st;
	pool_stats(d->gen.pool, &st);
	const struct plan *plan = d->gen.plan;
	fprintf(out, "size:          %u\n", st.size);
	fprintf(out, "mode:          %s\n", st.mode == POOL_MODE_POOL ? "pool" : "per-query");
	if (st.rotate_ms)
		fprintf(out, "rotate:        %u ms\n", st.rotate_ms);
	else
		fputs("rotate:        never\n", out);
	fprintf(out, "range:         %u-%u\n", plan->dynamic_lo, plan->dynamic_hi);
	fprintf(out, "allowed ports: %u\n", st.allowed);
	fprintf(out, "excluded:      %u (in use at start, listen ports, "
		"released, EACCES; EADDRINUSE for %u s)\n",
		st.excluded, POOL_REFUSED_HOLD_MS / 1000u);
	fprintf(out, "refused now:   %u (of those: held by another socket when "
		"drawn, back after the hold)\n", st.refused);
	fprintf(out, "ports held:    %u\n", st.bound);
	fprintf(out, "outstanding:   %u\n", st.outstanding);
	fprintf(out, "draining:      %u\n", st.draining);
	fprintf(out, "drain limit:   %u ms (longest a socket that left stays open for its queries)\n",
		st.drain_timeout_ms);
	fprintf(out, "rotations:     %llu\n", (unsigned long long)st.rotations);
	fprintf(out, "releases:      %llu\n", (unsigned long long)st.releases);
	fprintf(out, "bind failures: %llu\n", (unsigned long long)st.bind_failures);
	fprintf(out, "readmitted:    %llu (refused ports back in the draws)\n",
		(unsigned long long)st.readmitted);
	fprintf(out, "tcp connects:  %llu (upstream connections from the plan's ports)\n",
		(unsigned long long)st.tcp_connects);
	fprintf(out, "tcp refusals:  %llu (ports drawn for them and skipped)\n",
		(unsigned long long)st.tcp_refusals);
	fprintf(out, "tcp failures:  %llu (connections that found no port)\n",
		(unsigned long long)st.tcp_failures);
	fprintf(out, "unclaimed replies: %llu\n",
		(unsigned long long)d->stats.pool_unclaimed);
	fputs("sockets (slot port outstanding state):\n", out);
	uint32_t cursor = 0;
	struct pool_sock_info info;
	while (pool_sock_next(d->gen.pool, &cursor, &info))
		fprintf(out, "  %u %u %u %s\n", info.slot, info.port,
			info.outstanding, info.draining ? "draining" : "live");
	return 0;
}

static int cmd_release(struct daemon *d, const char *arg, FILE *out, char *err,
		       size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long port = arg ? strtoul(arg, &end, 10) : 0;
	if (!arg || errno || end == arg || *end || port == 0 || port > 65535) {
		snprintf(err, errlen, "release needs a port 1-65535, got '%s'",
			 arg ? arg : "");
		return -1;
	}
	if (!d->gen.pool) {
		snprintf(err, errlen, "no pool: the config has no [pool] section");
		return -1;
	}
	int rc = pool_release_port(d->gen.pool, (uint16_t)port, loop_now(d->loop));
	daemon_pool_changed(d);
	switch (rc) {
	case 0:
		fprintf(out, "port %lu released: free now; the pool re-bound its slot "
			"elsewhere and will not draw it again until reload\n", port);
		return 0;
	case 1:
		fprintf(out, "port %lu released: the pool re-bound its slot elsewhere; "
			"the old socket closes when its queries in flight are answered "
			"or time out\n", port);
		return 0;
	case -ENOENT:
		fprintf(out, "port %lu was not held by the pool; it will not draw it "
			"until reload\n", port);
		return 0;
	default:
		snprintf(err, errlen, "release %lu: %s", port, strerror(-rc));
		return -1;
	}
}

void daemon_print_sessions(struct sess_listener *l, const char *service,
			   FILE *out)
{
	for (struct sess *s = sess_first(l); s; s = sess_next(s)) {
		struct sess_info info;
		sess_get_info(s, &info);
		fprintf(out, "%s %s %s %llu ", service, info.peer,
			sess_state_name(info.state), (unsigned long long)info.age_ms);
		if (info.has_deadline)
			fprintf(out, "%llu\n", (unsigned long long)info.deadline_in_ms);
		else
			fputs("-\n", out);
	}
}

void daemon_sum_sess_stats(struct sess_stats *sum,
			   const struct sess_listener *l)
{
	if (!l)
		return;
	struct sess_stats st;
	sess_listener_stats(l, &st);
	sum->accepted += st.accepted;
	sum->active += st.active;
	for (int r = 0; r < SESS_CLOSE_REASONS; r++)
		sum->closes[r] += st.closes[r];
	sum->evictions += st.evictions;
	sum->refusals += st.refusals;
	sum->emfile_pauses += st.emfile_pauses;
	sum->nomem_pauses += st.nomem_pauses;
	sum->read_pauses += st.read_pauses;
	sum->guard_drops += st.guard_drops;
	sum->datagrams_in += st.datagrams_in;
	sum->datagrams_out += st.datagrams_out;
	sum->datagrams_dropped += st.datagrams_dropped;
}

void daemon_print_sess_stats(const struct sess_stats *sum, FILE *out)
{
	const struct { const char *key; uint64_t v; } rows[] = {
		{ "sessions_accepted", sum->accepted },
		{ "sessions_active", sum->active },
		{ "evictions", sum->evictions },
		{ "refusals", sum->refusals },
		{ "emfile_pauses", sum->emfile_pauses },
		{ "nomem_pauses", sum->nomem_pauses },
		{ "read_pauses", sum->read_pauses },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		fprintf(out, "  %s: %llu\n", rows[i].key,
			(unsigned long long)rows[i].v);
	for (int r = 0; r < SESS_CLOSE_REASONS; r++)
		fprintf(out, "  closes_%s: %llu\n",
			sess_close_reason_name((enum sess_close_reason)r),
			(unsigned long long)sum->closes[r]);
}

static int cmd_sessions(struct daemon *d, FILE *out)
{
	fputs("service peer state age_ms deadline_in_ms\n", out);
	for (size_t i = 0; i < d->gen.nsvcs; i++) {
		const struct daemon_service *s = &d->gen.svcs[i];
		if (s->state && s->ops->sessions)
			s->ops->sessions(s->state, out);
	}
	return 0;
}

int daemon_command(struct daemon *d, const char *line, FILE *out, char *err,
		   size_t errlen)
{
	char buf[512];
	char *word[3] = { NULL, NULL, NULL };
	snprintf(buf, sizeof(buf), "%s", line);
	char *p = buf;
	for (int i = 0; i < 3; i++) {
		p += strspn(p, " \t");
		if (!*p)
			break;
		word[i] = p;
		p += strcspn(p, " \t");
		if (*p)
			*p++ = '\0';
	}
	char *verb = word[0], *arg = word[1], *extra = word[2];

	if (!verb) {
		snprintf(err, errlen, "empty command");
		return -1;
	}
	bool takes_arg = strcmp(verb, "release") == 0;
	if (extra || (arg && !takes_arg)) {
		snprintf(err, errlen, "too many arguments for '%s'", verb);
		return -1;
	}
	if (strcmp(verb, "status") == 0)
		return cmd_status(d, out);
	if (strcmp(verb, "pool") == 0)
		return cmd_pool(d, out, err, errlen);
	if (strcmp(verb, "release") == 0)
		return cmd_release(d, arg, out, err, errlen);
	if (strcmp(verb, "sessions") == 0)
		return cmd_sessions(d, out);
	if (strcmp(verb, "reload") == 0) {
		char why[896];
		if (daemon_reload(d, why, sizeof(why)) < 0) {
			snprintf(err, errlen, DAEMON_RELOAD_FAILED "%s", why);
			return -1;
		}
		fprintf(out, "reloaded %s\n", d->gen.cfg.file);
		return 0;
	}
	snprintf(err, errlen, "unknown command '%s'", verb);
	return -1;
}
