/*
 * Unit tests for the session engine's edges, on the fake loop and clock with
 * real loopback sockets: the source-port guard for TCP (client bound to
 * port 88) and UDP (port 464), every framer through a live session, UDP
 * batches and oversized datagrams, listeners from an open fd, a bind error
 * naming the address, and EMFILE (in a forked child with a low
 * RLIMIT_NOFILE) pausing the listener instead of spinning.
 */
#include "session_fixture.h"

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* accept4 as the listener sees it: the real one, or a failure the test
 * chooses (linked with -Wl,--wrap=accept4; see CMakeLists.txt). */
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
static int accept_fails_with;

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (accept_fails_with) {
		errno = accept_fails_with;
		return -1;
	}
	return __real_accept4(fd, addr, len, flags);
}

static const uint8_t REQ[] = { 0x00, 0x03, 'a', 'b', 'c' };

static struct guard *blocked_guard(void)
{
	struct portset ps;
	portset_clear(&ps);
	portset_add(&ps, 88);
	portset_add(&ps, 464);
	struct guard *g = guard_new(&ps);
	assert_non_null(g);
	return g;
}

static void test_guard_tcp(void **state)
{
	(void)state;
	struct guard *g = blocked_guard();
	struct fx *fx = fx_new();
	fx->echo = true;
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	fx_listen_tcp(fx, &svc, NULL, g, false);

	int bad = fx_connect_from(fx, 88);
	fx_accept(fx);
	assert_null(fx_sess_of(fx, bad));
	assert_null(sess_first(fx->lst));
	assert_true(fx_peer_state(bad) <= 0);
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	assert_int_equal(st.closes[SESS_CLOSE_GUARD], 1);
	assert_int_equal(st.guard_drops, 1);
	assert_int_equal(st.accepted, 0);
	assert_int_equal(guard_drops(g, 88), 1);

	int good = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, good);
	assert_non_null(s);
	fx_send(fx, good, s, REQ, sizeof(REQ));
	uint8_t got[16];
	assert_int_equal(recv(good, got, sizeof(got), 0), (ssize_t)sizeof(REQ));
	assert_int_equal(guard_drops_total(g), 1);
	close(bad);
	close(good);
	fx_free(fx);
	guard_free(g);
}

/* The UDP test service: echo every datagram back to its source. */
static unsigned udp_seen;

static void udp_echo(struct sess_listener *l, const struct sess_udp_peer *peer,
		     const uint8_t *msg, size_t len, void *arg)
{
	(void)arg;
	udp_seen++;
	assert_int_equal(sess_udp_send(l, peer, msg, len), 0);
}

