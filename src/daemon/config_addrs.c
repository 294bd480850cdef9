/*
 * config_addrs: the checks a config's addresses need across sections.  Two
 * listeners on one address could never both bind, and an upstream that is
 * one of berthd's own listen addresses sends every query back into berthd,
 * which forwards it again until its table of queries in flight is full:
 * one query becomes tens of thousands.  Both are refused at load, so
 * `berthd --check` and a reload see them before anything starts.  A
 * service's own upstream list is made final here too: no address twice,
 * and no more from resolv.conf files than a dns service can use.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config_int.h"

/* One listen address of the config, with where it was given. */
struct listen_ref {
	const struct config_addr *addr;
	const char *label; /* "[service NAME]" or "[metrics]" */
	unsigned line;
	size_t svc;        /* index of the service; METRICS for [metrics] */
};

#define METRICS SIZE_MAX

/* "[service NAME]", for messages. */
typedef char svc_label[CONFIG_NAME_MAX + 12];

/*
 * The form the kernel compares: an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * as the IPv4 address it stands for, and no scope on an IPv6 address that
 * is not link-local (the kernel ignores it there).
 */
static struct config_addr canon(const struct config_addr *a)
{
	struct config_addr c = *a;
	if (a->sa.ss_family != AF_INET6)
		return c;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = s6->sin6_port };
		memcpy(&in.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
		memset(&c, 0, sizeof(c));
		memcpy(&c.sa, &in, sizeof(in));
		c.len = sizeof(in);
	} else if (!IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) {
		((struct sockaddr_in6 *)&c.sa)->sin6_scope_id = 0;
	}
	return c;
}

static bool is_wildcard(const struct config_addr *a)
{
	if (a->sa.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
	return IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
}

/* Same family, same host address (and IPv6 scope); ports not compared.
 * Both canonical. */
static bool same_host(const struct config_addr *a, const struct config_addr *b)
{
	if (a->sa.ss_family != b->sa.ss_family)
		return false;
	if (a->sa.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)&b->sa)->sin_addr.s_addr;
	const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->sa;
	const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->sa;
	return IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) &&
	       x->sin6_scope_id == y->sin6_scope_id;
}

static bool same_port(const struct config_addr *a, const struct config_addr *b)
{
	return a->sa.ss_family == b->sa.ss_family &&
	       config_addr_port(a) == config_addr_port(b);
}

bool config_same_addr(const struct config_addr *a, const struct config_addr *b)
{
	struct config_addr x = canon(a), y = canon(b);
	return same_port(&x, &y) && same_host(&x, &y);
}

/* Would listeners on a and b collide?  (IPv6 listeners are IPv6-only.) */
static bool listens_collide(const struct config_addr *a0,
			    const struct config_addr *b0)
{
	struct config_addr a = canon(a0), b = canon(b0);
	return same_port(&a, &b) &&
	       (same_host(&a, &b) || is_wildcard(&a) || is_wildcard(&b));
}

/* This host's interface addresses, read once per load (NULL until then). */
struct local_addrs {
	bool read;
	struct ifaddrs *all;
};

/* Is a's host (canonical) this machine: loopback or an address of one of
 * its interfaces? */
static bool is_local(const struct config_addr *a, struct local_addrs *here)
{
	if (a->sa.ss_family == AF_INET) {
		uint32_t v4 = ntohl(((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr);
		if (v4 >> 24 == 127)
			return true;
	} else if (IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr)) {
		return true;
	}
	if (!here->read) {
		here->read = true;
		if (getifaddrs(&here->all) != 0)
			here->all = NULL;
	}
	for (struct ifaddrs *i = here->all; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != a->sa.ss_family)
			continue;
		struct config_addr c = { .len = a->len };
		memcpy(&c.sa, i->ifa_addr, a->len);
		c = canon(&c);
		if (same_host(a, &c))
			return true;
	}
	return false;
}

/* Would a query sent to upstream u0 arrive at listener l0?  (A wildcard
 * upstream is refused before this is asked.) */
static bool upstream_reaches(const struct config_addr *u0,
			     const struct config_addr *l0, struct local_addrs *here)
{
	struct config_addr u = canon(u0), l = canon(l0);
	return same_port(&u, &l) &&
	       (same_host(&u, &l) || (is_wildcard(&l) && is_local(&u, here)));
}

/* Is there a path from service `from` to service `to` along edge (ns x ns:
 * an upstream of s reaches a listener of t)?  seen starts all false. */
