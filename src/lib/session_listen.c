/*
 * session_listen: TCP and UDP listeners: sockets, accepting under the guard
 * and the session cap (evicting the oldest new session first), the EMFILE
 * reserve fd, shutdown, stats and introspection; see include/berth/session.h.
 */
#include "session_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

void sess_log(const struct sess_listener *l, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (l->svc.log)
		l->svc.log(line, l->svc.arg);
	else
		fprintf(stderr, "berth: %s\n", line);
}

char *sess_addr_text(const struct sockaddr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "(family %d)", (int)addr->sa_family);
	}
	return buf;
}

const char *sess_close_reason_name(enum sess_close_reason why)
{
	static const char *const names[SESS_CLOSE_REASONS] = {
		[SESS_CLOSE_NEW_TIMEOUT] = "new_timeout",
		[SESS_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
		[SESS_CLOSE_PEER_CLOSED] = "peer_closed",
		[SESS_CLOSE_MALFORMED] = "malformed",
		[SESS_CLOSE_TOO_BIG] = "too_big",
		[SESS_CLOSE_EVICTED] = "evicted",
		[SESS_CLOSE_GUARD] = "guard",
		[SESS_CLOSE_IO_ERROR] = "io_error",
		[SESS_CLOSE_SERVICE] = "service",
		[SESS_CLOSE_SHUTDOWN] = "shutdown",
	};
	return (unsigned)why < SESS_CLOSE_REASONS ? names[why] : "unknown";
}

const char *sess_state_name(enum sess_state st)
{
	switch (st) {
	case SESS_STATE_NEW: return "new";
	case SESS_STATE_IDLE: return "idle";
	case SESS_STATE_IN_FLIGHT: return "in-flight";
	case SESS_STATE_CLOSING: return "closing";
	}
	return "unknown";
}

/* Close an fd we decided not to keep as a session. */
static void drop_conn(int fd)
{
	close(fd);
}

/* Stop accepting for SESS_EMFILE_PAUSE_MS: a level-triggered listener
 * whose accept keeps failing would otherwise spin. */
static void accept_pause(struct sess_listener *l, const char *why)
{
	loop_watch_stop(l->loop, &l->watch);
	loop_timer_start_in(l->loop, &l->pause, SESS_EMFILE_PAUSE_MS);
	sess_log(l, "%s: %s; not accepting for %u ms", l->svc.name, why,
		 SESS_EMFILE_PAUSE_MS);
}

/*
 * Out of fds: give the reserve fd back to the kernel, take the pending
 * connection off the queue with it and close it, take the reserve again,
 * and pause, so the loop does not spin on a queue it cannot drain.
 */
static void emfile_pause(struct sess_listener *l)
{
	if (l->spare_fd >= 0) {
		close(l->spare_fd);
		l->spare_fd = -1;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			drop_conn(fd);
		l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	l->st.emfile_pauses++;
	accept_pause(l, "out of file descriptors");
}

static void on_pause_end(struct wheel_timer *t, void *ctx)
{
	(void)ctx;
	struct sess_listener *l = wheel_container_of(t, struct sess_listener,
						     pause);
	if (l->spare_fd < 0)
		l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (loop_watch_set(l->loop, &l->watch, LOOP_READ) < 0)
		loop_timer_start_in(l->loop, &l->pause, SESS_EMFILE_PAUSE_MS);
}

/* Make room at the cap: evict the oldest session still without a request. */
static bool evict_oldest_new(struct sess_listener *l)
{
	if (l->fifo.next == &l->fifo)
		return false;
	struct sess *victim = sess_of(l->fifo.next, fifo);
	char peer[64];
	sess_addr_text((const struct sockaddr *)&victim->peer, peer,
		       sizeof(peer));
	sess_log(l, "%s: %u sessions: evicting %s (no request in %llu ms)",
		 l->svc.name, l->lim.max_sessions, peer,
		 (unsigned long long)(loop_now(l->loop) - victim->accepted_ms));
	l->st.evictions++;
	sess_close(victim, SESS_CLOSE_EVICTED);
	return true;
}

/* One accepted connection: guard, cap, then a session. */
static void take_conn(struct sess_listener *l, int fd,
		      const struct sockaddr_storage *peer, socklen_t peerlen)
{
	if (l->guard && guard_drop_sockaddr(l->guard,
					    (const struct sockaddr *)peer)) {
		l->st.guard_drops++;
		l->st.closes[SESS_CLOSE_GUARD]++;
		drop_conn(fd);
		return;
	}
	if (l->st.active >= l->lim.max_sessions && !evict_oldest_new(l)) {
		char text[64];
		sess_log(l, "%s: %u sessions, none new: refusing %s",
			 l->svc.name, l->lim.max_sessions,
			 sess_addr_text((const struct sockaddr *)peer, text,
					sizeof(text)));
		l->st.refusals++;
		drop_conn(fd);
		return;
	}
	if (!sess_conn_new(l, fd, peer, peerlen))
		drop_conn(fd);
}

static void on_accept(struct loop *loop, struct loop_watch *w, unsigned events)
{
	(void)loop;
	(void)events;
	struct sess_listener *l = wheel_container_of(w, struct sess_listener,
						     watch);
	for (uint32_t i = 0; i < l->lim.accept_per_iter; i++) {
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &peerlen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			take_conn(l, fd, &peer, peerlen);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			emfile_pause(l);
			return;
		}
		if (errno == ENOBUFS || errno == ENOMEM) {
			l->st.nomem_pauses++;
			accept_pause(l, "out of kernel memory");
			return;
		}
		/* Aborted handshakes and signals: try the next one. */
		if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO)
			continue;
		return; /* EAGAIN, or an error the next event will show again */
	}
}

