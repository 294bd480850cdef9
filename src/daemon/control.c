/* control: berthd's control socket; see control.h. */
#include "daemon/control.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "berth/loop.h"
#include "berth/wheel.h"

/*
 * A client has this long to send its command, and then as long again after
 * each part of the reply it takes: a slow reader is served, a stuck one is
 * dropped.
 */
#define CONTROL_DEADLINE_MS 5000u
/* The reply goes out in sends of at most this much, so that the kernel's
 * queue shrinks (and the deadline sees progress) as the client reads. */
#define CONTROL_SEND_CHUNK 16384u
/* Longest command line accepted. */
#define CONTROL_LINE_MAX 512u
/* How long the listener rests when berthd is out of file descriptors. */
#define CONTROL_PAUSE_MS 100u

struct control_client {
	struct control *ctl;
	struct control_client *next;
	int fd;
	struct loop_watch w;
	struct wheel_timer deadline;
	struct loop_close close;
	char line[CONTROL_LINE_MAX];
	size_t len;
	char *out;                  /* the reply, from open_memstream */
	size_t outlen, sent;
	size_t queued;              /* reply bytes the kernel held at the last
				       deadline (re)start; SIZE_MAX: unknown */
};

struct control {
	struct loop *loop;
	control_cmd_fn *run;
	void *arg;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	struct loop_watch w;
	struct wheel_timer pause;   /* re-arms w after an EMFILE pause */
	bool pause_logged;          /* this run of pauses is in the log */
	struct control_client *clients;
	struct control_stats st;
};

