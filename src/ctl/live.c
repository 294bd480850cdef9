/* The live verbs: talk to a running berthd over its control socket. */
#include <errno.h>
#include <string.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* How long berthctl waits for berthd's reply. */
#define LIVE_TIMEOUT_S 10

/* The room in sun_path, its terminating NUL included. */
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)NULL)->sun_path)

/* What kind of file st describes, for a message ("a regular file"). */
static const char *file_kind(const struct stat *st)
{
	mode_t m = st->st_mode;
	return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" :
	       S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) || S_ISBLK(m) ? "a device" :
	       "an unknown kind of file";
}

/* True when path is a socket file: one nobody listens on is stale. */
static bool is_socket(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * Why connecting to path failed with errno e, on err.  Linux answers
 * ECONNREFUSED (or EACCES) for a path that is no socket at all, just as it
 * does for a stale socket, so the file itself says which it is.  first is
 * the path tried first, when path is root's fallback (ctl_live()), and
 * first_errno why it failed (ENOENT: nothing there; else a stale socket);
 * first is NULL otherwise.  Every message names both paths tried.
 */
static void explain_connect_error(const char *first, int first_errno,
				  const char *path, int e, FILE *err)
{
	char tried[CONFIG_SOCKET_PATH_MAX + 64] = "";
	struct stat st;
	if (first && first_errno == ENOENT)
		snprintf(tried, sizeof(tried), "no control socket at %s, and ",
			 first);
	else if (first)
		snprintf(tried, sizeof(tried), "%s is a stale control socket "
			 "nobody listens on, and ", first);
	if (e == ENOENT && first && first_errno == ENOENT)
		fprintf(err, "berthctl: berthd is not running: no control socket at %s "
			"nor at %s (is berthd using another config? try -c FILE or "
			"-s PATH)\n", first, path);
	else if (e == ENOENT)
		fprintf(err, "berthctl: berthd is not running: %sno control socket at "
			"%s (is berthd using another config? try -c FILE or -s "
			"PATH)\n", tried, path);
	else if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		fprintf(err, "berthctl: %s%s is %s, not a socket (is -s PATH or the "
			"config's [control] socket right?)\n", tried, path,
			file_kind(&st));
	else if (e == ECONNREFUSED)
		fprintf(err, "berthctl: berthd is not running: %s%s is a stale control "
			"socket nobody listens on\n", tried, path);
	else
		fprintf(err, "berthctl: %scannot connect to berthd at %s: %s\n", tried,
			path, strerror(e));
}

/*
 * A stream socket connected to path (not empty, and short enough for
 * sun_path): the descriptor, or -1 with *connect_errno set to connect()'s
 * errno.  When socket() itself fails it says so on err and leaves
 * *connect_errno 0, since no path is to blame.
 */
static int dial(const char *path, int *connect_errno, FILE *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	memcpy(sun.sun_path, path, strlen(path) + 1);
	*connect_errno = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(err, "berthctl: socket: %s\n", strerror(errno));
		return -1;
	}
	struct timeval tv = { .tv_sec = LIVE_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	*connect_errno = errno;
	close(fd);
	return -1;
}

/*
 * Connect to path, or, when nothing is there or only a stale socket (a
 * berthd that was killed) and fallback is set, to fallback; *used is the
 * path connected to (or last tried).  Returns the descriptor, or -1 after
 * saying why on err.
 */
static int connect_control(const char *path, const char *fallback,
			   const char **used, FILE *err)
{
	*used = path;
	/* An empty sun_path would name an abstract socket, not a file. */
	if (!*path) {
		fputs("berthctl: the control socket path is empty\n", err);
		return -1;
	}
	if (strlen(path) >= SUN_PATH_SIZE) {
		fprintf(err, "berthctl: control socket path %s is too long\n", path);
		return -1;
	}
	int e;
	int fd = dial(path, &e, err);
	if (fd >= 0 || e == 0)
		return fd;
	const char *first = NULL;
	int first_errno = e;
	if ((e == ENOENT || (e == ECONNREFUSED && is_socket(path))) &&
	    fallback && *fallback && strlen(fallback) < SUN_PATH_SIZE) {
		first = path;
		*used = fallback;
		fd = dial(fallback, &e, err);
		if (fd >= 0 || e == 0)
			return fd;
	}
	explain_connect_error(first, first_errno, *used, e, err);
	return -1;
}

/*
 * berthd's reply as it arrives: the first line is "ok" or "error: REASON",
 * then the output, then the end line "." (daemon/control.h).  Output lines
 * starting with '.' come with one more '.' in front, taken off here.
 */
struct reply {
	enum { FIRST, LINE_START, DOT, IN_LINE, END } state;
	char first[512];
	size_t flen;
	bool ok;
	FILE *sink; /* out after "ok", err after an error */
};

/* Take in n bytes of the reply: the output to out, the error to err. */
static void reply_feed(struct reply *r, const char *buf, size_t n, FILE *out,
		       FILE *err)
{
	for (size_t i = 0; i < n && r->state != END; i++) {
		char c = buf[i];
		switch (r->state) {
		case FIRST:
			if (c != '\n') {
				if (r->flen + 1 < sizeof(r->first))
					r->first[r->flen++] = c;
				break;
			}
			r->first[r->flen] = '\0';
			r->ok = strcmp(r->first, "ok") == 0;
			if (!r->ok)
				fprintf(err, "berthctl: berthd: %s\n",
					strncmp(r->first, "error: ", 7) == 0 ? r->first + 7
									    : r->first);
			r->sink = r->ok ? out : err;
			r->state = LINE_START;
			break;
		case LINE_START:
			if (c == '.') {
				r->state = DOT;
				break;
			}
			fputc(c, r->sink);
			r->state = c == '\n' ? LINE_START : IN_LINE;
			break;
		case DOT:
			if (c == '\n') {
				r->state = END;
				break;
			}
			fputc(c, r->sink);
			r->state = IN_LINE;
			break;
		case IN_LINE:
			fputc(c, r->sink);
			if (c == '\n')
				r->state = LINE_START;
			break;
		case END:
			break;
		}
	}
}

int ctl_live(const char *socket_path, const char *fallback, const char *command,
	     FILE *out, FILE *err)
{
	const char *path; /* socket_path or fallback: where berthd answered */
	int fd = connect_control(socket_path, fallback, &path, err);
	if (fd < 0)
		return CTL_ERROR;
	char line[600];
	int n = snprintf(line, sizeof(line), "%s\n", command);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		fprintf(err, "berthctl: command too long\n");
		close(fd);
		return CTL_ERROR;
	}
	/* A send that fails may still have a reply waiting: berthd refuses a
	 * client over its cap with an error line before it reads anything. */
	ssize_t sent = send(fd, line, (size_t)n, MSG_NOSIGNAL);
	int send_errno = sent == n ? 0 : sent < 0 ? errno : EIO;

	struct reply r = { .state = FIRST };
	int rc = CTL_ERROR;
	for (;;) {
		char buf[4096];
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && r.state == FIRST && !(send_errno && r.flen == 0)) {
			fprintf(err, "berthctl: no reply from berthd at %s: %s\n",
				path, strerror(errno));
			goto done;
		}
		if (got <= 0)
			break;
		reply_feed(&r, buf, (size_t)got, out, err);
		if (r.state == END)
			break;
	}
	if (r.state == FIRST && send_errno) {
		fprintf(err, "berthctl: cannot send the command to berthd at %s: %s\n",
			path, strerror(send_errno));
	} else if (r.state == FIRST) {
		fprintf(err, "berthctl: berthd at %s closed without a reply\n",
			path);
	} else if (r.state != END) {
		/* Some of the output may be printed already: it is not all. */
		if (r.state == IN_LINE)
			fputc('\n', r.sink);
		fputs("berthctl: error: reply from berthd cut short\n", err);
		rc = r.ok ? CTL_FINDING : CTL_ERROR;
	} else {
		rc = r.ok ? CTL_OK : CTL_ERROR;
	}
done:
	close(fd);
	return rc;
}