static bool leads_to(const bool *edge, size_t ns, size_t from, size_t to,
		     bool *seen)
{
	if (from == to)
		return true;
	if (seen[from])
		return false;
	seen[from] = true;
	for (size_t t = 0; t < ns; t++)
		if (edge[from * ns + t] && leads_to(edge, ns, t, to, seen))
			return true;
	return false;
}

/* Every listen address of cfg, in file order ([metrics] last); NULL when
 * out of memory.  *n receives the count. */
static struct listen_ref *listen_refs(const struct berth_config *cfg,
				      svc_label *labels,
				      size_t *n)
{
	size_t total = cfg->metrics.enabled ? 1 : 0;
	for (size_t s = 0; s < cfg->nservices; s++)
		total += cfg->services[s].nlisten;
	struct listen_ref *refs = calloc(total ? total : 1, sizeof(*refs));
	if (!refs)
		return NULL;
	size_t k = 0;
	for (size_t s = 0; s < cfg->nservices; s++) {
		const struct config_service *svc = &cfg->services[s];
		snprintf(labels[s], sizeof(labels[s]), "[service %s]", svc->name);
		for (size_t j = 0; j < svc->nlisten; j++)
			refs[k++] = (struct listen_ref){ &svc->listen[j], labels[s],
							 svc->listen_line, s };
	}
	if (cfg->metrics.enabled)
		refs[k++] = (struct listen_ref){ &cfg->metrics.listen, "[metrics]",
						 cfg->metrics.line, METRICS };
	*n = k;
	return refs;
}

/* Where other was given, seen from self: "in the same list" or
 * "of [service a] (line 4)". */
static void where(const struct listen_ref *other, const struct listen_ref *self,
		  char *buf, size_t len)
{
	if (other->label == self->label)
		snprintf(buf, len, "in the same list");
	else
		snprintf(buf, len, "of %s (line %u)", other->label, other->line);
}

/*
 * Upstreams that lead back into berthd.  An upstream may be another
 * service's listener (one berthd service relaying to the next is merely
 * roundabout), but never so that a query comes back to the service it left:
 * refused with the upstream that closes the loop.
 */
static int check_loops(struct parse *p, const struct berth_config *cfg,
		       const struct listen_ref *refs, size_t n,
		       svc_label *labels,
		       struct local_addrs *here)
{
	size_t ns = cfg->nservices;
	bool *edge = calloc(ns * ns + ns + 1, sizeof(*edge));
	if (!edge)
		return config__fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
	bool *seen = edge + ns * ns;
	for (size_t s = 0; s < ns; s++)
		for (size_t u = 0; u < cfg->services[s].nupstream; u++)
			for (size_t j = 0; j < n; j++)
				if (refs[j].svc != METRICS &&
				    upstream_reaches(&cfg->services[s].upstream[u],
						     refs[j].addr, here))
					edge[s * ns + refs[j].svc] = true;
	int rc = 0;
	char a[INET6_ADDRSTRLEN + 16], b[INET6_ADDRSTRLEN + 16];
	for (size_t s = 0; s < ns && !rc; s++) {
		const struct config_service *svc = &cfg->services[s];
		for (size_t u = 0; u < svc->nupstream && !rc; u++)
			for (size_t j = 0; j < n && !rc; j++) {
				size_t t = refs[j].svc;
				if (t == METRICS ||
				    !upstream_reaches(&svc->upstream[u], refs[j].addr, here))
					continue;
				memset(seen, 0, ns * sizeof(*seen));
				if (!leads_to(edge, ns, t, s, seen))
					continue;
				config_format_addr(&svc->upstream[u], a, sizeof(a));
				config_format_addr(refs[j].addr, b, sizeof(b));
				if (t == s)
					rc = config__fail(p, -EINVAL, svc->upstream_line,
							  labels[s], "upstream",
							  "%s reaches this service's own listener %s "
							  "(line %u): every query would come back to it",
							  a, b, refs[j].line);
				else
					rc = config__fail(p, -EINVAL, svc->upstream_line,
							  labels[s], "upstream",
							  "%s reaches the listener %s of %s (line %u), whose "
							  "upstreams lead back to %s: every query would "
							  "go round",
							  a, b, refs[j].label, refs[j].line, labels[s]);
			}
	}
	free(edge);
	return rc;
}

/* No upstream may be a wildcard address: it names no host to send to (the
 * kernel takes it as this one). */
