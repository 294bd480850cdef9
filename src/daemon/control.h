/*
 * control: berthd's control socket, a unix stream socket with a line
 * protocol.  A client connects, sends one command line ("status", "pool",
 * "release 4500", "sessions", "reload") and reads the reply until the
 * server closes: a first line "ok" or "error: REASON", then the command's
 * output, then the end line ".".  An output line that starts with '.' is
 * sent with one more '.' in front (the client takes it off), so the end
 * line cannot occur inside the output, and a reply without it was cut short.
 * EOF ends the command line as a newline does; a line too long or holding
 * a NUL gets "error: line too long" / "error: NUL in command".  One command
 * per connection keeps both sides trivial.
 */
#ifndef BERTH_CONTROL_H
#define BERTH_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* At most this many clients are served at once; more are refused at once
 * with "error: too many control clients". */
#define CONTROL_CLIENTS_MAX 64u

struct control;
struct loop;

/*
 * Run one command line (without its newline) for a client: write its output
 * to out and return 0, or return -1 with a one-line reason in err.  arg is
 * what control_open() was given.  daemon_command() in berthd.
 */
typedef int control_cmd_fn(void *arg, const char *line, FILE *out, char *err,
			   size_t errlen);

/* Figures for `berthctl status`. */
struct control_stats {
	size_t clients;          /* connected now */
	uint64_t refused;        /* turned away over CONTROL_CLIENTS_MAX */
	uint64_t accept_pauses;  /* accepts paused, out of file descriptors */
};

/*
 * Listen on path (borrowed) on loop (borrowed; it must outlive the control)
 * for commands, each run by run(arg, ...).  Creates the socket's parent
 * directory (mode 0700) when missing; with private_dir (the config's
 * fallback under /tmp, see struct config_control) that directory must pass
 * control_check_dir() too.  Replaces a stale socket file, and refuses to
 * start when another berthd answers on path or when path is anything but a
 * socket (a regular file, a symbolic link...).  The socket is mode 0600.
 * Returns the control object or NULL with the reason in err.
 */
struct control *control_open(struct loop *loop, const char *path,
			     bool private_dir, control_cmd_fn *run, void *arg,
			     char *err, size_t errlen);

/*
 * Is dir (borrowed) a private directory of euid: a directory itself (not a
 * symbolic link), owned by euid, writable by neither group nor others?
 * Returns 0, or -errno with the reason, naming dir, owner and mode, in err.
 */
int control_check_dir(const char *dir, uid_t euid, char *err, size_t errlen);

/* Close every client, remove the socket file and free c.  Accepts NULL. */
void control_close(struct control *c);

/* Fill *out (caller-owned) with c's figures (all 0 when c is NULL). */
void control_get_stats(const struct control *c, struct control_stats *out);

#endif
