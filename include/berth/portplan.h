/*
 * portplan: one source of truth for which ports are dynamic (ephemeral) and
 * which are reserved, built from the config's [ports] section, the kernel and
 * the service catalogs.
 */
#ifndef BERTH_PORTPLAN_H
#define BERTH_PORTPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "berth/portset.h"

/*
 * One raw setting from the config file: its text exactly as written (after
 * the INI parser strips comments and white space) and the line it came from.
 * value == NULL and line == 0 mean "not set".  The plan, not the config
 * loader, interprets and validates the text, so every error it reports can
 * name file, line and key.
 */
struct plan_setting {
	const char *value; /* borrowed: owned by whoever filled the spec */
	unsigned line;
};

/*
 * What the config said about ports, uninterpreted.  Filled by the config
 * loader (src/daemon/config.c) or by tests; read by plan_build().
 */
struct plan_spec {
	const char *file; /* config path for messages, or "<built-in>" */
	struct plan_setting dynamic_range;           /* "a-b" */
	struct plan_setting dynamic_start;           /* netsh start */
	struct plan_setting dynamic_count;           /* netsh count */
	struct plan_setting max_user_port;           /* MaxUserPort N */
	struct plan_setting max_user_port_semantics; /* legacy | count */
	struct plan_setting from_kernel;             /* yes | no */
	struct plan_setting reserved;                /* port list */
	struct plan_setting reserved_catalog;        /* catalog names */
	struct plan_setting catalog_dir;             /* extra catalog dir */
	struct plan_setting avoid_in_use;            /* yes | no */
	/* The pool must fit in the ports the plan leaves to it. */
	uint32_t pool_size;    /* 0 when the config has no [pool] */
	unsigned pool_size_line;
	/* Ports the config's own services listen on: the pool never takes
	 * them, so they are no room for it (empty when zero-initialised). */
	struct portset listen;
};

/* Where a reserved range came from. */
enum plan_origin {
	PLAN_ORIGIN_CONFIG,  /* [ports] reserved */
	PLAN_ORIGIN_CATALOG, /* reserved_catalog */
	PLAN_ORIGIN_KERNEL,  /* ip_local_reserved_ports with from_kernel = yes */
};

/* One reserved range as the operator sees it in `berthctl show reserved`. */
struct plan_reservation {
	uint16_t lo, hi;
	enum plan_origin origin;
	unsigned line;     /* config line, for PLAN_ORIGIN_CONFIG (else 0) */
	char catalog[32];  /* catalog name, for PLAN_ORIGIN_CATALOG */
	char service[96];  /* the catalog's service and description */
};

/*
 * Where plan_build() looks outside the config.  Zero-initialised fields take
 * the defaults, so tests point these at fixtures and production passes {0}.
 */
struct plan_env {
	const char *sysctl_dir;          /* default "/proc/sys/net/ipv4" */
	const char *const *catalog_dirs; /* NULL-terminated; searched after the
					    config's catalog_dir; NULL = the
					    source tree's and the installed
					    data/catalog */
};

/*
 * A built plan.  Public so the pool, berthctl and berthd can read it
 * directly; treat it as read-only after plan_build().
 */
struct plan {
	const char *file;           /* borrowed from the spec */
	uint16_t dynamic_lo, dynamic_hi;
	char dynamic_how[128];      /* how the range was given, for people:
				       "max_user_port = 5000 (legacy) at
				       berth.conf:4" */
	struct portset dynamic;     /* dynamic_lo..dynamic_hi */
	struct portset reserved;    /* union of every reservation */
	struct portset kernel_reserved; /* ip_local_reserved_ports as read now */
	bool kernel_read;           /* false when it could not be read */
	struct portset kernel_ephemeral; /* ip_local_port_range as read now:
					    where the kernel picks ports for
					    sockets that bind none (empty
					    when it could not be read) */
	struct portset allowed;     /* dynamic minus reserved: the pool's ports */
	struct portset pool_room;   /* allowed minus the spec's listen ports:
				       what the pool may draw from (less what
				       other sockets hold when it starts) */
	struct portset listen;      /* the spec's listen ports: the pool
				       never holds one, so berthctl check
				       takes berthd there for a service */
	bool avoid_in_use;          /* also skip ports local sockets hold */
	uint32_t pool_size;         /* 0 when there is no [pool] */
	unsigned pool_size_line;
	struct plan_reservation *res; /* owned by the plan, nres entries, sorted */
	size_t nres;
};

