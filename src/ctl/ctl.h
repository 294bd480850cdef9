/*
 * berthctl's verbs.  Each verb lives in its own file and returns the process
 * exit status: 0 success, 1 a finding the operator must act on (conflicts,
 * nobody holding a port) or a reply from berthd cut short, 2 a usage or
 * environment error (message already printed to err).
 */
#ifndef BERTH_CTL_H
#define BERTH_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "berth/portplan.h"
#include "daemon/config.h"

/* Exit statuses shared by every verb. */
enum { CTL_OK = 0, CTL_FINDING = 1, CTL_ERROR = 2 };

/* A loaded config and the port plan built from it. */
struct ctl_setup {
	struct berth_config cfg;
	struct plan *plan; /* borrows from cfg: free together */
};

/*
 * Load the config at path (NULL: the built-in default) and build its port
 * plan into *setup.  Returns 0, or CTL_ERROR after printing file:line, key
 * and reason to err.  Free with ctl_unload() either way.  A pool too large
 * for the plan is not an error here: plan->pool_size is set all the same,
 * for ctl_check() to report.  (load.c)
 */
int ctl_load(const char *path, struct ctl_setup *setup, FILE *err);

/* Free what ctl_load() built; safe on a zeroed or failed setup. */
void ctl_unload(struct ctl_setup *setup);

/* show dynamicport tcp|udp, netsh style.  (show.c) */
int ctl_show_dynamicport(const struct plan *plan, const char *proto, FILE *out,
			 FILE *err);

/* show reserved: one range per line with its origin.  (show.c) */
int ctl_show_reserved(const struct plan *plan, FILE *out, FILE *err);

/* check: reserved ports held by processes, pool fit, kernel sync.  (check.c)
 * proc_root is "/proc" except in tests. */
int ctl_check(const struct plan *plan, const char *proc_root, FILE *out,
	      FILE *err);

/*
 * The decimal port (1-65535) at the start of text: true with *port set and
 * *end just past its digits, or false with a reason in *why.  Shared by the
 * verbs that take a port (who, release).  (who.c)
 */
bool ctl_parse_port(const char *text, uint16_t *port, const char **end,
		    const char **why);

/* who PORT[/udp|/tcp]: which processes hold the port.  (who.c) */
int ctl_who(const char *arg, const char *proc_root, FILE *out, FILE *err);

/* apply [--dry-run]: merge the plan's reserved ports into the kernel's
 * ip_local_reserved_ports.  sysctl_dir is "/proc/sys/net/ipv4" except in
 * tests.  (apply.c) */
int ctl_apply(const struct plan *plan, const char *sysctl_dir, int dry_run,
	      FILE *out, FILE *err);

/*
 * Send command ("status", "pool", "release 4500", "sessions", "reload") to
 * the berthd listening on socket_path and copy its output to out.  When
 * nothing is at socket_path (ENOENT) and fallback is neither NULL nor empty,
 * try fallback instead (config_control.root_fallback: /run/berth for root).
 * Both strings are borrowed.  Exit status 0 when berthd answers ok, 2 with
 * its reason (or why it could not be reached: not running, stale socket,
 * wrong path; naming every path tried) on err, 1 when the reply lacks its
 * end line (cut short; what came is printed).  (live.c)
 */
int ctl_live(const char *socket_path, const char *fallback, const char *command,
	     FILE *out, FILE *err);

#endif
