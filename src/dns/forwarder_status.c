/*
 * dns/forwarder: the counters, and the status lines `berthctl status` prints
 * for a dns service.
 */
#include <stdio.h>
#include <string.h>

#include "dns/forwarder_int.h"

void fwd_count_answer(struct dns_fwd *f, unsigned rcode)
{
	f->st.answers++;
	if (rcode < 16)
		f->st.rcode[rcode]++;
	else if (rcode == DNS_RCODE_BADVERS)
		f->st.rcode_badvers++;
	else if (rcode == DNS_RCODE_BADCOOKIE)
		f->st.rcode_badcookie++;
	else
		f->st.rcode_other++;
}

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
	/* The 16 RCODEs of the header, then the extended ones an OPT
	 * carries (struct dns_fwd_stats). */
	static const char *const rcode_names[19] = {
		"noerror", "formerr", "servfail", "nxdomain", "notimp",
		"refused", "yxdomain", "yxrrset", "nxrrset", "notauth",
		"notzone", "rcode11", "rcode12", "rcode13", "rcode14", "rcode15",
		"badvers", "badcookie", "other",
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
	uint64_t by_rcode[19];
	memcpy(by_rcode, s.rcode, sizeof(s.rcode));
	by_rcode[16] = s.rcode_badvers;
	by_rcode[17] = s.rcode_badcookie;
	by_rcode[18] = s.rcode_other;
	for (unsigned i = 0; i < 19; i++)
		if (by_rcode[i])
			fprintf(out, "  rcode_%s: %llu\n", rcode_names[i],
				(unsigned long long)by_rcode[i]);
	for (size_t i = 0; i < f->nup; i++)
		fprintf(out, "  upstream_%zu_failures: %u\n", i, f->up[i].failures);
}
