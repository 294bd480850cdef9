/*
 * svc_dns: berthd's wiring of a [service NAME] with protocol = dns to the
 * DNS forwarder (src/dns/forwarder.h): the hosts file, the upstreams, the
 * guard's blocked source ports and a UDP and a TCP listener per listen
 * address.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/session.h"
#include "daemon/daemon.h"
#include "dns/forwarder.h"
#include "dns/hosts.h"

_Static_assert(CONFIG_DNS_MAX_UPSTREAMS == DNS_FWD_MAX_UPSTREAMS,
	       "the config leaves resolv.conf nameservers out at the forwarder's limit");

struct svc_dns {
	struct dns_fwd *fwd;
	struct dns_hosts *hosts; /* owned; the forwarder borrows it */
	char name[CONFIG_NAME_MAX + 1];
	size_t hosts_skipped;
};

/* A skipped hosts line is worth a warning, not a refusal to start: the
 * default config reads /etc/hosts, which the operator may not control. */
static void warn_hosts(void *arg, const char *msg)
{
	struct svc_dns *s = arg;
	s->hosts_skipped++;
	fprintf(stderr, "berthd: [service %s] hosts: %s (line skipped)\n",
		s->name, msg);
}

static void dns_stop(void *state)
{
	struct svc_dns *s = state;
	if (!s)
		return;
	dns_fwd_free(s->fwd);
	dns_hosts_free(s->hosts);
	free(s);
}

static int dns_check(const struct berth_config *cfg,
		     const struct config_service *svc, char *err, size_t errlen)
{
	if (svc->nlisten > DNS_FWD_MAX_LISTEN) {
		snprintf(err, errlen, "%s:%u: [service %s] listen: at most %u "
			 "addresses, has %zu", cfg->file, svc->listen_line,
			 svc->name, DNS_FWD_MAX_LISTEN, svc->nlisten);
		return -EINVAL;
	}
	if (svc->nupstream > DNS_FWD_MAX_UPSTREAMS) {
		snprintf(err, errlen, "%s:%u: [service %s] upstream: at most %u "
			 "upstreams, has %zu", cfg->file, svc->upstream_line,
			 svc->name, DNS_FWD_MAX_UPSTREAMS, svc->nupstream);
		return -EINVAL;
	}
	/* The loader only counted them.  Check runs for berthd --check and
	 * before each start and reload, so this is said on every one of
	 * them; the check has no warning stream of its own, and stderr is
	 * where berthd's warnings go (as warn_hosts() says skipped lines). */
	if (svc->upstream_left_out)
		fprintf(stderr, "berthd: %s:%u: [service %s] upstream: %zu "
			"nameserver%s of %s left out: a dns service uses at most "
			"%u upstreams\n", cfg->file, svc->upstream_line, svc->name,
			svc->upstream_left_out, svc->upstream_left_out == 1 ? "" : "s",
			svc->upstream_left_out_file, DNS_FWD_MAX_UPSTREAMS);
	if (svc->hosts) {
		/* Read it now, as starting will: a file that cannot be read
		 * would stop the service from starting. */
		struct dns_hosts *h = NULL;
		char why[256];
		int rc = dns_hosts_load(&h, svc->hosts, DNS_HOSTS_DEFAULT_TTL, NULL,
					NULL, why, sizeof(why));
		dns_hosts_free(h);
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: [service %s] hosts: %s",
				 cfg->file, svc->hosts_line, svc->name, why);
			return rc;
		}
	}
	if (svc->nupstream > 0 && !cfg->pool.present) {
		snprintf(err, errlen, "%s:%u: [service %s] upstream: forwarding needs "
			 "the socket pool: add a [pool] section (or answer from hosts "
			 "only)", cfg->file, svc->upstream_line, svc->name);
		return -EINVAL;
	}
	return 0;
}

