/*
 * bench_session_client: how precisely a TCP server closes silent clients.
 *
 *   bench_session_client -p PORT -n N -t TIMEOUT_MS [-s SERVER_PID]
 *                        [-l LIMIT_S] [-w SPREAD_MS]
 *
 * Opens N TCP connections to 127.0.0.1:PORT one after the other, spread
 * evenly over SPREAD_MS (default 0: as fast as possible; a spread keeps the
 * deadlines apart, so the figures show timer precision rather than how fast
 * a server works through a burst of closes), sends nothing, and waits for the server to close each one (read
 * returns 0, or fails with ECONNRESET).  For every connection:
 *
 *   lateness = close time - (connect completion time + TIMEOUT_MS)
 *
 * Both times are CLOCK_MONOTONIC: the connect time right after poll()
 * reports that connection's handshake complete, the close time right after
 * epoll_wait() returns the batch holding the close.  A negative lateness is
 * an EARLY close.
 *
 * With -s, the server's VmRSS (/proc/PID/status) is read before the first
 * connect and again once every connection is up (before the first deadline
 * can pass), and the difference divided by the sessions open at that moment
 * is the memory per idle session.  Kernel socket buffers are not in RSS.
 *
 * The run is bounded: after LIMIT_S seconds (default TIMEOUT + 30 s) the
 * connections still open are counted as never closed.  Prints a human
 * summary and one "RESULT key=value ..." line for bench/sessions/run.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
/* Closes are collected between connects after every this many opens. */
#define DRAIN_EVERY 32u
/* The RSS sample waits this long after the last handshake for the server
 * to accept the last connections, unless a deadline comes first. */
#define SETTLE_NS 300000000u

enum conn_state { C_IDLE, C_OPEN, C_CLOSED, C_FAILED };

struct conn {
	int fd;
	enum conn_state state;
	bool reset;          /* closed by RST rather than FIN */
	uint64_t t_start_ns; /* before connect() */
	uint64_t t_conn_ns;  /* handshake seen complete */
	uint64_t t_close_ns; /* close seen */
};

struct opts {
	unsigned port;
	unsigned n;
	unsigned timeout_ms;
	long server_pid;     /* 0: no memory figure */
	unsigned limit_s;
	unsigned spread_ms;
};

struct run {
	struct conn *c;
	int ep;
	unsigned opened, connected, closed, failed, resets, data;
	uint64_t first_conn_ns, last_conn_ns;
	long rss_before_kib, rss_with_kib;
	unsigned open_at_sample;
	int first_errno;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool parse_uint(const char *text, unsigned long hi, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
	    v > hi)
		return false;
	*out = v;
	return true;
}

/* VmRSS of pid in KiB, or -1 when it cannot be read. */
static long read_rss_kib(long pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp)) {
		if (strncmp(line, "VmRSS:", 6) != 0)
			continue;
		char *end = NULL;
		errno = 0;
		long v = strtol(line + 6, &end, 10);
		if (errno == 0 && end != line + 6)
			kib = v;
		break;
	}
	fclose(fp);
	return kib;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void conn_fail(struct run *r, struct conn *c, int err)
{
	if (!r->first_errno)
		r->first_errno = err;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_FAILED;
	r->failed++;
}

/*
 * Open the next connection and wait for its handshake alone, so that its
 * completion is stamped within microseconds rather than after a batch of
 * other connects (which would make closes look early).  Returns false when
 * no more connections can be opened.
 */
static bool open_one(struct run *r, const struct sockaddr_in *to,
		     uint64_t hard_end)
{
	struct conn *c = &r->c[r->opened++];
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(r, c, errno);
		return false;
	}
	c->t_start_ns = now_ns();
	if (connect(c->fd, (const struct sockaddr *)to, sizeof(*to)) < 0 &&
	    errno != EINPROGRESS) {
		conn_fail(r, c, errno);
		return false;
	}
	struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
	int left_ms = (int)((hard_end - c->t_start_ns) / 1000000u);
	int n;
	do {
		n = poll(&pfd, 1, left_ms > 0 ? left_ms : 0);
	} while (n < 0 && errno == EINTR);
	uint64_t stamp = now_ns();
	int err = 0;
	socklen_t len = sizeof(err);
	if (n <= 0)
		err = n == 0 ? ETIMEDOUT : errno;
	else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP,
		.data.u32 = r->opened - 1,
	};
	if (!err && epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		err = errno;
	if (err) {
		conn_fail(r, c, err);
		return false;
	}
	c->state = C_OPEN;
	c->t_conn_ns = stamp;
	if (!r->first_conn_ns)
		r->first_conn_ns = stamp;
	r->last_conn_ns = stamp;
	r->connected++;
	return true;
}