/*
 * Build the port plan from the config's [ports] settings, the kernel and the
 * catalogs.
 *
 * The dynamic range is given in at most one way:
 *   dynamic_range = A-B              1 <= A <= B <= 65535
 *   dynamic_start = S, dynamic_count = N   (netsh form) S..S+N-1; a count
 *                                    alone starts at 49152, a start alone
 *                                    runs to 65535
 *   max_user_port = N with max_user_port_semantics =
 *       legacy   1024..N, 1025 <= N <= 65535 (Windows 2000/2003)
 *       count    N ports from dynamic_start (default 49152), 1 <= N
 *                (Vista/2008 and later)
 *   from_kernel = yes                ip_local_port_range, and the kernel's
 *                                    reserved list joins the reservations
 * and without any of them it is 49152-65535 (IANA).  ip_local_reserved_ports
 * is always read into kernel_reserved when it can be (kernel_read says
 * whether it could), so `berthctl check` can compare.
 *
 * spec: the raw settings; borrowed, and spec->file must outlive the plan.
 * env:  where to find the kernel's files and the catalogs; borrowed; NULL or
 *       zero fields take the defaults.
 * err, errlen: on failure receives "FILE:LINE: [ports] KEY: reason" (or
 *       "FILE:LINE: [pool] size: ..." when the pool does not fit).
 *
 * Returns a plan the caller frees with plan_free, or NULL on error.
 */
struct plan *plan_build(const struct plan_spec *spec,
			const struct plan_env *env, char *err, size_t errlen);

/* Free a plan from plan_build(); NULL is a no-op. */
void plan_free(struct plan *plan);

/* Room enough for what plan_pool_room_why() writes. */
#define PLAN_POOL_ROOM_WHY_MAX 128

/*
 * Why the pool has only the room it has, for a message saying it does not
 * fit: "dynamic 15500-15509, 0 of them reserved, 1 a listen port of the
 * config's services".  Writes at most len bytes including the NUL.
 */
void plan_pool_room_why(const struct plan *p, char *buf, size_t len);

/*
 * Describe where r came from, for people: "config (berth.conf:7)",
 * "catalog sbs: ipsec-nat-t (IPsec NAT traversal)", "kernel".  file is the
 * plan's file (borrowed).  Behaves like snprintf: writes at most len bytes
 * and returns the length the whole text needs.
 */
size_t plan_origin_describe(const struct plan_reservation *r, const char *file,
			    char *buf, size_t len);

/*
 * Merge the plan's reserved ports into the kernel's reserved list:
 * merged = <sysctl_dir>/ip_local_reserved_ports as read now ∪ plan->reserved.
 *
 * plan: borrowed.  sysctl_dir: borrowed, NULL means "/proc/sys/net/ipv4".
 * dry_run: when true, nothing is written.
 * added: caller-owned; receives the ports the merge adds (empty when the
 *   kernel already reserves everything).  Filled before anything is written,
 *   so it is valid even when the write fails.
 * err, errlen: a one-line reason on failure.
 *
 * When not a dry run and added is not empty, adds the added ports to the
 * kernel's list in its "a-b,c" form (written from offset 1, so the kernel
 * only ever adds: nothing it reserves is dropped, even for a moment or when
 * a write fails halfway); a plain file standing for the sysctl (tests)
 * gets the merged list instead.  Returns 0, or -errno: -EACCES or
 * -EPERM (the message says to run as root or use --dry-run), or the error
 * of reading or parsing the kernel's list.
 */
int plan_kernel_apply(const struct plan *plan, const char *sysctl_dir,
		      bool dry_run, struct portset *added, char *err,
		      size_t errlen);

#endif