static int dns_start(struct daemon *d, const struct config_service *svc,
		     void **state, char *err, size_t errlen)
{
	struct dns_fwd_addr ups[DNS_FWD_MAX_UPSTREAMS];
	char why[256] = "";
	int rc = -ENOMEM;
	struct svc_dns *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "[service %s]: out of memory", svc->name);
		return -ENOMEM;
	}
	snprintf(s->name, sizeof(s->name), "%s", svc->name);
	/* The daemon ran dns_check(): at most DNS_FWD_MAX_UPSTREAMS. */
	if (svc->hosts) {
		rc = dns_hosts_load(&s->hosts, svc->hosts, DNS_HOSTS_DEFAULT_TTL,
				    warn_hosts, s, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: [service %s] hosts: %s",
				 daemon_config(d)->file, svc->hosts_line, svc->name, why);
			goto fail;
		}
	}
	for (size_t i = 0; i < svc->nupstream; i++) {
		memset(&ups[i], 0, sizeof(ups[i]));
		memcpy(&ups[i].sa, &svc->upstream[i].sa, svc->upstream[i].len);
		ups[i].len = svc->upstream[i].len;
	}
	struct dns_fwd_config fc = {
		.upstreams = ups,
		.nupstream = svc->nupstream,
		.upstream_timeout_ms = svc->upstream_timeout_ms,
		.use_0x20 = svc->dns_0x20,
		.blocked_source_ports = &svc->blocked_source_ports,
		.hosts = s->hosts,
	};
	s->fwd = dns_fwd_new(daemon_loop(d), daemon_pool(d), &fc, why, sizeof(why));
	if (!s->fwd) {
		rc = -EINVAL;
		snprintf(err, errlen, "[service %s]: %s", svc->name, why);
		goto fail;
	}
	for (size_t i = 0; i < svc->nlisten; i++) {
		rc = dns_fwd_listen_udp(s->fwd, (const struct sockaddr *)&svc->listen[i].sa,
					svc->listen[i].len, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: [service %s] listen: %s",
				 daemon_config(d)->file, svc->listen_line, svc->name, why);
			goto fail;
		}
		struct dns_fwd_tcp_limits lim = {
			.new_connection_ms = svc->new_connection_timeout_ms,
			.idle_ms = svc->idle_timeout_ms,
			.reset_on_timeout = svc->reset_on_timeout,
			.max_sessions = svc->max_sessions,
		};
		rc = dns_fwd_listen_tcp(s->fwd, (const struct sockaddr *)&svc->listen[i].sa,
					svc->listen[i].len, &lim, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: [service %s] listen: %s",
				 daemon_config(d)->file, svc->listen_line, svc->name, why);
			goto fail;
		}
	}
	*state = s;
	return 0;
fail:
	dns_stop(s);
	return rc;
}

static bool dns_take_pool_answer(void *state, int fd, uint16_t port,
				 const struct sockaddr *from, socklen_t fromlen,
				 const uint8_t *msg, size_t len)
{
	struct svc_dns *s = state;
	return dns_fwd_take_answer(s->fwd, fd, port, from, fromlen, msg, len);
}

static bool dns_on_pool_reply(void *state, int fd, uint16_t port,
			      const struct sockaddr *from, socklen_t fromlen,
			      const uint8_t *msg, size_t len)
{
	struct svc_dns *s = state;
	return dns_fwd_on_upstream_reply(s->fwd, fd, port, from, fromlen, msg, len);
}

/* A query holds its pool socket until its answer or upstream_timeout. */
static uint64_t dns_pool_hold_ms(const struct config_service *svc)
{
	return svc->upstream_timeout_ms;
}

static void dns_status(void *state, FILE *out)
{
	struct svc_dns *s = state;
	fprintf(out, "  hosts_records: %zu\n", dns_hosts_count(s->hosts));
	dns_fwd_status(s->fwd, out);
	/* The TCP sessions' counters, summed over the listen addresses. */
	struct sess_stats sum = { 0 };
	struct sess_listener *l;
	for (size_t i = 0; (l = dns_fwd_tcp_listener(s->fwd, i)); i++)
		daemon_sum_sess_stats(&sum, l);
	daemon_print_sess_stats(&sum, out);
}

static void dns_sessions(void *state, FILE *out)
{
	struct svc_dns *s = state;
	struct sess_listener *l;
	for (size_t i = 0; (l = dns_fwd_tcp_listener(s->fwd, i)); i++)
		daemon_print_sessions(l, s->name, out);
}

const struct daemon_service_ops svc_dns_ops = {
	.protocol = CONFIG_PROTO_DNS,
	.check = dns_check,
	.start = dns_start,
	.stop = dns_stop,
	.take_pool_answer = dns_take_pool_answer,
	.on_pool_reply = dns_on_pool_reply,
	.pool_hold_ms = dns_pool_hold_ms,
	.status = dns_status,
	.sessions = dns_sessions,
};