/* A listener with every field set, not yet watching anything. */
static struct sess_listener *listener_new(struct loop *loop, int fd, bool udp,
					  const struct sess_service *service,
					  const struct sess_limits *limits,
					  struct guard *guard)
{
	struct sess_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	struct sess_limits lim = limits ? *limits : (struct sess_limits){ 0 };
	if (!lim.max_sessions)
		lim.max_sessions = SESS_DEFAULT_MAX_SESSIONS;
	if (!lim.accept_per_iter)
		lim.accept_per_iter = SESS_DEFAULT_ACCEPT_PER_ITER;
	if (!lim.max_output)
		lim.max_output = SESS_DEFAULT_MAX_OUTPUT;
	if (!lim.max_in_flight)
		lim.max_in_flight = SESS_DEFAULT_MAX_IN_FLIGHT;
	*l = (struct sess_listener){
		.loop = loop,
		.udp = udp,
		.fd = fd,
		.spare_fd = -1,
		.svc = *service,
		.lim = lim,
		.guard = guard,
	};
	if (!l->svc.name)
		l->svc.name = "session";
	sess_link_init(&l->all);
	sess_link_init(&l->fifo);
	wheel_timer_init(&l->pause, on_pause_end);
	loop_watch_init(&l->watch, fd, udp ? sess_udp_on_read : on_accept);
	return l;
}

/* Check the service fits the listener kind; a reason in err when not. */
static bool service_ok(const struct sess_service *svc, bool udp, char *err,
		       size_t errlen)
{
	if (!svc || svc->max_msg == 0) {
		snprintf(err, errlen, "service needs max_msg > 0");
		return false;
	}
	if (udp ? !svc->on_datagram : (!svc->frame || !svc->on_request)) {
		snprintf(err, errlen, "service %s lacks the %s callbacks",
			 svc->name ? svc->name : "(unnamed)",
			 udp ? "on_datagram" : "frame/on_request");
		return false;
	}
	return true;
}

static struct sess_listener *listen_fd(struct loop *loop, int fd, bool udp,
				       const struct sess_service *service,
				       const struct sess_limits *limits,
				       struct guard *guard, char *err,
				       size_t errlen)
{
	struct sess_listener *l = NULL;
	if (!service_ok(service, udp, err, errlen))
		goto fail;
	l = listener_new(loop, fd, udp, service, limits, guard);
	if (!l) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fd %d: %s", fd, strerror(errno));
		goto fail;
	}
	if (!udp) {
		l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (l->spare_fd < 0) {
			snprintf(err, errlen, "reserve fd: %s", strerror(errno));
			goto fail;
		}
	} else {
		int urc = sess_udp_setup(l);
		if (urc < 0) {
			snprintf(err, errlen, "fd %d: %s", fd, strerror(-urc));
			goto fail;
		}
	}
	int rc = loop_watch_set(loop, &l->watch, LOOP_READ);
	if (rc < 0) {
		snprintf(err, errlen, "fd %d: watch: %s", fd, strerror(-rc));
		goto fail;
	}
	return l;