static void client_free(struct loop *loop, struct loop_close *c)
{
	struct control_client *cl = wheel_container_of(c, struct control_client, close);
	/* ctl is NULL when control_close() already let go of this client. */
	if (cl->ctl) {
		struct control_client **pp = &cl->ctl->clients;
		while (*pp && *pp != cl)
			pp = &(*pp)->next;
		if (*pp) {
			*pp = cl->next;
			cl->ctl->st.clients--;
		}
	}
	loop_timer_stop(loop, &cl->deadline);
	loop_watch_stop(loop, &cl->w);
	/*
	 * Closing with unread input makes the kernel reset the connection,
	 * and the client may see that before the reply: read away what a
	 * client refused mid-line already sent.
	 */
	char junk[4096];
	for (int i = 0; i < 16 && recv(cl->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		;
	close(cl->fd);
	free(cl->out);
	free(cl);
}

static void client_done(struct control_client *cl)
{
	if (cl->ctl)
		loop_defer_close(cl->ctl->loop, &cl->close, client_free);
}

/* What the kernel still holds of the reply for the client to read (its
 * send queue, in bytes of memory), or SIZE_MAX when it does not say. */
static size_t kernel_queued(int fd)
{
	int n;
	return ioctl(fd, SIOCOUTQ, &n) == 0 && n >= 0 ? (size_t)n : SIZE_MAX;
}

/* (Re)start cl's deadline, CONTROL_DEADLINE_MS from now. */
static void arm_deadline(struct control_client *cl)
{
	cl->queued = kernel_queued(cl->fd);
	loop_timer_start_in(cl->ctl->loop, &cl->deadline, CONTROL_DEADLINE_MS);
}

static void on_client_deadline(struct wheel_timer *t, void *ctx)
{
	struct control_client *cl = wheel_container_of(t, struct control_client,
						       deadline);
	(void)ctx;
	/*
	 * A client that took some of the reply since the deadline started is
	 * slow, not stuck: the kernel wakes a writer only once most of its
	 * queue is read, so the sends alone may see no progress for a while.
	 */
	if (cl->out && cl->sent < cl->outlen && kernel_queued(cl->fd) < cl->queued) {
		arm_deadline(cl);
		return;
	}
	client_done(cl);
}

/*
 * Append body (len bytes) to reply as the protocol carries it (control.h):
 * a '.' in front of every line that starts with '.', and a newline after a
 * last line without one, so that no line of it is the end line ".".
 */
static void put_body(FILE *reply, const char *body, size_t len)
{
	bool line_start = true;
	for (size_t i = 0; i < len; i++) {
		if (line_start && body[i] == '.')
			fputc('.', reply);
		fputc(body[i], reply);
		line_start = body[i] == '\n';
	}
	if (!line_start)
		fputc('\n', reply);
}

/*
 * Queue the reply and start writing it: "ok" (rc 0) or "error: " and err
 * (made one line in place), then the body as put_body() carries it, then
 * the end line.
 */
static void client_reply(struct control_client *cl, int rc, char *err,
			 const char *body, size_t bodylen)
{
	FILE *reply = open_memstream(&cl->out, &cl->outlen);
	if (!reply) {
		client_done(cl);
		return;
	}
	if (rc == 0) {
		fputs("ok\n", reply);
	} else {
		/* One line, whatever a file name in the reason holds. */
		for (char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		fprintf(reply, "error: %s\n", err);
	}
	put_body(reply, body, bodylen);
	fputs(".\n", reply);
	if (fclose(reply) != 0 || !cl->out) {
		client_done(cl);
		return;
	}
	loop_watch_set(cl->ctl->loop, &cl->w, LOOP_WRITE);
}

/* Answer "error: " and why without running anything. */
static void client_refuse(struct control_client *cl, const char *why)
{
	char err[128];
	snprintf(err, sizeof(err), "%s", why);
	client_reply(cl, -1, err, NULL, 0);
}

/* Run the command in cl->line and queue its reply. */
static void client_run(struct control_client *cl)
{
	char *body = NULL, err[1024] = "";
	size_t bodylen = 0;
	FILE *out = open_memstream(&body, &bodylen);
	if (!out) {
		client_done(cl);
		return;
	}
	int rc = cl->ctl->run(cl->ctl->arg, cl->line, out, err, sizeof(err));
	fclose(out);
	client_reply(cl, rc, err, body, bodylen);
	free(body);
}

static void on_client(struct loop *loop, struct loop_watch *w, unsigned events)
{
	struct control_client *cl = wheel_container_of(w, struct control_client, w);
	(void)loop;

	if (cl->out) {
		/* Writing the reply; any progress restarts the deadline. */
		bool progress = false;
		while (cl->sent < cl->outlen) {
			size_t len = cl->outlen - cl->sent;
			ssize_t n = send(cl->fd, cl->out + cl->sent,
					 len < CONTROL_SEND_CHUNK ? len : CONTROL_SEND_CHUNK,
					 MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				if (errno != EAGAIN)
					break;
				if (progress)
					arm_deadline(cl);
				return;
			}
			cl->sent += (size_t)n;
			progress = true;
		}
		client_done(cl);
		return;
	}
	if (events & LOOP_HUP && !(events & LOOP_READ)) {
		client_done(cl);
		return;
	}
	ssize_t n = recv(cl->fd, cl->line + cl->len, sizeof(cl->line) - 1 - cl->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (n == 0 && cl->len == 0)) {
		client_done(cl); /* gone, or asked nothing */
		return;
	}
	/* The bytes before these held no newline; EOF ends the line too. */
	const char *nl = memchr(cl->line + cl->len, '\n', (size_t)n);
	cl->len += (size_t)n;
	size_t end = nl ? (size_t)(nl - cl->line) : cl->len;
	if (memchr(cl->line, '\0', end)) {
		client_refuse(cl, "NUL in command");
		return;
	}
	if (!nl && n > 0) {
		if (cl->len + 1 >= sizeof(cl->line))
			client_refuse(cl, "line too long");
		return;
	}
	cl->line[end] = '\0';
	if (end > 0 && cl->line[end - 1] == '\r')
		cl->line[end - 1] = '\0';
	client_run(cl);
}

/*
 * Out of file descriptors (or kernel memory): the connection stays queued
 * and the listener readable, and the loop is level-triggered, so watching
 * it now would spin.  Rest for CONTROL_PAUSE_MS, then watch again.
 */
static void accept_pause(struct control *c, int error)
{
	c->st.accept_pauses++;
	if (!c->pause_logged) {
		fprintf(stderr, "berthd: control socket %s: %s; not accepting for "
			"%u ms at a time until it clears\n", c->path, strerror(error),
			CONTROL_PAUSE_MS);
		c->pause_logged = true;
	}
	loop_watch_stop(c->loop, &c->w);
	loop_timer_start_in(c->loop, &c->pause, CONTROL_PAUSE_MS);
}

static void on_pause_end(struct wheel_timer *t, void *ctx)
{
	struct control *c = wheel_container_of(t, struct control, pause);
	(void)ctx;
	if (loop_watch_set(c->loop, &c->w, LOOP_READ) < 0)
		loop_timer_start_in(c->loop, &c->pause, CONTROL_PAUSE_MS);
}

/* Over the client cap: say so, if the socket takes it at once, and close. */
static void refuse(struct control *c, int fd)
{
	static const char msg[] = "error: too many control clients\n.\n";
	c->st.refused++;
	/* Best effort: a client whose socket cannot take it sees the close. */
	(void)send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void on_accept(struct loop *loop, struct loop_watch *w, unsigned events)
{
	struct control *c = wheel_container_of(w, struct control, w);
	(void)events;
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				accept_pause(c, errno);
			return;
		}
		c->pause_logged = false;
		if (c->st.clients >= CONTROL_CLIENTS_MAX) {
			refuse(c, fd);
			continue;
		}
		struct control_client *cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(fd);
			return;
		}
		cl->ctl = c;
		cl->fd = fd;
		loop_watch_init(&cl->w, fd, on_client);
		wheel_timer_init(&cl->deadline, on_client_deadline);
		if (loop_watch_set(loop, &cl->w, LOOP_READ) < 0) {
			close(fd);
			free(cl);
			continue;
		}
		arm_deadline(cl);
		cl->next = c->clients;
		c->clients = cl;
		c->st.clients++;
	}
}

/* What a file of mode m is, for messages. */
static const char *file_kind(mode_t m)
{
	return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" :
	       S_ISLNK(m) ? "a symbolic link" : S_ISFIFO(m) ? "a FIFO" :
	       S_ISCHR(m) || S_ISBLK(m) ? "a device" :
	       S_ISSOCK(m) ? "a socket" : "an unknown kind of file";
}

int control_check_dir(const char *dir, uid_t euid, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "control directory %s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "control directory %s is %s, not a directory; "
			 "remove it or set [control] socket", dir, file_kind(st.st_mode));
		return -ENOTDIR;
	}
	if (st.st_uid != euid || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "control directory %s is not private: owner uid "
			 "%u, mode %04o (berthd needs owner uid %u and no write for group "
			 "or others); remove it or set [control] socket", dir,
			 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			 (unsigned)euid);
		return -EPERM;
	}
	return 0;
}

