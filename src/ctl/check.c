/*
 * berthctl check: what in the running system contradicts the port plan.
 *
 * Conflicts (exit 1): a reserved port held by what a port allocator hands
 * out, named with the process that holds it and where the reservation came
 * from; a pool larger than the ports the plan leaves to it.  Warnings (exit
 * 0): reserved ports the kernel does not reserve, so its ephemeral allocator
 * may hand them to any outgoing connection until `berthctl apply` is run.
 *
 * A reserved port is kept for a service that listens on it, so a listening
 * socket there (TCP LISTEN, an unconnected UDP socket) is the port in use,
 * not taken: it is listed as "in use" and is no conflict.  What is one:
 *   - a connection with no listener of its protocol on the port (a TCP
 *     connection, a connected UDP socket): the client end of one, which an
 *     allocator, the kernel's or a program's, gave the port to;
 *   - berthd's pool: berthd holding an unconnected UDP socket on a port of
 *     the plan's dynamic range that none of the config's services listens on
 *     (a port reserved after berthd started, say).
 * Such a socket whose owner berthctl may not see (not root) could be the
 * pool: it is a finding too ("unknown"), so that check never says "ok"
 * without knowing.  A program other than berthd that binds a reserved port
 * by mistake looks the same as the service itself, and so does a UDP
 * socket that got its port from the kernel without binding one (said when
 * the port is one the kernel may hand out): the "in use" lines name them
 * for a person to judge.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "berth/procnet.h"
#include "ctl/ctl.h"

/* By port, then tcp before udp, IPv4 before IPv6, address and pid, so the
 * report does not depend on the order of /proc. */
static int cmp_conflict(const void *a, const void *b)
{
	const struct procnet_sock *x = a, *y = b;

	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return procnet_sock_cmp(a, b);
}

/* The first reservation that covers port, or NULL. */
static const struct plan_reservation *find_reservation(const struct plan *plan,
						       uint16_t port)
{
	for (size_t i = 0; i < plan->nres; i++)
		if (plan->res[i].lo <= port && port <= plan->res[i].hi)
			return &plan->res[i];
	return NULL;
}

/* Where a reserved port came from, for people: " (config berth.conf:12)". */
static void format_origin(const struct plan *plan, uint16_t port, char *buf,
			  size_t len)
{
	const struct plan_reservation *r = find_reservation(plan, port);
	const char *file = plan->file ? plan->file : "config";

	buf[0] = '\0';
	if (!r)
		return;
	switch (r->origin) {
	case PLAN_ORIGIN_CONFIG:
		if (r->line > 0)
			snprintf(buf, len, " (config %s:%u)", file, r->line);
		else
			snprintf(buf, len, " (config %s)", file);
		break;
	case PLAN_ORIGIN_CATALOG:
		if (r->service[0])
			snprintf(buf, len, " (catalog %s: %s)", r->catalog,
				 r->service);
		else
			snprintf(buf, len, " (catalog %s)", r->catalog);
		break;
	case PLAN_ORIGIN_KERNEL:
		snprintf(buf, len, " (kernel ip_local_reserved_ports)");
		break;
	}
}

/* How check sees one socket on a reserved port. */
enum holding {
	HOLDING_SERVED,  /* a connection of a listener on the port: not shown */
	HOLDING_IN_USE,  /* a listening socket: the service the port is for */
	HOLDING_POOL,    /* berthd's pool: a conflict */
	HOLDING_CLIENT,  /* a connection with no listener: a conflict */
	HOLDING_HIDDEN,  /* an owner berthctl may not see, maybe the pool */
};

/* True when s waits for peers on its port: a TCP listener, or a UDP socket
 * not connected to one peer. */
static bool listens(const struct procnet_sock *s)
{
	if (s->proto == IPPROTO_TCP)
		return s->state == PROCNET_LISTEN;
	return s->state != PROCNET_ESTABLISHED;
}

/* True when s looks like a socket of berthd's pool under this plan: an
 * unconnected UDP socket on a port of the dynamic range that none of the
 * config's services listens on. */