fail:
	if (l) {
		if (l->spare_fd >= 0)
			close(l->spare_fd);
		sess_udp_free(l);
		free(l);
	}
	close(fd);
	return NULL;
}

/* A bound (and for TCP listening) socket on addr, or -1 with err set. */
static int open_socket(const struct sockaddr *addr, socklen_t addrlen,
		       bool udp, char *err, size_t errlen)
{
	char text[64];
	sess_addr_text(addr, text, sizeof(text));
	int fd = socket(addr->sa_family,
			(udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK |
				SOCK_CLOEXEC,
			0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", text, strerror(errno));
		return -1;
	}
	int one = 1;
	if (!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			       sizeof(one)) < 0) {
		snprintf(err, errlen, "%s: SO_REUSEADDR: %s", text,
			 strerror(errno));
		goto fail;
	}
	/* An IPv6 listener serves IPv6 only; IPv4 gets its own listener. */
	if (addr->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, addr, addrlen) < 0) {
		snprintf(err, errlen, "%s/%s: bind: %s", text,
			 udp ? "udp" : "tcp", strerror(errno));
		goto fail;
	}
	if (!udp && listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "%s/tcp: listen: %s", text,
			 strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

struct sess_listener *sess_listen_tcp(struct loop *loop,
				      const struct sockaddr *addr,
				      socklen_t addrlen,
				      const struct sess_service *service,
				      const struct sess_limits *limits,
				      struct guard *guard, char *err,
				      size_t errlen)
{
	int fd = open_socket(addr, addrlen, false, err, errlen);
	if (fd < 0)
		return NULL;
	return listen_fd(loop, fd, false, service, limits, guard, err, errlen);
}

struct sess_listener *sess_listen_tcp_fd(struct loop *loop, int fd,
					 const struct sess_service *service,
					 const struct sess_limits *limits,
					 struct guard *guard, char *err,
					 size_t errlen)
{
	return listen_fd(loop, fd, false, service, limits, guard, err, errlen);
}

struct sess_listener *sess_listen_udp(struct loop *loop,
				      const struct sockaddr *addr,
				      socklen_t addrlen,
				      const struct sess_service *service,
				      const struct sess_limits *limits,
				      struct guard *guard, char *err,
				      size_t errlen)
{
	int fd = open_socket(addr, addrlen, true, err, errlen);
	if (fd < 0)
		return NULL;
	return listen_fd(loop, fd, true, service, limits, guard, err, errlen);
}

struct sess_listener *sess_listen_udp_fd(struct loop *loop, int fd,
					 const struct sess_service *service,
					 const struct sess_limits *limits,
					 struct guard *guard, char *err,
					 size_t errlen)
{
	return listen_fd(loop, fd, true, service, limits, guard, err, errlen);
}

void sess_listener_free(struct sess_listener *l)
{
	if (!l)
		return;
	while (l->all.next != &l->all) {
		/* sess_conn_shutdown() unlinks s from the list. */
		sess_conn_shutdown(sess_of(l->all.next, all));
	}
	loop_timer_stop(l->loop, &l->pause);
	loop_watch_stop(l->loop, &l->watch);
	close(l->fd);
	if (l->spare_fd >= 0)
		close(l->spare_fd);
	sess_udp_free(l);
	free(l);
}

int sess_listener_fd(const struct sess_listener *l)
{
	return l->fd;
}

void sess_listener_stats(const struct sess_listener *l, struct sess_stats *out)
{
	*out = l->st;
}

struct sess *sess_first(struct sess_listener *l)
{
	return l->all.next == &l->all ? NULL : sess_of(l->all.next, all);
}

struct sess *sess_next(const struct sess *s)
{
	if (!s->lst || s->all.next == &s->lst->all)
		return NULL;
	return sess_of(s->all.next, all);
}
