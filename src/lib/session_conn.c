/*
 * session_conn: one TCP session: reading and framing requests, queueing
 * responses, the one deadline timer and the close sequence; see
 * include/berth/session.h for the states and the in-flight contract.
 */
#include "session_int.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The input buffer starts this small and doubles up to its bound. */
#define CONN_IN_START 1024u
/* Reads per readiness event, so one busy peer cannot starve the others. */
#define CONN_READS_PER_EVENT 16
/* Discarded per read while lingering. */
#define CONN_LINGER_CHUNK 4096u

static void conn_on_io(struct loop *loop, struct loop_watch *w,
		       unsigned events);
static void conn_on_timer(struct wheel_timer *t, void *ctx);
static void conn_resume_hook(struct loop *loop, struct loop_close *c);

static uint64_t in_flight(const struct sess *s)
{
	return s->delivered - s->answered;
}

static size_t out_pending(const struct sess *s)
{
	return s->out_len - s->out_off;
}

/* Below both backpressure bounds: s may take another request. */
static bool conn_takes_more(const struct sess *s)
{
	return in_flight(s) < s->lst->lim.max_in_flight &&
	       out_pending(s) < SESS_OUT_PAUSE;
}

/* Register for exactly what s needs now: reading while open and neither
 * holding a request nor at a backpressure bound, writing while output
 * waits. */
static void conn_interest(struct sess *s)
{
	unsigned want = 0;
	if (s->phase == SESS_PHASE_OPEN && !s->peer_eof) {
		bool paused = s->held || !conn_takes_more(s);
		if (paused && !s->paused)
			s->lst->st.read_pauses++;
		s->paused = paused;
		if (!paused)
			want |= LOOP_READ;
	}
	if (out_pending(s) && (s->phase == SESS_PHASE_OPEN ||
			       s->phase == SESS_PHASE_FLUSHING))
		want |= LOOP_WRITE;
	if (want == s->interest)
		return;
	int rc = loop_watch_set(s->loop, &s->watch, want);
	s->interest = rc < 0 ? 0 : want;
	if (rc < 0 && s->phase == SESS_PHASE_OPEN)
		sess_close(s, SESS_CLOSE_IO_ERROR);
}

/* Arm the deadline ms from now; 0 disables it. */
static void conn_arm(struct sess *s, uint64_t ms)
{
	if (ms == 0) {
		loop_timer_stop(s->loop, &s->timer);
		return;
	}
	loop_timer_start_in(s->loop, &s->timer, ms);
}

struct sess *sess_conn_new(struct sess_listener *l, int fd,
			   const struct sockaddr_storage *peer,
			   socklen_t peerlen)
{
	struct sess *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	*s = (struct sess){
		.lst = l,
		.loop = l->loop,
		.fd = fd,
		.peer = *peer,
		.peerlen = peerlen,
		.accepted_ms = loop_now(l->loop),
		.phase = SESS_PHASE_OPEN,
	};
	loop_watch_init(&s->watch, fd, conn_on_io);
	wheel_timer_init(&s->timer, conn_on_timer);
	sess_link_init(&s->all);
	sess_link_init(&s->fifo);
	/* Registered directly: a failure here must not run the close path. */
	if (loop_watch_set(s->loop, &s->watch, LOOP_READ) < 0) {
		free(s);
		return NULL;
	}
	s->interest = LOOP_READ;
	sess_link_add_tail(&l->all, &s->all);
	sess_link_add_tail(&l->fifo, &s->fifo);
	s->in_fifo = true;
	l->st.accepted++;
	l->st.active++;
	conn_arm(s, l->lim.new_connection_ms);
	return s;
}

static void conn_free(struct sess *s)
{
	free(s->in);
	free(s->out);
	free(s);
}

/*
 * Closing now could lose output the kernel still holds for the peer (not
 * yet sent or not yet acknowledged): close() with input unread sends an
 * RST, and so does input arriving after close(), and an RST throws that
 * output away.  So shut the write side (the FIN follows the output) and
 * discard input until the peer's EOF or SESS_LINGER_MS.  False when no
 * output is at risk (an RST then loses nothing), when the listener already
 * has max_sessions sessions lingering (they are outside the cap while they
 * do), or when the watch cannot be set: close now.
 */
static bool conn_linger(struct sess *s)
{
	struct sess_listener *l = s->lst;
	int queued = 0;
	if (s->rst || s->peer_eof || s->fd < 0 || !l ||
	    l->lingering >= l->lim.max_sessions)
		return false;
	if (ioctl(s->fd, SIOCOUTQ, &queued) < 0 || queued <= 0)
		return false;
	if (loop_watch_set(s->loop, &s->watch, LOOP_READ) < 0)
		return false;
	s->interest = LOOP_READ;
	shutdown(s->fd, SHUT_WR);
	s->phase = SESS_PHASE_LINGER;
	l->lingering++;
	loop_timer_start_in(s->loop, &s->timer, SESS_LINGER_MS);
	return true;
}

