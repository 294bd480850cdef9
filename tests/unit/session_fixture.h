/*
 * session_fixture: a session listener on a fake loop and clock with real
 * loopback sockets, shared by the session tests.  Readiness is injected with
 * loop_fake_inject(); time only moves when a test moves it.
 */
#ifndef BERTH_TEST_SESSION_FIXTURE_H
#define BERTH_TEST_SESSION_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/loop_fake.h"
#include "berth/session.h"

#define FX_START_MS 1000u
#define FX_MAX_EVENTS 64

/* What the test service saw. */
struct fx {
	struct loop_fake *fake;
	struct loop *loop;
	struct sess_listener *lst;
	struct sockaddr_storage addr; /* the listener's address */
	socklen_t addrlen;
	int fds_before;

	bool echo;              /* answer every request with itself */
	unsigned requests;
	struct sess *req_sess[FX_MAX_EVENTS];
	size_t req_len[FX_MAX_EVENTS];
	unsigned closes;
	struct sess *closed[FX_MAX_EVENTS];
	enum sess_close_reason close_why[FX_MAX_EVENTS];
	char last_log[256];
	unsigned logs;
};

/* Open fds of this process, from /proc/self/fd. */
static inline int fx_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static inline void fx_on_request(struct sess *s, const uint8_t *msg,
				 size_t len, void *arg)
{
	struct fx *fx = arg;
	if (fx->requests < FX_MAX_EVENTS) {
		fx->req_sess[fx->requests] = s;
		fx->req_len[fx->requests] = len;
	}
	fx->requests++;
	if (fx->echo)
		assert_int_equal(sess_send(s, msg, len), 0);
}

static inline void fx_on_close(struct sess *s, enum sess_close_reason why,
			       void *arg)
{
	struct fx *fx = arg;
	if (fx->closes < FX_MAX_EVENTS) {
		fx->closed[fx->closes] = s;
		fx->close_why[fx->closes] = why;
	}
	fx->closes++;
}

static inline void fx_log(const char *line, void *arg)
{
	struct fx *fx = arg;
	snprintf(fx->last_log, sizeof(fx->last_log), "%s", line);
	fx->logs++;
}

/* A fake loop at FX_START_MS; no listener yet. */
static inline struct fx *fx_new(void)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->fds_before = fx_count_fds();
	fx->fake = loop_fake_new(FX_START_MS);
	assert_non_null(fx->fake);
	struct loop_config cfg = loop_fake_config(fx->fake);
	fx->loop = loop_new(&cfg);
	assert_non_null(fx->loop);
	return fx;
}

static inline struct sess_service fx_service(struct fx *fx, sess_frame_fn *fn,
					     size_t max_msg)
{
	return (struct sess_service){
		.name = "test",
		.frame = fn,
		.max_msg = max_msg,
		.on_request = fx_on_request,
		.on_close = fx_on_close,
		.log = fx_log,
		.arg = fx,
	};
}

/* A TCP listener on 127.0.0.1 (or ::1), any port. */
static inline void fx_listen_tcp(struct fx *fx, const struct sess_service *svc,
				 const struct sess_limits *lim,
				 struct guard *guard, bool v6)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	if (v6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	}
	char err[128] = "";
	fx->lst = sess_listen_tcp(fx->loop, (struct sockaddr *)&ss, len, svc,
				  lim, guard, err, sizeof(err));
	if (!fx->lst)
		fail_msg("listen: %s", err);
	fx->addrlen = sizeof(fx->addr);
	assert_int_equal(getsockname(sess_listener_fd(fx->lst),
				     (struct sockaddr *)&fx->addr,
				     &fx->addrlen), 0);
}

/* Free everything and check that no fd leaked. */
static inline void fx_free(struct fx *fx)
{
	sess_listener_free(fx->lst);
	loop_free(fx->loop);
	loop_fake_free(fx->fake);
	assert_int_equal(fx_count_fds(), fx->fds_before);
	free(fx);
}

/*
 * A client connected to the listener, optionally from 127.0.0.1:src_port
 * (0: any).  The kernel completes the handshake from the backlog, so this
 * needs no loop iteration.  Returned nonblocking.
 */