/* Readable: the server closed (EOF or RST), or it sent data. */
static void on_readable(struct run *r, struct conn *c, uint64_t stamp)
{
	char buf[512];
	ssize_t got = read(c->fd, buf, sizeof(buf));
	if (got > 0) {
		/* A server that talks first is not silent-closing; note it. */
		r->data++;
		return;
	}
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (got < 0 && errno != ECONNRESET) {
		conn_fail(r, c, errno);
		r->connected--;
		return;
	}
	c->reset = got < 0;
	r->resets += c->reset;
	c->t_close_ns = stamp;
	c->state = C_CLOSED;
	close(c->fd);
	c->fd = -1;
	r->closed++;
}

static void take_sample(struct run *r, const struct opts *o)
{
	r->open_at_sample = r->connected - r->closed;
	r->rss_with_kib = o->server_pid ? read_rss_kib(o->server_pid) : -1;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double ms(int64_t ns)
{
	return (double)ns / 1e6;
}

static int report(const struct run *r, const struct opts *o)
{
	int64_t *late = calloc(r->closed ? r->closed : 1, sizeof(*late));
	if (!late)
		return 1;
	/*
	 * sure: closes before t_start + timeout.  The server cannot accept
	 * before connect() was called, so these are early whatever the
	 * client's own scheduling delays were.
	 */
	unsigned k = 0, early = 0, sure = 0;
	uint64_t conn_ns_max = 0;
	for (unsigned i = 0; i < r->opened; i++) {
		const struct conn *c = &r->c[i];
		if (c->state != C_CLOSED)
			continue;
		late[k] = (int64_t)(c->t_close_ns - c->t_conn_ns) -
			  (int64_t)o->timeout_ms * 1000000;
		early += late[k] < 0;
		sure += c->t_close_ns <
			c->t_start_ns + (uint64_t)o->timeout_ms * 1000000u;
		if (c->t_conn_ns - c->t_start_ns > conn_ns_max)
			conn_ns_max = c->t_conn_ns - c->t_start_ns;
		k++;
	}
	qsort(late, k, sizeof(*late), cmp_i64);
	unsigned never = r->connected - r->closed;
	double mn = 0, med = 0, p99 = 0, mx = 0;
	if (k) {
		/* Nearest-rank percentiles. */
		unsigned i99 = (unsigned)(((uint64_t)k * 99 + 99) / 100) - 1;
		mn = ms(late[0]);
		med = ms(late[(k - 1) / 2]);
		p99 = ms(late[i99]);
		mx = ms(late[k - 1]);
	}
	double per = -1;
	if (r->rss_before_kib >= 0 && r->rss_with_kib >= 0 && r->open_at_sample)
		per = (double)(r->rss_with_kib - r->rss_before_kib) /
		      r->open_at_sample;

	printf("connections: %u asked, %u connected, %u failed, "
	       "%u closed (%u by RST), %u never closed, %u sent data\n",
	       o->n, r->connected, r->failed, r->closed, r->resets, never,
	       r->data);
	if (r->first_errno)
		printf("first failure: %s\n", strerror(r->first_errno));
	printf("open phase: %.1f ms; slowest handshake %.2f ms\n",
	       ms((int64_t)(r->last_conn_ns - r->first_conn_ns)),
	       ms((int64_t)conn_ns_max));
	printf("lateness (ms): min %.3f  median %.3f  p99 %.3f  max %.3f  "
	       "early closes %u (%u before connect() + timeout)\n", mn, med,
	       p99, mx, early, sure);
	if (per >= 0)
		printf("server VmRSS %ld KiB -> %ld KiB with %u sessions: "
		       "%.2f KiB per idle session\n", r->rss_before_kib,
		       r->rss_with_kib, r->open_at_sample, per);
	printf("RESULT n=%u connected=%u failed=%u closed=%u resets=%u "
	       "never=%u data=%u early=%u early_sure=%u min=%.3f median=%.3f "
	       "p99=%.3f max=%.3f rss_before=%ld rss_with=%ld open_at_sample=%u "
	       "kib_per_session=%.3f\n", o->n, r->connected, r->failed,
	       r->closed, r->resets, never, r->data, early, sure, mn, med, p99, mx,
	       r->rss_before_kib, r->rss_with_kib, r->open_at_sample, per);
	free(late);
	return 0;
}

static bool parse_opts(int argc, char **argv, struct opts *o)
{
	int opt;
	unsigned long v;
	*o = (struct opts){ 0 };
	while ((opt = getopt(argc, argv, "p:n:t:s:l:w:")) != -1) {
		if (!optarg || !parse_uint(optarg, 10000000, &v))
			return false;
		switch (opt) {
		case 'p': o->port = (unsigned)v; break;
		case 'n': o->n = (unsigned)v; break;
		case 't': o->timeout_ms = (unsigned)v; break;
		case 's': o->server_pid = (long)v; break;
		case 'l': o->limit_s = (unsigned)v; break;
		case 'w': o->spread_ms = (unsigned)v; break;
		default: return false;
		}
	}
	if (!o->limit_s)
		o->limit_s = o->timeout_ms / 1000 + 30;
	return optind == argc && o->port && o->port < 65536 && o->n &&
	       o->timeout_ms;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (!parse_opts(argc, argv, &o)) {
		fprintf(stderr, "usage: bench_session_client -p PORT -n N "
			"-t TIMEOUT_MS [-s SERVER_PID] [-l LIMIT_S] "
			"[-w SPREAD_MS]\n");
		return 2;
	}
	raise_nofile();
	struct run r = {
		.c = calloc(o.n, sizeof(struct conn)),
		.ep = epoll_create1(EPOLL_CLOEXEC),
		.rss_before_kib = o.server_pid ? read_rss_kib(o.server_pid) : -1,
		.rss_with_kib = -1,
	};
	int rc = 1;
	if (!r.c || r.ep < 0) {
		fprintf(stderr, "bench_session_client: out of resources\n");
		goto out;
	}
	const struct sockaddr_in to = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)o.port),
		.sin_addr = { .s_addr = htonl(INADDR_LOOPBACK) },
	};
	const uint64_t t0 = now_ns();
	const uint64_t hard_end = t0 + (uint64_t)o.limit_s * 1000000000u;
	const uint64_t timeout_ns = (uint64_t)o.timeout_ms * 1000000u;
	const uint64_t spread_ns = (uint64_t)o.spread_ms * 1000000u;
	bool can_open = true, sampled = false;
	struct epoll_event evs[MAX_EVENTS];

	while (r.closed + r.failed < o.n) {
		unsigned burst = 0;
		uint64_t now = now_ns();
		while (can_open && r.opened < o.n && burst++ < DRAIN_EVERY &&
		       now >= t0 + spread_ns * r.opened / o.n) {
			can_open = open_one(&r, &to, hard_end);
			now = now_ns();
		}
		bool opening = can_open && r.opened < o.n;
		if (now >= hard_end)
			break;
		int wait_ms = 100;
		if (opening) {
			uint64_t due = t0 + spread_ns * r.opened / o.n;
			wait_ms = due > now ? (int)((due - now) / 1000000u) : 0;
		}
		if (!opening && !sampled) {
			/* Every handshake is done: sample after a short settle,
			 * or well before the first deadline if that is sooner. */
			uint64_t settle = r.last_conn_ns + SETTLE_NS;
			uint64_t first = r.first_conn_ns + timeout_ns * 9 / 10;
			uint64_t at = settle < first ? settle : first;
			if (now >= at) {
				take_sample(&r, &o);
				sampled = true;
			} else {
				wait_ms = (int)((at - now) / 1000000u);
			}
		}
		int n = epoll_wait(r.ep, evs, MAX_EVENTS, wait_ms);
		uint64_t stamp = now_ns();
		if (n < 0 && errno != EINTR) {
			perror("bench_session_client: epoll_wait");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = &r.c[evs[i].data.u32];
			if (c->state == C_OPEN)
				on_readable(&r, c, stamp);
		}
	}
	if (!sampled)
		take_sample(&r, &o);
	rc = report(&r, &o);
out:
	if (r.c) {
		for (unsigned i = 0; i < r.opened; i++)
			if (r.c[i].fd >= 0 && r.c[i].state != C_IDLE)
				close(r.c[i].fd);
	}
	free(r.c);
	if (r.ep >= 0)
		close(r.ep);
	return rc;
}