/*
 * Close the fd: an RST when asked, otherwise a FIN after the output.  With
 * may_linger, output still at risk is protected first (conn_linger): true
 * when s lingers, its fd still open (conn_linger_done() ends it).
 */
static bool conn_final(struct sess *s, bool may_linger)
{
	if (s->phase == SESS_PHASE_LINGER && s->lst)
		s->lst->lingering--;
	loop_timer_stop(s->loop, &s->timer);
	loop_watch_stop(s->loop, &s->watch);
	s->interest = 0;
	if (may_linger && conn_linger(s))
		return true;
	if (s->fd >= 0) {
		if (s->rst) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		} else {
			shutdown(s->fd, SHUT_WR);
		}
		close(s->fd);
		s->fd = -1;
	}
	sess_link_del(&s->all);
	s->phase = SESS_PHASE_DONE;
	return false;
}

static void conn_free_hook(struct loop *loop, struct loop_close *c)
{
	(void)loop;
	conn_free(sess_of(c, close_req));
}

/* Write queued output until the socket is full.  Returns 0, or -errno on a
 * write error (the output is then discarded). */
static int conn_write(struct sess *s)
{
	while (out_pending(s)) {
		ssize_t n = send(s->fd, s->out + s->out_off, out_pending(s),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			int err = -errno;
			s->out_off = s->out_len = 0;
			return err;
		}
		s->out_off += (size_t)n;
	}
	s->out_off = s->out_len = 0;
	return 0;
}

/* The peer shut its side: close once nothing is owed to it any more. */
static void conn_check_eof(struct sess *s)
{
	if (s->peer_eof && s->phase == SESS_PHASE_OPEN && in_flight(s) == 0 &&
	    !s->held && !out_pending(s))
		sess_close(s, SESS_CLOSE_PEER_CLOSED);
}

/* Back below the bounds with a request held: deliver it once the callback
 * running now returns (never inside the service's own call). */
static void conn_maybe_resume(struct sess *s)
{
	if (s->held && s->phase == SESS_PHASE_OPEN && conn_takes_more(s))
		loop_defer_close(s->loop, &s->resume_req, conn_resume_hook);
}

/* Output done while flushing: close the fd (or linger first), free later.
 * Abandoned output (a write error, the flush bound) gains nothing from
 * lingering. */
static void conn_flush_done(struct sess *s, bool may_linger)
{
	if (!conn_final(s, may_linger))
		loop_defer_close(s->loop, &s->close_req, conn_free_hook);
}

/* The peer's EOF, an error or the linger bound: close the fd, free later. */
static void conn_linger_done(struct sess *s)
{
	conn_final(s, false);
	loop_defer_close(s->loop, &s->close_req, conn_free_hook);
}

/* Lingering: discard what the peer sends until its EOF. */
static void conn_linger_read(struct sess *s)
{
	uint8_t junk[CONN_LINGER_CHUNK];
	for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
		ssize_t n = recv(s->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_linger_done(s);
		return;
	}
}

static void conn_on_writable(struct sess *s)
{
	int rc = conn_write(s);
	if (s->phase == SESS_PHASE_FLUSHING) {
		if (rc < 0 || !out_pending(s))
			conn_flush_done(s, rc == 0);
		return;
	}
	if (rc < 0) {
		sess_close(s, SESS_CLOSE_IO_ERROR);
		return;
	}
	conn_interest(s);
	conn_maybe_resume(s);
	conn_check_eof(s);
}

/*
 * The close hook, at a callback boundary: tell the service, then flush what
 * it queued (unless the close is an RST or the peer is gone) and close.
 */
static void conn_close_hook(struct loop *loop, struct loop_close *c)
{
	(void)loop;
	struct sess *s = sess_of(c, close_req);
	if (!s->lst) {
		/* The listener was freed meanwhile and already closed the fd. */
		conn_free(s);
		return;
	}
	const struct sess_service *svc = &s->lst->svc;
	if (svc->on_close)
		svc->on_close(s, s->why, svc->arg);
	if (!s->rst && s->why != SESS_CLOSE_IO_ERROR && conn_write(s) == 0 &&
	    out_pending(s)) {
		s->phase = SESS_PHASE_FLUSHING;
		conn_interest(s);
		loop_timer_start_in(s->loop, &s->timer, SESS_FLUSH_MS);
		return;
	}
	if (!conn_final(s, s->why != SESS_CLOSE_IO_ERROR))
		conn_free(s);
}