static int check_wildcard_upstreams(struct parse *p, const struct berth_config *cfg,
				    svc_label *labels)
{
	char a[INET6_ADDRSTRLEN + 16];
	for (size_t s = 0; s < cfg->nservices; s++) {
		const struct config_service *svc = &cfg->services[s];
		for (size_t u = 0; u < svc->nupstream; u++) {
			struct config_addr c = canon(&svc->upstream[u]);
			if (!is_wildcard(&c))
				continue;
			config_format_addr(&svc->upstream[u], a, sizeof(a));
			return config__fail(p, -EINVAL, svc->upstream_line, labels[s],
					    "upstream", "%s is a wildcard address, which "
					    "names no host to send to (name the upstream's "
					    "own address)", a);
		}
	}
	return 0;
}

int config__check_addrs(struct parse *p, const struct berth_config *cfg)
{
	svc_label *labels = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(*labels));
	size_t n = 0;
	struct listen_ref *refs = labels ? listen_refs(cfg, labels, &n) : NULL;
	char a[INET6_ADDRSTRLEN + 16], b[INET6_ADDRSTRLEN + 16], w[96];
	struct local_addrs here = { 0 };
	int rc = 0;
	if (!refs) {
		rc = config__fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n && !rc; i++)
		for (size_t j = 0; j < i && !rc; j++) {
			if (!listens_collide(refs[i].addr, refs[j].addr))
				continue;
			config_format_addr(refs[i].addr, a, sizeof(a));
			config_format_addr(refs[j].addr, b, sizeof(b));
			where(&refs[j], &refs[i], w, sizeof(w));
			struct config_addr x = canon(refs[i].addr), y = canon(refs[j].addr);
			if (same_host(&x, &y))
				rc = config__fail(p, -EINVAL, refs[i].line, refs[i].label,
						  "listen", "%s is given twice (%s)", a, w);
			else
				rc = config__fail(p, -EINVAL, refs[i].line, refs[i].label,
						  "listen", "%s collides with %s %s: a "
						  "wildcard address takes its port on every "
						  "address", a, b, w);
		}
	if (!rc)
		rc = check_wildcard_upstreams(p, cfg, labels);
	if (!rc)
		rc = check_loops(p, cfg, refs, n, labels, &here);
out:
	if (here.all)
		freeifaddrs(here.all);
	free(refs);
	free(labels);
	return rc;
}

/* Is from (struct addr_list) a resolv.conf's? */
static bool from_file(size_t from)
{
	return from != CONFIG_FROM_CONFIG;
}

int config__finish_upstreams(struct parse *p, const char *label,
			     const struct raw_entry *e,
			     struct config_service *svc, size_t *from)
{
	struct config_addr *up = svc->upstream;
	char a[INET6_ADDRSTRLEN + 16], b[INET6_ADDRSTRLEN + 16];
	size_t kept = 0, given = 0;
	for (size_t i = 0; i < svc->nupstream; i++) {
		size_t j = 0;
		while (j < kept && !config_same_addr(&up[j], &up[i]))
			j++;
		if (j == kept) {
			up[kept] = up[i];
			from[kept++] = from[i];
			continue;
		}
		if (from_file(from[i]))
			continue;
		if (!from_file(from[j])) {
			config_format_addr(&up[i], a, sizeof(a));
			config_format_addr(&up[j], b, sizeof(b));
			if (strcmp(a, b) == 0)
				return config__fail(p, -EINVAL, e->line, label, e->key,
						    "%s is given twice (in the same list)", a);
			return config__fail(p, -EINVAL, e->line, label, e->key,
					    "%s is given twice (in the same list, as %s)",
					    a, b);
		}
		/* The config names an address a file gave first: it is the
		 * config's, which the limit below never leaves out. */
		from[j] = CONFIG_FROM_CONFIG;
	}
	for (size_t i = 0; i < kept; i++)
		given += !from_file(from[i]);
	/* More than the limit given in the config itself is the dns
	 * service's error to report (berthd --check); files fill what room
	 * the config's own addresses leave, in order. */
	size_t room = given < CONFIG_DNS_MAX_UPSTREAMS ?
		      CONFIG_DNS_MAX_UPSTREAMS - given : 0;
	size_t n = 0, used = 0;
	for (size_t i = 0; i < kept; i++) {
		if (!from_file(from[i]) || used < room) {
			used += from_file(from[i]);
			up[n++] = up[i];
			continue;
		}
		if (svc->upstream_left_out++)
			continue;
		const char *path = e->value + from[i];
		svc->upstream_left_out_file = strndup(path, strcspn(path, " \t,"));
		if (!svc->upstream_left_out_file)
			return config__fail(p, -ENOMEM, e->line, NULL, NULL,
					    "out of memory");
	}
	svc->nupstream = n;
	return 0;
}
