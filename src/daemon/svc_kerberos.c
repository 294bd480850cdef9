/*
 * svc_kerberos: berthd's wiring of the Kerberos front end: a TCP and a UDP
 * listener on every listen address, sharing one guard and one relay
 * (src/frontend/kerberos.h), fed with the daemon's loop and pool.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "berth/guard.h"
#include "berth/session.h"
#include "daemon/daemon.h"
#include "frontend/kerberos.h"

struct svc_krb {
	char name[CONFIG_NAME_MAX + 1];
	struct guard *guard;
	struct fe_krb *krb;
	struct sess_listener **tcp; /* nlisten entries, NULL until opened */
	struct sess_listener **udp;
	size_t nlisten;
};

static void krb_stop(void *state)
{
	struct svc_krb *k = state;
	if (!k)
		return;
	/* Listeners first: closing their sessions runs into the relay. */
	for (size_t i = 0; i < k->nlisten; i++) {
		if (k->tcp)
			sess_listener_free(k->tcp[i]);
		if (k->udp)
			sess_listener_free(k->udp[i]);
	}
	fe_krb_free(k->krb);
	guard_free(k->guard);
	free(k->tcp);
	free(k->udp);
	free(k);
}

/* An upstream of svc that an earlier kerberos service of cfg has too, or
 * NULL; *other is that service. */
static const struct config_addr *shared_kdc(const struct berth_config *cfg,
					    const struct config_service *svc,
					    const struct config_service **other)
{
	for (const struct config_service *o = cfg->services; o < svc; o++) {
		if (o->protocol != CONFIG_PROTO_KERBEROS)
			continue;
		for (size_t i = 0; i < svc->nupstream; i++)
			for (size_t j = 0; j < o->nupstream; j++)
				if (config_same_addr(&svc->upstream[i], &o->upstream[j])) {
					*other = o;
					return &svc->upstream[i];
				}
	}
	return NULL;
}

static int krb_check(const struct berth_config *cfg,
		     const struct config_service *svc, char *err, size_t errlen)
{
	if (svc->nupstream == 0 || svc->nupstream > FE_KRB_MAX_UPSTREAMS) {
		snprintf(err, errlen, "%s:%u: [service %s] upstream: a kerberos service "
			 "needs 1 to %u upstream KDCs, has %zu", cfg->file,
			 svc->upstream_line ? svc->upstream_line : svc->line, svc->name,
			 FE_KRB_MAX_UPSTREAMS, svc->nupstream);
		return -EINVAL;
	}
	/* A KDC's reply carries nothing that names its request: the relay
	 * tells replies apart by (pool socket, KDC) alone, which two relays
	 * sharing a KDC could both be waiting on. */
	const struct config_service *other = NULL;
	const struct config_addr *kdc = shared_kdc(cfg, svc, &other);
	if (kdc) {
		char text[INET6_ADDRSTRLEN + 8];
		config_format_addr(kdc, text, sizeof(text));
		snprintf(err, errlen, "%s:%u: [service %s] upstream: %s is an "
			 "upstream of [service %s] too; two kerberos services "
			 "cannot share a KDC (its replies are told apart by pool "
			 "socket and KDC alone): give one service both listen "
			 "addresses", cfg->file,
			 svc->upstream_line ? svc->upstream_line : svc->line,
			 svc->name, text, other->name);
		return -EINVAL;
	}
	return 0;
}

