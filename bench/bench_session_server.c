/*
 * bench_session_server: the smallest server on berth's session engine, for
 * the timeout-precision benchmark (bench/sessions/run).
 *
 *   bench_session_server PORT TIMEOUT_MS [MAX_SESSIONS]
 *
 * Listens on 127.0.0.1:PORT (0: any free port) with sess_listen_tcp(), the
 * Kerberos 4-byte length framer and new_connection_ms = idle_ms = TIMEOUT_MS,
 * on the production loop (loop_new(NULL): epoll and CLOCK_MONOTONIC), the
 * same engine berthd runs its services on.  A request, should one arrive,
 * is answered by closing the session: the benchmark's clients send nothing,
 * so every session it sees ends at its new-connection deadline.
 *
 * Prints "listening 127.0.0.1:PORT" on stdout once it accepts connections,
 * runs until SIGTERM or SIGINT, then prints its close counters on stderr.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "berth/loop.h"
#include "berth/session.h"

/* Kerberos messages are small; the body bound hardly matters here. */
#define BENCH_MAX_MSG 65536u

/* Parse a decimal in [lo, hi] from text; false on anything else. */
static bool parse_ulong(const char *text, unsigned long lo, unsigned long hi,
			unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
	    v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/*
 * The clients are silent, so a request means someone else is talking to the
 * port: close rather than pretend to serve.
 */
static void on_request(struct sess *s, const uint8_t *msg, size_t len,
		       void *arg)
{
	(void)msg;
	(void)len;
	(void)arg;
	sess_close(s, SESS_CLOSE_SERVICE);
}

static void on_close(struct sess *s, enum sess_close_reason why, void *arg)
{
	(void)s;
	(void)why;
	(void)arg;
}

static void on_signal(struct loop *loop, int signo, void *arg)
{
	(void)signo;
	(void)arg;
	loop_stop(loop);
}

/*
 * 10,000 sessions need 10,000 fds: take the hard limit.  Failure is only
 * reported: the run then shows refused connections instead of hiding them.
 */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "bench_session_server: RLIMIT_NOFILE: %s\n",
			strerror(errno));
}

static void print_stats(const struct sess_listener *l)
{
	struct sess_stats st;
	sess_listener_stats(l, &st);
	fprintf(stderr, "bench_session_server: accepted %llu, refused %llu, "
		"evicted %llu, emfile pauses %llu\n",
		(unsigned long long)st.accepted,
		(unsigned long long)st.refusals,
		(unsigned long long)st.evictions,
		(unsigned long long)st.emfile_pauses);
	for (int r = 0; r < SESS_CLOSE_REASONS; r++) {
		if (st.closes[r] == 0)
			continue;
		fprintf(stderr, "bench_session_server: closed %s: %llu\n",
			sess_close_reason_name((enum sess_close_reason)r),
			(unsigned long long)st.closes[r]);
	}
}

int main(int argc, char **argv)
{
	unsigned long port = 0, timeout_ms = 0, max_sessions = 100000;
	if (argc < 3 || argc > 4 || !parse_ulong(argv[1], 0, 65535, &port) ||
	    !parse_ulong(argv[2], 1, 3600000, &timeout_ms) ||
	    (argc == 4 && !parse_ulong(argv[3], 1, UINT32_MAX, &max_sessions))) {
		fprintf(stderr, "usage: bench_session_server PORT TIMEOUT_MS "
			"[MAX_SESSIONS]\n");
		return 2;
	}
	raise_nofile();

	int rc = 1;
	struct sess_listener *l = NULL;
	struct loop *loop = loop_new(NULL);
	if (!loop) {
		fprintf(stderr, "bench_session_server: cannot create the loop\n");
		goto out;
	}
	if (loop_signal(loop, SIGTERM, on_signal, NULL) < 0 ||
	    loop_signal(loop, SIGINT, on_signal, NULL) < 0) {
		fprintf(stderr, "bench_session_server: cannot watch signals\n");
		goto out;
	}

	const struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr = { .s_addr = htonl(INADDR_LOOPBACK) },
	};
	const struct sess_service svc = {
		.name = "bench",
		.frame = sess_frame_len32,
		.max_msg = BENCH_MAX_MSG,
		.on_request = on_request,
		.on_close = on_close,
	};
	const struct sess_limits lim = {
		.new_connection_ms = timeout_ms,
		.idle_ms = timeout_ms,
		.max_sessions = (uint32_t)max_sessions,
	};
	char err[256];
	l = sess_listen_tcp(loop, (const struct sockaddr *)&addr, sizeof(addr),
			    &svc, &lim, NULL, err, sizeof(err));
	if (!l) {
		fprintf(stderr, "bench_session_server: %s\n", err);
		goto out;
	}

	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(sess_listener_fd(l), (struct sockaddr *)&bound,
			&blen) < 0) {
		fprintf(stderr, "bench_session_server: getsockname: %s\n",
			strerror(errno));
		goto out;
	}
	printf("listening 127.0.0.1:%u\n", (unsigned)ntohs(bound.sin_port));
	fflush(stdout);

	int lrc = loop_run(loop);
	if (lrc < 0) {
		fprintf(stderr, "bench_session_server: loop: %s\n",
			strerror(-lrc));
		goto out;
	}
	print_stats(l);
	rc = 0;
out:
	sess_listener_free(l);
	loop_free(loop);
	return rc;
}