static int udp_client(uint16_t src_port)
{
	int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(c >= 0);
	struct sockaddr_in src = {
		.sin_family = AF_INET,
		.sin_port = htons(src_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	if (bind(c, (struct sockaddr *)&src, sizeof(src)) < 0) {
		if (errno == EACCES)
			fail_msg("binding source port %u needs root: run the "
				 "tests as root", src_port);
		fail_msg("bind 127.0.0.1:%u: %s", src_port, strerror(errno));
	}
	return c;
}

static void test_udp_guard_batches_and_size(void **state)
{
	(void)state;
	struct guard *g = blocked_guard();
	struct fx *fx = fx_new();
	struct sess_service svc = {
		.name = "dns",
		.max_msg = 512,
		.on_datagram = udp_echo,
		.arg = fx,
	};
	struct sockaddr_in any = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	char err[128] = "";
	fx->lst = sess_listen_udp(fx->loop, (struct sockaddr *)&any,
				  sizeof(any), &svc, NULL, g, err, sizeof(err));
	if (!fx->lst)
		fail_msg("listen udp: %s", err);
	fx->addrlen = sizeof(fx->addr);
	assert_int_equal(getsockname(sess_listener_fd(fx->lst),
				     (struct sockaddr *)&fx->addr,
				     &fx->addrlen), 0);
	int bad = udp_client(464), good = udp_client(0);
	const struct sockaddr *to = (const struct sockaddr *)&fx->addr;
	udp_seen = 0;

	assert_int_equal(sendto(bad, "x", 1, 0, to, fx->addrlen), 1);
	for (int i = 0; i < 20; i++)
		assert_int_equal(sendto(good, REQ, sizeof(REQ), 0, to,
					fx->addrlen), (ssize_t)sizeof(REQ));
	static uint8_t big[600];
	assert_int_equal(sendto(good, big, sizeof(big), 0, to, fx->addrlen),
			 (ssize_t)sizeof(big));
	/* One readiness event reads several recvmmsg batches. */
	assert_int_equal(loop_fake_inject(fx->fake, sess_listener_fd(fx->lst),
					  LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	assert_int_equal(udp_seen, 20);

	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	assert_int_equal(st.datagrams_in, 20);
	assert_int_equal(st.datagrams_out, 20);
	assert_int_equal(st.guard_drops, 1);
	assert_int_equal(st.datagrams_dropped, 2); /* the guard and the 600 */
	assert_int_equal(guard_drops(g, 464), 1);
	uint8_t got[16];
	for (int i = 0; i < 20; i++)
		assert_int_equal(recv(good, got, sizeof(got), 0),
				 (ssize_t)sizeof(REQ));
	assert_int_equal(recv(good, got, sizeof(got), 0), -1);
	assert_int_equal(recv(bad, got, sizeof(got), 0), -1);
	assert_int_equal(errno, EAGAIN);
	close(bad);
	close(good);
	fx_free(fx);
	guard_free(g);
}

/*
 * A UDP listener on a wildcard address replies from the address each
 * datagram was sent to: a client that connected its socket
 * to 127.0.0.9 (as MIT Kerberos clients do) takes no reply from 127.0.0.1.
 */
static void test_udp_wildcard_replies_from_destination(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	struct sess_service svc = {
		.name = "kdc", .max_msg = 512, .on_datagram = udp_echo, .arg = fx,
	};
	struct sockaddr_in any = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	char err[128] = "";
	fx->lst = sess_listen_udp(fx->loop, (struct sockaddr *)&any, sizeof(any),
				  &svc, NULL, NULL, err, sizeof(err));
	if (!fx->lst)
		fail_msg("listen udp: %s", err);
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	assert_int_equal(getsockname(sess_listener_fd(fx->lst),
				     (struct sockaddr *)&bound, &blen), 0);
	const char *const dst[] = { "127.0.0.9", "127.0.0.1", "127.1.2.3" };
	udp_seen = 0;
	for (size_t i = 0; i < 3; i++) {
		struct sockaddr_in to = { .sin_family = AF_INET,
					  .sin_port = bound.sin_port };
		assert_int_equal(inet_pton(AF_INET, dst[i], &to.sin_addr), 1);
		int c = udp_client(0);
		assert_int_equal(connect(c, (struct sockaddr *)&to, sizeof(to)), 0);
		assert_int_equal(send(c, REQ, sizeof(REQ), 0), (ssize_t)sizeof(REQ));
		assert_int_equal(loop_fake_inject(fx->fake, sess_listener_fd(fx->lst),
						  LOOP_READ), 0);
		assert_true(loop_run_once(fx->loop) >= 0);
		assert_int_equal(udp_seen, i + 1);
		/* A connected socket only takes what comes from its peer. */
		uint8_t got[16];
		struct sockaddr_in from;
		socklen_t flen = sizeof(from);
		assert_int_equal(recvfrom(c, got, sizeof(got), MSG_DONTWAIT,
					  (struct sockaddr *)&from, &flen),
				 (ssize_t)sizeof(REQ));
		assert_int_equal(from.sin_addr.s_addr, to.sin_addr.s_addr);
		close(c);
	}
	fx_free(fx);
}

/*
 * Send bytes through a fresh session framed by fn and check the number of
 * requests delivered and, when close_why >= 0, the close reason.
 */
static void through_session(sess_frame_fn *fn, const void *bytes, size_t len,
			    unsigned want_requests, int close_why)
{
	struct fx *fx = fx_new();
	fx->echo = true;
	struct sess_service svc = fx_service(fx, fn, 512);
	fx_listen_tcp(fx, &svc, NULL, NULL, false);
	int c = fx_connect(fx);
	fx_accept(fx);
	struct sess *s = fx_sess_of(fx, c);
	assert_non_null(s);
	/* Split in two reads so every case also crosses a read boundary. */
	size_t half = len / 2;
	fx_send(fx, c, s, bytes, half);
	if (fx->closes == 0)
		fx_send(fx, c, s, (const uint8_t *)bytes + half, len - half);
	assert_int_equal(fx->requests, want_requests);
	if (close_why < 0) {
		assert_int_equal(fx->closes, 0);
		assert_int_equal(fx_peer_state(c), 1);
	} else {
		assert_int_equal(fx->closes, 1);
		assert_int_equal(fx->close_why[0], close_why);
		assert_int_equal(fx_closes(fx, (enum sess_close_reason)close_why),
				 1);
	}
	close(c);
	fx_free(fx);
}

static void test_len16_through_session(void **state)
{
	(void)state;
	const uint8_t three[] = { 0, 1, 'a', 0, 2, 'b', 'c', 0, 3, 'd', 'e', 'f' };
	through_session(sess_frame_len16, three, sizeof(three), 3, -1);
	const uint8_t partial[] = { 0, 1, 'a', 0, 9, 'b' };
	through_session(sess_frame_len16, partial, sizeof(partial), 1, -1);
	const uint8_t zero[] = { 0, 1, 'a', 0, 0 };
	through_session(sess_frame_len16, zero, sizeof(zero), 1,
			SESS_CLOSE_MALFORMED);
	const uint8_t big[] = { 0x02, 0x01, 'x', 'y' };
	through_session(sess_frame_len16, big, sizeof(big), 0,
			SESS_CLOSE_TOO_BIG);
}

static void test_len32_through_session(void **state)
{
	(void)state;
	const uint8_t two[] = { 0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c' };
	through_session(sess_frame_len32, two, sizeof(two), 2, -1);
	const uint8_t high[] = { 0, 0, 0, 1, 'a', 0x80, 0, 0, 1, 'b' };
	through_session(sess_frame_len32, high, sizeof(high), 1,
			SESS_CLOSE_MALFORMED);
	const uint8_t big[] = { 0, 0, 0x10, 0, 'x' };
	through_session(sess_frame_len32, big, sizeof(big), 0,
			SESS_CLOSE_TOO_BIG);
}

static void test_ber_through_session(void **state)
{
	(void)state;
	/* Short form, then long form with one length octet. */
	const uint8_t two[] = { 0x30, 0x03, 0x02, 0x01, 0x01,
				0x30, 0x81, 0x03, 0x02, 0x01, 0x02 };
	through_session(sess_frame_ber, two, sizeof(two), 2, -1);
	const uint8_t indefinite[] = { 0x30, 0x03, 0x02, 0x01, 0x01,
				       0x30, 0x80, 0x02, 0x01, 0x02, 0, 0 };
	through_session(sess_frame_ber, indefinite, sizeof(indefinite), 1,
			SESS_CLOSE_MALFORMED);
	const uint8_t five[] = { 0x30, 0x85, 0, 0, 0, 0, 1, 0 };
	through_session(sess_frame_ber, five, sizeof(five), 0,
			SESS_CLOSE_MALFORMED);
	const uint8_t big[] = { 0x30, 0x82, 0x02, 0x01, 0x04 };
	through_session(sess_frame_ber, big, sizeof(big), 0,
			SESS_CLOSE_TOO_BIG);
}

static void test_listen_from_fd_and_bind_error(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	fx->echo = true;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	char err[128] = "";
	fx->lst = sess_listen_tcp_fd(fx->loop, fd, &svc, NULL, NULL, err,
				     sizeof(err));
	assert_non_null(fx->lst);
	fx->addrlen = sizeof(fx->addr);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&fx->addr,
				     &fx->addrlen), 0);

	/* The same port again is in use: the error names address and port. */
	struct sess_listener *dup = sess_listen_tcp(
		fx->loop, (struct sockaddr *)&fx->addr, fx->addrlen, &svc, NULL,
		NULL, err, sizeof(err));
	assert_null(dup);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%u",
		 ntohs(((struct sockaddr_in *)&fx->addr)->sin_port));
	assert_non_null(strstr(err, want));

	int c = fx_connect(fx);
	fx_accept(fx);
	fx_send(fx, c, fx_sess_of(fx, c), REQ, sizeof(REQ));
	uint8_t got[16];
	assert_int_equal(recv(c, got, sizeof(got), 0), (ssize_t)sizeof(REQ));
	close(c);
	fx_free(fx);
}

#define EMFILE_CLIENTS 8
#define EMFILE_RUN_MS 1000u
#define EMFILE_MAX_ITERS 1000

/*
 * The EMFILE scenario, in a child whose fd limit is then exhausted.
 * Returns 0 when everything held, or the number of the failed check.
 */
static int emfile_child(void)
{
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	fx_listen_tcp(fx, &svc, NULL, NULL, false);
	int lfd = sess_listener_fd(fx->lst);
	int clients[EMFILE_CLIENTS];
	for (int i = 0; i < EMFILE_CLIENTS; i++)
		clients[i] = fx_connect(fx);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1;
	rl.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 2;
	int fillers[64], nfill = 0;
	while (nfill < 64) {
		int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (f < 0)
			break;
		fillers[nfill++] = f;
	}
	if (errno != EMFILE)
		return 3;

	/* Play a level-triggered kernel: readable whenever watched. */
	loop_fake_set_sleep(fx->fake, true);
	uint64_t end = FX_START_MS + EMFILE_RUN_MS;
	int iters = 0;
	while (loop_fake_time(fx->fake) < end && iters < EMFILE_MAX_ITERS) {
		if (loop_fake_interest(fx->fake, lfd) >= 0)
			loop_fake_inject(fx->fake, lfd, LOOP_READ);
		loop_run_once(fx->loop);
		iters++;
		if (iters == 1 && loop_fake_interest(fx->fake, lfd) != -ENOENT)
			return 4; /* the first EMFILE must pause the listener */
	}
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	/* One pause per SESS_EMFILE_PAUSE_MS, two iterations each. */
	if (st.emfile_pauses < EMFILE_RUN_MS / SESS_EMFILE_PAUSE_MS - 1 ||
	    st.emfile_pauses > EMFILE_RUN_MS / SESS_EMFILE_PAUSE_MS + 1)
		return 5;
	if (iters > 3 * (int)(EMFILE_RUN_MS / SESS_EMFILE_PAUSE_MS))
		return 6;
	if (st.accepted != 0)
		return 7;
	/* The pending connections were taken off the queue and closed. */
	if (fx_peer_state(clients[0]) > 0)
		return 8;

	/* With fds back, the listener accepts again after its pause. */
	for (int i = 0; i < nfill; i++)
		close(fillers[i]);
	loop_fake_set_sleep(fx->fake, false);
	fx_at(fx, loop_fake_time(fx->fake) + SESS_EMFILE_PAUSE_MS);
	if (loop_fake_interest(fx->fake, lfd) != LOOP_READ)
		return 9;
	int c = fx_connect(fx);
	fx_accept(fx);
	if (!fx_sess_of(fx, c))
		return 10;
	close(c);
	for (int i = 0; i < EMFILE_CLIENTS; i++)
		close(clients[i]);
	fx_free(fx);
	return 0;
}

/* on_frame_error: a framer's refusal gets the service's last word out
 * (queued and flushed) before the close, with the reason it will close for. */
static enum sess_close_reason frame_error_why;

static void last_word(struct sess *s, enum sess_close_reason why, void *arg)
{
	(void)arg;
	frame_error_why = why;
	assert_int_equal(sess_send(s, (const uint8_t *)"NO", 2), 0);
}

static void test_frame_error_hook_answers_then_closes(void **state)
{
	(void)state;
	static const uint8_t high_bit[] = { 0x80, 0, 0, 4, 'a', 'b', 'c', 'd' };
	static const uint8_t too_big[] = { 0, 0, 2, 1, 'a' }; /* 513 > 512 */
	const uint8_t *inputs[] = { high_bit, too_big };
	const size_t lens[] = { sizeof(high_bit), sizeof(too_big) };
	const enum sess_close_reason whys[] = { SESS_CLOSE_MALFORMED,
						SESS_CLOSE_TOO_BIG };
	for (int i = 0; i < 2; i++) {
		struct fx *fx = fx_new();
		struct sess_service svc = fx_service(fx, sess_frame_len32, 512);
		svc.on_frame_error = last_word;
		fx_listen_tcp(fx, &svc, NULL, NULL, false);
		int c = fx_connect(fx);
		fx_accept(fx);
		struct sess *s = fx_sess_of(fx, c);
		frame_error_why = SESS_CLOSE_REASONS;
		fx_send(fx, c, s, inputs[i], lens[i]);
		assert_int_equal(frame_error_why, whys[i]);
		assert_true(loop_run_once(fx->loop) >= 0);
		assert_int_equal(fx->closes, 1);
		assert_int_equal(fx->close_why[0], whys[i]);
		char got[4];
		assert_int_equal(recv(c, got, sizeof(got), 0), 2);
		assert_memory_equal(got, "NO", 2);
		close(c);
		fx_free(fx);
	}
}

/* An accept that fails for want of kernel memory pauses the listener as
 * EMFILE does, rather than spinning on a listener that stays readable. */
static void test_accept_nomem_pauses(void **state)
{
	(void)state;
	struct fx *fx = fx_new();
	struct sess_service svc = fx_service(fx, sess_frame_len16, 512);
	fx_listen_tcp(fx, &svc, NULL, NULL, false);
	int lfd = sess_listener_fd(fx->lst);
	int c = fx_connect(fx);
	accept_fails_with = ENOBUFS;
	assert_int_equal(loop_fake_inject(fx->fake, lfd, LOOP_READ), 0);
	assert_true(loop_run_once(fx->loop) >= 0);
	accept_fails_with = 0;
	struct sess_stats st;
	sess_listener_stats(fx->lst, &st);
	assert_int_equal(st.nomem_pauses, 1);
	assert_int_equal(st.emfile_pauses, 0);
	assert_int_equal(st.accepted, 0);
	assert_int_equal(loop_fake_interest(fx->fake, lfd), -ENOENT);
	/* After the pause the waiting connection is accepted. */
	fx_at(fx, loop_fake_time(fx->fake) + SESS_EMFILE_PAUSE_MS);
	assert_int_equal(loop_fake_interest(fx->fake, lfd), LOOP_READ);
	fx_accept(fx);
	assert_non_null(fx_sess_of(fx, c));
	close(c);
	fx_free(fx);
}

static void test_emfile_pauses_without_spinning(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(emfile_child());
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("EMFILE child failed check %d", WEXITSTATUS(status));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_tcp),
		cmocka_unit_test(test_udp_guard_batches_and_size),
		cmocka_unit_test(test_udp_wildcard_replies_from_destination),
		cmocka_unit_test(test_len16_through_session),
		cmocka_unit_test(test_len32_through_session),
		cmocka_unit_test(test_ber_through_session),
		cmocka_unit_test(test_listen_from_fd_and_bind_error),
		cmocka_unit_test(test_emfile_pauses_without_spinning),
		cmocka_unit_test(test_accept_nomem_pauses),
		cmocka_unit_test(test_frame_error_hook_answers_then_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
