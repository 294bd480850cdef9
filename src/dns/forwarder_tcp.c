/*
 * dns/forwarder: DNS over TCP from clients (RFC 7766) on the session engine:
 * 2-byte framing, new-connection and idle deadlines, pipelined queries each
 * answered as soon as its answer comes, in whatever order that is.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "berth/session.h"
#include "dns/forwarder_int.h"
#include "dns/hosts.h"

void fwd_tcp_send(struct dns_fwd *f, struct sess *s, const uint8_t *msg,
		  size_t len, unsigned rcode)
{
	f->txtcp[0] = (uint8_t)(len >> 8);
	f->txtcp[1] = (uint8_t)len;
	memcpy(f->txtcp + 2, msg, len);
	if (sess_send(s, f->txtcp, len + 2) < 0) {
		f->st.send_errors++;
		return;
	}
	fwd_count_answer(f, rcode);
}

void fwd_tcp_error(struct dns_fwd *f, struct sess *s, const struct dns_msg *q,
		   unsigned rcode)
{
	uint8_t out[DNS_FWD_QUERY_MAX + 64];
	ssize_t n = dns_build_error(out, sizeof(out), q, rcode, DNS_FWD_EDNS_SIZE);
	if (n > 0)
		fwd_tcp_send(f, s, out, (size_t)n, rcode);
	else
		sess_close(s, SESS_CLOSE_SERVICE);
}

static void on_request(struct sess *s, const uint8_t *msg, size_t len, void *arg)
{
	struct dns_fwd *f = arg;
	struct dns_msg q;
	msg += 2, len -= 2; /* the framer checked the 2-byte prefix */
	f->st.queries_tcp++;
	if (len >= DNS_HEADER_LEN && (msg[2] & 0x80)) {
		f->st.responses_on_listen++;
		sess_close(s, SESS_CLOSE_SERVICE);
		return;
	}
	if (dns_parse_query(&q, msg, len) != DNS_OK) {
		if (q.header_ok) {
			fwd_tcp_error(f, s, &q, fwd_malformed(f, &q));
		} else {
			f->st.garbage++;
			sess_close(s, SESS_CLOSE_SERVICE);
		}
		return;
	}
	unsigned rcode = fwd_screen(f, &q);
	if (rcode) {
		fwd_tcp_error(f, s, &q, rcode);
		return;
	}
	ssize_t n = dns_hosts_answer(f->hosts, &q, f->tx, DNS_MSG_MAX, DNS_FWD_EDNS_SIZE);
	if (n > 0) {
		/* NOERROR or NXDOMAIN: the table's OPT has no RCODE bits. */
		unsigned local_rcode = dns_flags_rcode(dns_get_flags(f->tx));
		f->st.local_answers++;
		fwd_tcp_send(f, s, f->tx, (size_t)n, local_rcode);
		return;
	}
	if (len > DNS_FWD_QUERY_MAX) {
		f->st.refused++;
		fwd_tcp_error(f, s, &q, DNS_RCODE_REFUSED);
		return;
	}
	if (f->nup == 0) {
		f->st.servfails++;
		fwd_tcp_error(f, s, &q, DNS_RCODE_SERVFAIL);
		return;
	}
	if (!fwd_start(f, NULL, &q, s)) {
		/* Table full: an answer now, never silence. */
		f->st.servfails++;
		fwd_tcp_error(f, s, &q, DNS_RCODE_SERVFAIL);
	}
}

static void on_close(struct sess *s, enum sess_close_reason why, void *arg)
{
	(void)why;
	struct dns_fwd *f = arg;
	if (sess_in_flight(s) > 0)
		fwd_cancel_session(f, s);
}

int dns_fwd_listen_tcp(struct dns_fwd *f, const struct sockaddr *addr,
		       socklen_t addrlen, const struct dns_fwd_tcp_limits *lim,
		       char *err, size_t errlen)
{
	if (f->ntcp == DNS_FWD_MAX_LISTEN) {
		snprintf(err, errlen, "too many TCP listeners");
		return -ENOSPC;
	}
	struct sess_service svc = {
		.name = "dns",
		.frame = sess_frame_len16,
		.max_msg = DNS_MSG_MAX,
		.on_request = on_request,
		.on_close = on_close,
		.arg = f,
	};
	struct sess_limits sl = {
		.new_connection_ms = lim ? lim->new_connection_ms : 0,
		.idle_ms = lim ? lim->idle_ms : 0,
		.reset_on_timeout = lim ? lim->reset_on_timeout : false,
		.max_sessions = lim ? lim->max_sessions : 0,
		.max_in_flight = lim ? lim->max_in_flight : 0,
	};
	struct sess_listener *l = sess_listen_tcp(f->loop, addr, addrlen, &svc,
						  &sl, f->guard, err, errlen);
	if (!l)
		return -EINVAL;
	f->tcp[f->ntcp] = l;
	return (int)f->ntcp++;
}

struct sess_listener *dns_fwd_tcp_listener(const struct dns_fwd *f, size_t idx)
{
	return idx < f->ntcp ? f->tcp[idx] : NULL;
}

uint16_t dns_fwd_tcp_port(const struct dns_fwd *f, int idx)
{
	union fwd_sockaddr a;
	socklen_t len = sizeof(a);
	if (idx < 0 || (size_t)idx >= f->ntcp ||
	    getsockname(sess_listener_fd(f->tcp[idx]), &a.sa, &len) < 0)
		return 0;
	return ntohs(a.sa.sa_family == AF_INET ? a.in.sin_port : a.in6.sin6_port);
}

void fwd_tcp_close_all(struct dns_fwd *f)
{
	for (size_t i = 0; i < f->ntcp; i++)
		sess_listener_free(f->tcp[i]);
	f->ntcp = 0;
}
