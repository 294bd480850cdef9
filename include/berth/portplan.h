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
};

#endif