/*
 * Create the socket's directory when it is missing (one level, 0700).  A
 * private one must then be berthd's own: anyone may create a directory in
 * /tmp first, and whoever owns it can swap the socket.
 */
static int make_parent(const char *path, bool private_dir, char *err,
		       size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "control socket %s: cannot create %s: %s", path,
			 dir, strerror(e));
		return -e;
	}
	return private_dir ? control_check_dir(dir, geteuid(), err, errlen) : 0;
}

/* Is some process answering on path already? */
static bool someone_listens(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool yes = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return yes;
}

/*
 * Make room for the socket at path: nothing there is fine, and a socket
 * nobody answers on (left by a berthd that died) is removed.  Anything else
 * is refused, so that berthd never deletes a file it did not create.
 */
static int clear_path(const struct sockaddr_un *sun, const char *path,
		      char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "control socket %s: the path is taken by %s; "
			 "berthd replaces only a stale socket (remove it or set "
			 "[control] socket)", path, file_kind(st.st_mode));
		return -EEXIST;
	}
	if (someone_listens(sun)) {
		snprintf(err, errlen, "control socket %s: another berthd is running there",
			 path);
		return -EADDRINUSE;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "control socket %s: cannot remove the stale socket: %s",
			 path, strerror(errno));
		return -errno;
	}
	return 0;
}

struct control *control_open(struct loop *loop, const char *path,
			     bool private_dir, control_cmd_fn *run, void *arg,
			     char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct control *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->run = run;
	c->arg = arg;
	c->fd = -1;
	wheel_timer_init(&c->pause, on_pause_end);
	if ((size_t)snprintf(c->path, sizeof(c->path), "%s", path) >= sizeof(c->path)) {
		snprintf(err, errlen, "control socket path %s is too long", path);
		goto fail;
	}
	memcpy(sun.sun_path, c->path, sizeof(sun.sun_path));
	if (make_parent(c->path, private_dir, err, errlen) < 0)
		goto fail;
	if (clear_path(&sun, c->path, err, errlen) < 0)
		goto fail;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177);
	int rc = c->fd < 0 ? -1 : bind(c->fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || listen(c->fd, 16) < 0) {
		snprintf(err, errlen, "control socket %s: %s", c->path, strerror(errno));
		goto fail;
	}
	loop_watch_init(&c->w, c->fd, on_accept);
	rc = loop_watch_set(c->loop, &c->w, LOOP_READ);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: %s", c->path, strerror(-rc));
		unlink(c->path);
		goto fail;
	}
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	while (c->clients) {
		struct control_client *cl = c->clients;
		c->clients = cl->next;
		if (loop_close_pending(&cl->close)) {
			cl->ctl = NULL; /* its close hook frees it */
			continue;
		}
		loop_timer_stop(c->loop, &cl->deadline);
		loop_watch_stop(c->loop, &cl->w);
		close(cl->fd);
		free(cl->out);
		free(cl);
	}
	loop_timer_stop(c->loop, &c->pause);
	loop_watch_stop(c->loop, &c->w);
	close(c->fd);
	unlink(c->path);
	free(c);
}

void control_get_stats(const struct control *c, struct control_stats *out)
{
	*out = c ? c->st : (struct control_stats){ 0 };
}
