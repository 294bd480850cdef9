/*
 * portplan_int: what portplan.c (building the plan) needs from
 * portplan_kernel.c (the kernel's sysctl files).  Nothing outside those two
 * files includes it; callers use include/berth/portplan.h.
 */
#ifndef BERTH_PORTPLAN_INT_H
#define BERTH_PORTPLAN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "berth/portplan.h"
#include "berth/portset.h"

/* The sysctl directory to read: env->sysctl_dir when env (borrowed, may be
 * NULL) sets one, else /proc/sys/net/ipv4.  The string is env's or static. */
const char *plan__sysctl_dir(const struct plan_env *env);

/* Read <dir>/ip_local_reserved_ports into set (cleared first).  0 or
 * -errno, reason in why (caller's buffer of whylen bytes).  dir is
 * borrowed. */
int plan__read_kernel_reserved(const char *dir, struct portset *set,
			       char *why, size_t whylen);

/* Read <dir>/ip_local_port_range ("lo<TAB>hi") into *lo and *hi.  0 or
 * -errno, reason in why (caller's buffer of whylen bytes).  dir is
 * borrowed. */
int plan__read_kernel_range(const char *dir, uint16_t *lo, uint16_t *hi,
			    char *why, size_t whylen);

#endif