static bool pool_like(const struct plan *plan, const struct procnet_sock *s)
{
	return s->proto == IPPROTO_UDP && listens(s) &&
	       portset_has(&plan->dynamic, s->port) &&
	       !portset_has(&plan->listen, s->port);
}

/* The ports some socket listens on, by protocol. */
struct listeners {
	struct portset tcp, udp;
};

static enum holding classify(const struct plan *plan,
			     const struct listeners *ls,
			     const struct procnet_sock *s)
{
	if (pool_like(plan, s)) {
		if (s->pid < 0)
			return HOLDING_HIDDEN;
		if (!strcmp(s->comm, "berthd"))
			return HOLDING_POOL;
	}
	if (listens(s))
		return HOLDING_IN_USE;
	const struct portset *served = s->proto == IPPROTO_TCP ? &ls->tcp : &ls->udp;
	return portset_has(served, s->port) ? HOLDING_SERVED : HOLDING_CLIENT;
}

/* True when the kernel itself may have given s its port: an unconnected UDP
 * socket that never bound one gets a port of ip_local_port_range, and
 * looks in /proc just like a service's socket. */
static bool maybe_kernel_pick(const struct plan *plan,
			      const struct procnet_sock *s)
{
	return s->proto == IPPROTO_UDP &&
	       portset_has(&plan->kernel_ephemeral, s->port) &&
	       !portset_has(&plan->kernel_reserved, s->port);
}

static void print_holding(const struct plan *plan,
			  const struct procnet_sock *s, enum holding h,
			  FILE *out)
{
	static const char *const label[] = {
		[HOLDING_IN_USE] = "in use",
		[HOLDING_POOL] = "conflict",
		[HOLDING_CLIENT] = "conflict",
		[HOLDING_HIDDEN] = "unknown",
	};
	char origin[160];
	char holder[64];

	format_origin(plan, s->port, origin, sizeof(origin));
	if (s->pid >= 0)
		snprintf(holder, sizeof(holder), "pid %d (%s)", (int)s->pid,
			 s->comm);
	else
		snprintf(holder, sizeof(holder), "an unknown process");
	fprintf(out, "%s: reserved port %u/%s%s is held by %s on %s%s%s:%u (%s)",
		label[h], (unsigned)s->port, procnet_proto_name(s), origin,
		holder, s->family == AF_INET6 ? "[" : "", s->addr,
		s->family == AF_INET6 ? "]" : "", (unsigned)s->port,
		procnet_state_name(s));
	switch (h) {
	case HOLDING_POOL:
		fprintf(out, ": no service of this config listens there, so "
			     "berthd's pool took it; \"berthctl release %u\" "
			     "gives it back\n", (unsigned)s->port);
		break;
	case HOLDING_CLIENT:
		fputs(": a connection with no listener on the port, so a port "
		      "allocator handed it out (or a service kept it after "
		      "closing its listener)\n", out);
		break;
	case HOLDING_HIDDEN:
		fputs(": berthd's pool draws from this range and only root may "
		      "see whose socket it is; run as root\n", out);
		break;
	default:
		if (maybe_kernel_pick(plan, s))
			fputs(": the kernel does not reserve the port and hands "
			      "out its range, so this may be a client's "
			      "port, not a service\n", out);
		else
			fputc('\n', out);
	}
}

/*
 * Report every reserved port a local socket holds: conflicts, and listening
 * sockets as "in use".  Returns the number of conflicts, or -1 after
 * printing why /proc could not be read.
 */
