/* The live verbs: talk to a running berthd over its control socket. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* How long berthctl waits for berthd's reply. */
#define LIVE_TIMEOUT_S 10

static int connect_control(const char *path, FILE *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(err, "berthctl: control socket path %s is too long\n", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
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
	int e = errno;
	close(fd);
	if (e == ENOENT)
		fprintf(err, "berthctl: berthd is not running: no control socket at %s "
			"(is berthd using another config? try -c FILE or -s PATH)\n", path);
	else if (e == ECONNREFUSED)
		fprintf(err, "berthctl: berthd is not running: %s is a stale control "
			"socket nobody listens on\n", path);
	else if (e == ENOTSOCK)
		fprintf(err, "berthctl: %s is not a socket: wrong control socket path?\n",
			path);
	else
		fprintf(err, "berthctl: cannot connect to berthd at %s: %s\n", path,
			strerror(e));
	return -1;
}

int ctl_live(const char *socket_path, const char *command, FILE *out, FILE *err)
{
	int fd = connect_control(socket_path, err);
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
	int send_errno = send(fd, line, (size_t)n, MSG_NOSIGNAL) == n ? 0 : errno;

	/* The first line is "ok" or "error: REASON"; the rest is the output. */
	char buf[4096];
	char first[512];
	size_t flen = 0;
	bool in_first = true, ok = false;
	int rc = CTL_ERROR;
	for (;;) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && send_errno && in_first && flen == 0)
			break; /* nothing came back: report the send error */
		if (got < 0) {
			fprintf(err, "berthctl: no reply from berthd at %s: %s\n",
				socket_path, strerror(errno));
			goto done;
		}
		if (got == 0)
			break;
		size_t off = 0;
		while (in_first && off < (size_t)got) {
			char c = buf[off++];
			if (c == '\n') {
				first[flen] = '\0';
				in_first = false;
				ok = strcmp(first, "ok") == 0;
				if (!ok)
					fprintf(err, "berthctl: berthd: %s\n",
						strncmp(first, "error: ", 7) == 0 ? first + 7
										 : first);
			} else if (flen + 1 < sizeof(first)) {
				first[flen++] = c;
			}
		}
		fwrite(buf + off, 1, (size_t)got - off, ok ? out : err);
	}
	if (in_first && send_errno)
		fprintf(err, "berthctl: cannot send the command to berthd at %s: %s\n",
			socket_path, strerror(send_errno));
	else if (in_first)
		fprintf(err, "berthctl: berthd at %s closed without a reply\n",
			socket_path);
	else
		rc = ok ? CTL_OK : CTL_ERROR;
done:
	close(fd);
	return rc;
}
