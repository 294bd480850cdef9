/*
 * dns/forwarder: the counters, and the status lines `berthctl status` prints
 * for a dns service.
 */
#include <stdio.h>

#include "dns/forwarder_int.h"

void dns_fwd_stats(const struct dns_fwd *f, struct dns_fwd_stats *out)
{
	*out = f->st;
	out->guard_drops = guard_drops_total(f->guard);
}

unsigned dns_fwd_upstream_failures(const struct dns_fwd *f, size_t i)
{
	return i < f->nup ? f->up[i].failures : 0;
}

void dns_fwd_status(const struct dns_fwd *f, FILE *out)
{
	static const char *const rcode_names[16] = {
		"noerror", "formerr", "servfail", "nxdomain", "notimp",
		"refused", "yxdomain", "yxrrset", "nxrrset", "notauth",
		"notzone", "rcode11", "rcode12", "rcode13", "rcode14", "rcode15",
	};
	struct dns_fwd_stats s;
	dns_fwd_stats(f, &s);
	const struct {
		const char *key;
		uint64_t v;
	} rows[] = {
		{ "queries_udp", s.queries_udp },
		{ "queries_tcp", s.queries_tcp },
		{ "answers", s.answers },
		{ "local_answers", s.local_answers },
		{ "forwarded", s.forwarded },
		{ "upstream_answers", s.upstream_answers },
		{ "truncated", s.truncated },
		{ "outstanding", s.outstanding },
		{ "timeouts", s.timeouts },
		{ "timeouts_alive", s.timeouts_alive },
		{ "retries", s.retries },
		{ "servfails", s.servfails },
		{ "mismatch_address", s.mismatch_address },
		{ "mismatch_socket", s.mismatch_socket },
		{ "mismatch_id", s.mismatch_id },
		{ "mismatch_question", s.mismatch_question },
		{ "garbage", s.garbage },
		{ "formerr", s.formerr },
		{ "responses_on_listen", s.responses_on_listen },
		{ "guard_drops", s.guard_drops },
		{ "table_full", s.table_full },
		{ "pool_empty", s.pool_empty },
		{ "send_errors", s.send_errors },
		{ "refused", s.refused },
		{ "badvers", s.badvers },
		{ "zone_transfers", s.zone_transfers },
		{ "upstream_tcp_queries", s.upstream_tcp_queries },
		{ "upstream_tcp_opened", s.upstream_tcp_opened },
		{ "upstream_tcp_reused", s.upstream_tcp_reused },
		{ "upstream_tcp_closed", s.upstream_tcp_closed },
		{ "upstream_tcp_lost", s.upstream_tcp_lost },
		{ "upstream_tcp_backlogged", s.upstream_tcp_backlogged },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		fprintf(out, "  %s: %llu\n", rows[i].key,
			(unsigned long long)rows[i].v);
	for (unsigned i = 0; i < 16; i++)
		if (s.rcode[i])
			fprintf(out, "  rcode_%s: %llu\n", rcode_names[i],
				(unsigned long long)s.rcode[i]);
	const struct {
		const char *name;
		uint64_t v;
	} ext[] = {
		{ "badvers", s.rcode_badvers },
		{ "badcookie", s.rcode_badcookie },
		{ "other", s.rcode_other },
	};
	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
		if (ext[i].v)
			fprintf(out, "  rcode_%s: %llu\n", ext[i].name,
				(unsigned long long)ext[i].v);
	for (size_t i = 0; i < f->nup; i++)
		fprintf(out, "  upstream_%zu_failures: %u\n", i, f->up[i].failures);
}