static long check_held(const struct plan *plan, const char *proc_root,
		       FILE *out, FILE *err)
{
	struct procnet_sock *v = NULL;
	struct procnet_stats stats = { 0 };
	struct listeners *ls = calloc(1, sizeof(*ls));
	size_t n = 0, held = 0, in_use = 0;
	long rc = -1, conflicts = 0;

	if (!ls) {
		fputs("berthctl: check: out of memory\n", err);
		goto out;
	}
	int e = procnet_list(proc_root, PROCNET_TCP | PROCNET_UDP, &v, &n,
			     &stats);
	if (e < 0) {
		fprintf(err, "berthctl: check: cannot read the socket tables in "
			     "%s/net: %s\n", proc_root, strerror(-e));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!portset_has(&plan->reserved, v[i].port) ||
		    !procnet_holds(&v[i]))
			continue;
		if (listens(&v[i]))
			portset_add(v[i].proto == IPPROTO_TCP ? &ls->tcp : &ls->udp,
				    v[i].port);
		v[held++] = v[i];
	}
	e = procnet_owners(proc_root, v, held, &stats);
	if (e < 0) {
		fprintf(err, "berthctl: check: cannot list the processes in %s: "
			     "%s\n", proc_root, strerror(-e));
		goto out;
	}
	qsort(v, held, sizeof(*v), cmp_conflict);
	for (size_t i = 0; i < held; i++) {
		enum holding h = classify(plan, ls, &v[i]);
		if (h == HOLDING_SERVED)
			continue;
		print_holding(plan, &v[i], h, out);
		if (h == HOLDING_IN_USE)
			in_use++;
		else
			conflicts++;
	}
	if (in_use > 0)
		fputs("note: a socket listening on a reserved port is taken to "
		      "be the service the port is kept for; check that each "
		      "program \"in use\" names is that service\n", out);
	if (stats.unowned > 0 && stats.hidden_procs > 0)
		fprintf(err, "berthctl: note: some owners are hidden (%zu "
			     "processes could not be read): run as root\n",
			stats.hidden_procs);
	rc = conflicts;
out:
	free(ls);
	free(v);
	return rc;
}

/* A pool larger than its ports can never be filled.  Returns 1 when that
 * is so (after saying it), else 0. */
static int check_pool(const struct plan *plan, FILE *out)
{
	uint32_t room = portset_count(&plan->pool_room);

	if (plan->pool_size <= room)
		return 0;
	char why[PLAN_POOL_ROOM_WHY_MAX];
	plan_pool_room_why(plan, why, sizeof(why));
	fprintf(out, "conflict: pool size %u (%s:%u) does not fit: the plan "
		     "leaves only %u ports to the pool (%s)\n",
		plan->pool_size, plan->file ? plan->file : "config",
		plan->pool_size_line, room, why);
	return 1;
}

/*
 * Warn about reserved ports the kernel does not reserve.  Returns 0, or
 * -ENOMEM when the list could not be formatted.
 */
static int check_kernel_sync(const struct plan *plan, FILE *out)
{
	struct portset missing = plan->reserved;
	char *list = NULL;

	if (portset_count(&plan->reserved) == 0)
		return 0;
	if (!plan->kernel_read) {
		fputs("warning: the kernel's ip_local_reserved_ports could not "
		      "be read, so whether it reserves the plan's reserved "
		      "ports is unknown; \"berthctl apply\" (as root) makes "
		      "sure it does\n", out);
		return 0;
	}
	portset_diff(&missing, &plan->kernel_reserved);
	uint32_t count = portset_count(&missing);
	if (count == 0)
		return 0;
	size_t len = portset_format(&missing, NULL, 0, ", ") + 1;
	list = malloc(len);
	if (!list)
		return -ENOMEM;
	portset_format(&missing, list, len, ", ");
	fprintf(out, "warning: the kernel does not reserve %u of the plan's "
		     "reserved ports (%s), so it may hand them out as ephemeral "
		     "ports; run \"berthctl apply\" as root\n", count, list);
	free(list);
	return 0;
}

int ctl_check(const struct plan *plan, const char *proc_root, FILE *out,
	      FILE *err)
{
	long conflicts = check_held(plan, proc_root, out, err);

	if (conflicts < 0)
		return CTL_ERROR;
	conflicts += check_pool(plan, out);
	if (check_kernel_sync(plan, out) < 0) {
		fputs("berthctl: check: out of memory\n", err);
		return CTL_ERROR;
	}
	if (conflicts > 0)
		return CTL_FINDING;
	fputs("ok: no conflicts\n", out);
	return CTL_OK;
}
