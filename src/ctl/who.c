/*
 * berthctl who PORT[/udp|/tcp]: which local sockets hold a port and which
 * processes own them, one line per socket, like `ss -tuanp` narrowed to one
 * port.  "Hold" is procnet_holds(): TCP TIME_WAIT entries are left out
 * because they stop no one from binding the port.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "berth/procnet.h"
#include "ctl/ctl.h"

/* Room for "[" IPv6 "]:" port. */
#define ENDPOINT_LEN (PROCNET_ADDR_LEN + 8)

bool ctl_parse_port(const char *text, uint16_t *port, const char **end,
		    const char **why)
{
	if (text[0] < '0' || text[0] > '9') {
		*why = "the port must be a number";
		return false;
	}
	char *stop;
	errno = 0;
	unsigned long v = strtoul(text, &stop, 10);
	if (errno != 0 || v == 0 || v > UINT16_MAX) {
		*why = "the port must be 1-65535";
		return false;
	}
	*port = (uint16_t)v;
	*end = stop;
	return true;
}

/*
 * Parse PORT, PORT/udp or PORT/tcp into *port and *mask.  Returns false
 * with a reason in why.
 */
static bool parse_arg(const char *arg, uint16_t *port, unsigned *mask,
		      const char **why)
{
	const char *end;

	*mask = PROCNET_TCP | PROCNET_UDP;
	if (!ctl_parse_port(arg, port, &end, why))
		return false;
	if (*end == '\0')
		return true;
	if (*end == '/' && strcasecmp(end + 1, "udp") == 0) {
		*mask = PROCNET_UDP;
		return true;
	}
	if (*end == '/' && strcasecmp(end + 1, "tcp") == 0) {
		*mask = PROCNET_TCP;
		return true;
	}
	*why = *end == '/' ? "the protocol must be udp or tcp"
			   : "trailing characters after the port";
	return false;
}

static void format_endpoint(const struct procnet_sock *s, char *buf,
			    size_t len)
{
	if (s->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", s->addr, (unsigned)s->port);
	else
		snprintf(buf, len, "%s:%u", s->addr, (unsigned)s->port);
}

/* Print the holders as aligned columns. */
static void print_holders(const struct procnet_sock *v, size_t n, FILE *out)
{
	char ep[ENDPOINT_LEN];
	int ep_width = 0, state_width = 0;

	for (size_t i = 0; i < n; i++) {
		format_endpoint(&v[i], ep, sizeof(ep));
		int w = (int)strlen(ep);
		int sw = (int)strlen(procnet_state_name(&v[i]));
		ep_width = w > ep_width ? w : ep_width;
		state_width = sw > state_width ? sw : state_width;
	}
	for (size_t i = 0; i < n; i++) {
		char pid[16] = "?";
		format_endpoint(&v[i], ep, sizeof(ep));
		if (v[i].pid >= 0)
			snprintf(pid, sizeof(pid), "%d", (int)v[i].pid);
		fprintf(out, "%s  %-*s  %-*s  pid %s  %s\n",
			procnet_proto_name(&v[i]), ep_width, ep, state_width,
			procnet_state_name(&v[i]), pid,
			v[i].pid >= 0 ? v[i].comm : "?");
	}
}

int ctl_who(const char *arg, const char *proc_root, FILE *out, FILE *err)
{
	struct procnet_sock *v = NULL;
	struct procnet_stats stats = { 0 };
	const char *why = NULL;
	uint16_t port = 0;
	unsigned mask = 0;
	size_t n = 0, held = 0;
	int rc = CTL_ERROR;

	if (!parse_arg(arg, &port, &mask, &why)) {
		fprintf(err, "berthctl: who: bad argument '%s': %s "
			     "(expected PORT, PORT/udp or PORT/tcp)\n", arg, why);
		goto out;
	}
	int e = procnet_list(proc_root, mask, &v, &n, &stats);
	if (e < 0) {
		fprintf(err, "berthctl: who: cannot read the socket tables in "
			     "%s/net: %s\n", proc_root, strerror(-e));
		goto out;
	}
	/* Keep the holders of this port at the front of v. */
	for (size_t i = 0; i < n; i++)
		if (v[i].port == port && procnet_holds(&v[i]))
			v[held++] = v[i];
	e = procnet_owners(proc_root, v, held, &stats);
	if (e < 0) {
		fprintf(err, "berthctl: who: cannot list the processes in %s: "
			     "%s\n", proc_root, strerror(-e));
		goto out;
	}
	if (held == 0) {
		if (mask == PROCNET_UDP)
			fprintf(out, "nobody holds %u/udp\n", (unsigned)port);
		else if (mask == PROCNET_TCP)
			fprintf(out, "nobody holds %u/tcp\n", (unsigned)port);
		else
			fprintf(out, "nobody holds %u/tcp or %u/udp\n",
				(unsigned)port, (unsigned)port);
		rc = CTL_FINDING;
		goto out;
	}
	qsort(v, held, sizeof(*v), procnet_sock_cmp);
	print_holders(v, held, out);
	if (stats.unowned > 0 && stats.hidden_procs > 0)
		fprintf(err, "berthctl: note: some owners are hidden (%zu "
			     "processes could not be read): run as root\n",
			stats.hidden_procs);
	if (stats.malformed > 0)
		fprintf(err, "berthctl: note: skipped %zu malformed lines in "
			     "%s/net\n", stats.malformed, proc_root);
	rc = CTL_OK;
out:
	free(v);
	return rc;
}