void sess_close(struct sess *s, enum sess_close_reason why)
{
	if (s->phase != SESS_PHASE_OPEN || (unsigned)why >= SESS_CLOSE_REASONS)
		return;
	struct sess_listener *l = s->lst;
	s->phase = SESS_PHASE_CLOSING;
	s->why = why;
	if ((why == SESS_CLOSE_NEW_TIMEOUT || why == SESS_CLOSE_IDLE_TIMEOUT) &&
	    l->lim.reset_on_timeout)
		s->rst = true;
	if (why == SESS_CLOSE_IO_ERROR || why == SESS_CLOSE_PEER_CLOSED)
		s->out_off = s->out_len = 0;
	l->st.closes[why]++;
	l->st.active--;
	if (s->in_fifo) {
		sess_link_del(&s->fifo);
		s->in_fifo = false;
	}
	loop_timer_stop(s->loop, &s->timer);
	conn_interest(s);
	loop_defer_close(s->loop, &s->close_req, conn_close_hook);
}

static void conn_on_timer(struct wheel_timer *t, void *ctx)
{
	(void)ctx;
	struct sess *s = sess_of(t, timer);
	if (s->phase == SESS_PHASE_FLUSHING) {
		conn_flush_done(s, false);
		return;
	}
	if (s->phase == SESS_PHASE_LINGER) {
		conn_linger_done(s);
		return;
	}
	if (s->phase != SESS_PHASE_OPEN || in_flight(s) > 0)
		return;
	sess_close(s, s->completed ? SESS_CLOSE_IDLE_TIMEOUT
				   : SESS_CLOSE_NEW_TIMEOUT);
}

/* Hand the complete messages in the input buffer to the service, as many
 * as the backpressure bounds let it take; the rest is held. */
static void conn_deliver(struct sess *s)
{
	const struct sess_service *svc = &s->lst->svc;
	size_t off = 0;
	s->held = false;
	while (s->phase == SESS_PHASE_OPEN) {
		size_t msg_len = 0;
		size_t avail = s->in_len - off;
		enum sess_frame r = svc->frame(s->in + off, avail, svc->max_msg,
					       &msg_len);
		if (r == SESS_FRAME_NEED_MORE)
			break;
		if (!conn_takes_more(s)) {
			s->held = true;
			break;
		}
		if (r != SESS_FRAME_COMPLETE || msg_len == 0 || msg_len > avail) {
			enum sess_close_reason why = r == SESS_FRAME_TOO_BIG ?
				SESS_CLOSE_TOO_BIG : SESS_CLOSE_MALFORMED;
			if (svc->on_frame_error)
				svc->on_frame_error(s, why, svc->arg);
			sess_close(s, why);
			return;
		}
		if (s->in_fifo) {
			sess_link_del(&s->fifo);
			s->in_fifo = false;
		}
		s->completed = true;
		s->delivered++;
		/* In flight: no deadline runs until the response. */
		loop_timer_stop(s->loop, &s->timer);
		if (svc->on_request)
			svc->on_request(s, s->in + off, msg_len, svc->arg);
		off += msg_len;
	}
	if (s->phase != SESS_PHASE_OPEN)
		return;
	memmove(s->in, s->in + off, s->in_len - off);
	s->in_len -= off;
}

/* Make room to read; false when the buffer is at its bound. */
static bool conn_in_room(struct sess *s)
{
	size_t bound = s->lst->svc.max_msg + SESS_FRAME_MAX_PREFIX;
	if (s->in_len < s->in_cap)
		return true;
	if (s->in_cap >= bound)
		return false;
	size_t cap = s->in_cap ? 2 * s->in_cap : CONN_IN_START;
	if (cap > bound)
		cap = bound;
	uint8_t *grown = realloc(s->in, cap);
	if (!grown)
		return false;
	s->in = grown;
	s->in_cap = cap;
	return true;
}

/* The deferred delivery conn_maybe_resume() asked for. */
static void conn_resume_hook(struct loop *loop, struct loop_close *c)
{
	(void)loop;
	struct sess *s = sess_of(c, resume_req);
	if (s->phase != SESS_PHASE_OPEN || !s->held)
		return;
	conn_deliver(s);
	if (s->phase != SESS_PHASE_OPEN)
		return;
	conn_interest(s);
	conn_check_eof(s);
}

static void conn_on_readable(struct sess *s)
{
	for (int i = 0; i < CONN_READS_PER_EVENT && s->phase == SESS_PHASE_OPEN &&
			!s->held && conn_takes_more(s);
	     i++) {
		if (!conn_in_room(s)) {
			/* A framer that cannot decide with a full buffer. */
			sess_close(s, SESS_CLOSE_TOO_BIG);
			return;
		}
		ssize_t n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len,
				 MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			sess_close(s, SESS_CLOSE_IO_ERROR);
			return;
		}
		if (n == 0) {
			s->peer_eof = true;
			conn_interest(s);
			conn_check_eof(s);
			return;
		}
		s->in_len += (size_t)n;
		conn_deliver(s);
	}
	/* Stop reading at a bound (the watch is level-triggered). */
	if (s->phase == SESS_PHASE_OPEN)
		conn_interest(s);
}