static inline int fx_connect_from(struct fx *fx, uint16_t src_port)
{
	int c = socket(fx->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	if (src_port) {
		int one = 1;
		assert_int_equal(setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one,
					    sizeof(one)), 0);
		struct sockaddr_in src = {
			.sin_family = AF_INET,
			.sin_port = htons(src_port),
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		};
		if (bind(c, (struct sockaddr *)&src, sizeof(src)) < 0) {
			if (errno == EACCES)
				fail_msg("binding source port %u needs root: "
					 "run the tests as root", src_port);
			fail_msg("bind 127.0.0.1:%u: %s", src_port,
				 strerror(errno));
		}
	}
	assert_int_equal(connect(c, (struct sockaddr *)&fx->addr, fx->addrlen),
			 0);
	assert_int_equal(fcntl(c, F_SETFL, O_NONBLOCK), 0);
	return c;
}

static inline int fx_connect(struct fx *fx)
{
	return fx_connect_from(fx, 0);
}

/* Tell the loop the listener is readable and run one iteration. */
static inline void fx_accept(struct fx *fx)
{
	assert_int_equal(loop_fake_inject(fx->fake, sess_listener_fd(fx->lst),
					  LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
}

/* The session whose peer port is the client's local port, or NULL. */
static inline struct sess *fx_sess_of(struct fx *fx, int client)
{
	struct sockaddr_storage me;
	socklen_t len = sizeof(me);
	assert_int_equal(getsockname(client, (struct sockaddr *)&me, &len), 0);
	uint16_t port = me.ss_family == AF_INET6
		? ((struct sockaddr_in6 *)&me)->sin6_port
		: ((struct sockaddr_in *)&me)->sin_port;
	for (struct sess *s = sess_first(fx->lst); s; s = sess_next(s)) {
		const struct sockaddr *p = sess_peer(s, NULL);
		uint16_t pp = p->sa_family == AF_INET6
			? ((const struct sockaddr_in6 *)p)->sin6_port
			: ((const struct sockaddr_in *)p)->sin_port;
		if (pp == port && sess_fd(s) >= 0)
			return s;
	}
	return NULL;
}

/* Tell the loop fd (which it must be watching) has events, and run one
 * iteration. */
static inline void fx_wake(struct fx *fx, int fd, unsigned events)
{
	assert_int_equal(loop_fake_inject(fx->fake, fd, events), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
}

/* Send bytes from the client and let the session read them. */
static inline void fx_send(struct fx *fx, int client, struct sess *s,
			   const void *buf, size_t len)
{
	assert_int_equal(send(client, buf, len, MSG_NOSIGNAL), (ssize_t)len);
	fx_wake(fx, sess_fd(s), LOOP_READ);
}

/* The client reads want bytes into buf (want long), telling the loop each
 * time it finds nothing that session s is writable, so s flushes its queued
 * output. */
static inline void fx_read_flushed(struct fx *fx, int client, struct sess *s,
				   uint8_t *buf, size_t want)
{
	size_t got = 0;
	for (unsigned spins = 0; got < want; spins++) {
		assert_true(spins < 1000000);
		ssize_t n = recv(client, buf, want - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		fx_wake(fx, sess_fd(s), LOOP_WRITE);
	}
	assert_int_equal(got, want);
}

/* Move the fake clock to t and run one iteration (timers due fire). */
static inline void fx_at(struct fx *fx, uint64_t t)
{
	loop_fake_set_time(fx->fake, t);
	assert_true(loop_run_once(fx->loop) >= 0);
}

/*
 * What the client sees now: 1 when data or nothing is waiting (the session
 * is open), 0 for EOF (FIN), -ECONNRESET for an RST.
 */
static inline int fx_peer_state(int client)
{
	char buf[256];
	for (;;) {
		ssize_t n = recv(client, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0)
			return 0;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 1;
		return -errno;
	}
}

static inline uint64_t fx_closes(const struct fx *fx,
				 enum sess_close_reason why)
{
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	return st.closes[why];
}

#endif