static int krb_start(struct daemon *d, const struct config_service *svc,
		     void **state, char *err, size_t errlen)
{
	int rc = -ENOMEM;
	struct svc_krb *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(k->name, sizeof(k->name), "%s", svc->name);
	/* The daemon ran krb_check(): 1 to FE_KRB_MAX_UPSTREAMS. */
	struct fe_krb_upstream ups[FE_KRB_MAX_UPSTREAMS];
	for (size_t i = 0; i < svc->nupstream; i++)
		ups[i] = (struct fe_krb_upstream){ .sa = svc->upstream[i].sa,
						   .len = svc->upstream[i].len };
	const struct fe_krb_config kc = {
		.name = k->name,
		.upstreams = ups,
		.nupstreams = svc->nupstream,
		.upstream_timeout_ms = svc->upstream_timeout_ms,
	};
	k->guard = guard_new(&svc->blocked_source_ports);
	k->krb = fe_krb_new(daemon_loop(d), daemon_pool(d), &kc);
	k->tcp = calloc(svc->nlisten, sizeof(*k->tcp));
	k->udp = calloc(svc->nlisten, sizeof(*k->udp));
	if (!k->guard || !k->krb || !k->tcp || !k->udp) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	k->nlisten = svc->nlisten;
	struct sess_service ss;
	fe_krb_service(k->krb, k->name, &ss);
	const struct sess_limits lim = {
		.new_connection_ms = svc->new_connection_timeout_ms,
		.idle_ms = svc->idle_timeout_ms,
		.reset_on_timeout = svc->reset_on_timeout,
		.max_sessions = svc->max_sessions,
	};
	for (size_t i = 0; i < svc->nlisten; i++) {
		const struct sockaddr *a = (const struct sockaddr *)&svc->listen[i].sa;
		socklen_t alen = svc->listen[i].len;
		char why[256];
		k->tcp[i] = sess_listen_tcp(daemon_loop(d), a, alen, &ss, &lim,
					    k->guard, why, sizeof(why));
		if (k->tcp[i])
			k->udp[i] = sess_listen_udp(daemon_loop(d), a, alen, &ss, &lim,
						    k->guard, why, sizeof(why));
		if (!k->tcp[i] || !k->udp[i]) {
			snprintf(err, errlen, "%s:%u: [service %s] listen: %s",
				 daemon_config(d)->file, svc->listen_line,
				 svc->name, why);
			rc = -EADDRNOTAVAIL;
			goto fail;
		}
	}
	if (!daemon_pool(d))
		fprintf(stderr, "berthd: [service %s]: no [pool] section: UDP requests "
			"cannot be relayed and get KDC_ERR_SVC_UNAVAILABLE; TCP works\n",
			svc->name);
	*state = k;
	return 0;
fail:
	krb_stop(k);
	return rc;
}

static bool krb_take_pool_answer(void *state, int fd, uint16_t port,
				 const struct sockaddr *from, socklen_t fromlen,
				 const uint8_t *msg, size_t len)
{
	struct svc_krb *k = state;
	(void)port;
	return fe_krb_take_reply(k->krb, fd, from, fromlen, msg, len);
}

static bool krb_on_pool_reply(void *state, int fd, uint16_t port,
			      const struct sockaddr *from, socklen_t fromlen,
			      const uint8_t *msg, size_t len)
{
	struct svc_krb *k = state;
	(void)port;
	return fe_krb_pool_reply(k->krb, fd, from, fromlen, msg, len);
}

static uint64_t krb_pool_hold_ms(const struct config_service *svc)
{
	return fe_krb_pool_hold_ms(svc->upstream_timeout_ms);
}

#define STAT(name, value) \
	fprintf(out, "  %s: %llu\n", name, (unsigned long long)(value))

static void krb_status(void *state, FILE *out)
{
	struct svc_krb *k = state;
	struct fe_krb_stats st;
	fe_krb_get_stats(k->krb, &st);
	STAT("requests_udp", st.requests_udp);
	STAT("requests_tcp", st.requests_tcp);
	STAT("replies", st.replies);
	STAT("outstanding", st.outstanding);
	STAT("upstream_timeouts", st.upstream_timeouts);
	STAT("upstream_failures", st.upstream_failures);
	STAT("failovers", st.failovers);
	STAT("too_big_retries", st.too_big_retries);
	STAT("too_big_relayed", st.too_big_relayed);
	STAT("errors_sent", st.errors_sent);
	STAT("unmatched_replies", st.unmatched);
	STAT("late_replies", st.late_replies);
	STAT("malformed", st.malformed);
	STAT("pool_busy", st.pool_busy);
	STAT("dropped", st.dropped);
	struct sess_stats sum = { 0 };
	for (size_t i = 0; i < k->nlisten; i++) {
		daemon_sum_sess_stats(&sum, k->tcp[i]);
		daemon_sum_sess_stats(&sum, k->udp[i]);
	}
	STAT("guard_drops", sum.guard_drops);
	STAT("datagrams_in", sum.datagrams_in);
	STAT("datagrams_out", sum.datagrams_out);
	STAT("datagrams_dropped", sum.datagrams_dropped);
	daemon_print_sess_stats(&sum, out);
}

static void krb_sessions(void *state, FILE *out)
{
	struct svc_krb *k = state;
	for (size_t i = 0; i < k->nlisten; i++)
		daemon_print_sessions(k->tcp[i], k->name, out);
}

const struct daemon_service_ops svc_kerberos_ops = {
	.protocol = CONFIG_PROTO_KERBEROS,
	.check = krb_check,
	.start = krb_start,
	.stop = krb_stop,
	.take_pool_answer = krb_take_pool_answer,
	.on_pool_reply = krb_on_pool_reply,
	.pool_hold_ms = krb_pool_hold_ms,
	.status = krb_status,
	.sessions = krb_sessions,
};