static void conn_on_io(struct loop *loop, struct loop_watch *w,
		       unsigned events)
{
	(void)loop;
	struct sess *s = sess_of(w, watch);
	if (s->phase == SESS_PHASE_LINGER) {
		conn_linger_read(s);
		return;
	}
	if (events & LOOP_WRITE)
		conn_on_writable(s);
	if ((events & LOOP_READ) && s->phase == SESS_PHASE_OPEN)
		conn_on_readable(s);
}

/* Append len bytes to the output queue; false when over the bound. */
static bool conn_queue(struct sess *s, const uint8_t *data, size_t len)
{
	size_t pending = out_pending(s);
	if (len > s->lst->lim.max_output - pending)
		return false;
	if (s->out_off) {
		memmove(s->out, s->out + s->out_off, pending);
		s->out_off = 0;
		s->out_len = pending;
	}
	if (pending + len > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 1024u;
		while (cap < pending + len)
			cap *= 2;
		uint8_t *grown = realloc(s->out, cap);
		if (!grown)
			return false;
		s->out = grown;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, data, len);
	s->out_len += len;
	return true;
}

int sess_send(struct sess *s, const uint8_t *data, size_t len)
{
	if (s->phase != SESS_PHASE_OPEN)
		return -EPIPE;
	if (!conn_queue(s, data, len)) {
		sess_close(s, SESS_CLOSE_IO_ERROR);
		return -ENOBUFS;
	}
	if (in_flight(s) > 0) {
		s->answered++;
		/* The last answer starts the idle clock, from now. */
		if (in_flight(s) == 0)
			conn_arm(s, s->lst->lim.idle_ms);
	}
	if (conn_write(s) < 0) {
		sess_close(s, SESS_CLOSE_IO_ERROR);
		return -EPIPE;
	}
	conn_interest(s);
	conn_maybe_resume(s);
	conn_check_eof(s);
	return 0;
}

void sess_conn_shutdown(struct sess *s)
{
	struct sess_listener *l = s->lst;
	if (s->phase == SESS_PHASE_OPEN) {
		sess_close(s, SESS_CLOSE_SHUTDOWN);
		/* The hook queued by sess_close() will only free s. */
	}
	if (s->phase == SESS_PHASE_CLOSING && l->svc.on_close)
		l->svc.on_close(s, s->why, l->svc.arg);
	if (s->phase != SESS_PHASE_DONE) {
		if (!s->rst && s->phase != SESS_PHASE_LINGER)
			conn_write(s);
		conn_final(s, false);
	}
	if (loop_close_pending(&s->close_req))
		s->lst = NULL;
	else
		conn_free(s);
}

void sess_set_user(struct sess *s, void *user)
{
	s->user = user;
}

void *sess_user(const struct sess *s)
{
	return s->user;
}

const struct sockaddr *sess_peer(const struct sess *s, socklen_t *len)
{
	if (len)
		*len = s->peerlen;
	return (const struct sockaddr *)&s->peer;
}

int sess_fd(const struct sess *s)
{
	return s->fd;
}

uint64_t sess_in_flight(const struct sess *s)
{
	return in_flight(s);
}

struct sess_listener *sess_listener_of(const struct sess *s)
{
	return s->lst;
}

void sess_get_info(const struct sess *s, struct sess_info *out)
{
	uint64_t now = loop_now(s->loop);
	enum sess_state st = SESS_STATE_IDLE;
	if (s->phase != SESS_PHASE_OPEN)
		st = SESS_STATE_CLOSING;
	else if (in_flight(s) > 0)
		st = SESS_STATE_IN_FLIGHT;
	else if (!s->completed)
		st = SESS_STATE_NEW;
	*out = (struct sess_info){
		.service = s->lst ? s->lst->svc.name : NULL,
		.state = st,
		.age_ms = now - s->accepted_ms,
		.has_deadline = s->phase == SESS_PHASE_OPEN &&
				wheel_timer_armed(&s->timer),
	};
	if (out->has_deadline) {
		/* Time left to the nominal deadline: leave out the margin
		 * the loop adds so a truncated clock never fires early. */
		uint64_t d = wheel_timer_deadline(&s->timer);
		uint64_t left = d > now ? d - now : 0;
		uint64_t slack = loop_timer_slack_ms(s->loop);
		out->deadline_in_ms = left > slack ? left - slack : 0;
	}
	sess_addr_text((const struct sockaddr *)&s->peer, out->peer,
		       sizeof(out->peer));
}
