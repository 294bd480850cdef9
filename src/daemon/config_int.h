/*
 * config_int: what the pieces of the config loader share: config.c (pass 2
 * and the public entry points), config_ini.c (pass 1, the INI reader) and
 * config_value.c (single values).  Nothing else includes it; callers use
 * config.h.
 */
#ifndef BERTH_DAEMON_CONFIG_INT_H
#define BERTH_DAEMON_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/config.h"

enum section_kind { SEC_PORTS, SEC_POOL, SEC_SERVICE, SEC_CONTROL, SEC_METRICS };

/*
 * Loading runs in two passes.  The first (inih plus the reader and handler
 * in config_ini.c) only collects sections and raw "key = value" entries, catching
 * syntax errors, unknown names and duplicates.  The second interprets the
 * values; it runs after the whole file is read because an indented line may
 * still extend a value, and because some keys depend on others (protocol).
 */
struct raw_entry {
	char *key, *value; /* owned; value may be stolen by the config */
	unsigned line;
};

struct raw_section {
	enum section_kind kind;
	char name[CONFIG_NAME_MAX + 1];      /* the NAME of [service NAME] */
	char label[CONFIG_NAME_MAX + 16];    /* "[service NAME]", for messages */
	unsigned line;
	struct raw_entry *entries; /* owned, n entries */
	size_t n;
};

struct parse {
	const char *file;
	FILE *fp;              /* source: a file, or ... */
	char *linebuf;         /* getline() buffer for fp */
	size_t linecap;
	const char *text;      /* ... len bytes of memory */
	size_t len, pos;
	unsigned lineno;       /* line the reader handed to inih last */
	bool continuation;     /* that line continues the previous value */
	bool have_prev;        /* a key was seen since the last section header */
	struct raw_section *sec; /* owned, nsec entries */
	size_t nsec;
	int rc;                /* first error, 0 while none */
	unsigned err_line;
	char *err;
	size_t errlen;
};

/* Record the first error as "FILE:LINE: LABEL KEY: reason" (line, label and
 * key are left out when 0/NULL) and return the error code to propagate. */
__attribute__((format(printf, 6, 7)))
int config__fail(struct parse *p, int rc, unsigned line, const char *label,
		 const char *key, const char *fmt, ...);

/*
 * An address list as a key's value is read.  from[i] says where entry i
 * came from: CONFIG_FROM_CONFIG when the value gives it, else the offset in
 * the value of the resolv.conf path whose nameserver it is.  Both arrays
 * are owned and n entries long.
 */
struct addr_list {
	struct config_addr *addr;
	size_t *from;
	size_t n;
};

#define CONFIG_FROM_CONFIG SIZE_MAX

/*
 * Make svc's upstream list (read from entry e of the section labelled
 * label, with from as in struct addr_list, borrowed) what berthd uses: an
 * address the value gives twice is an error; one a resolv.conf repeats is
 * kept where it first appears (glibc tolerates repeats there); resolv.conf
 * nameservers that would take the dns service past CONFIG_DNS_MAX_UPSTREAMS
 * are left out and counted in svc->upstream_left_out.  Returns 0, or
 * -EINVAL / -ENOMEM with the message recorded through config__fail().
 * (config_addrs.c)
 */
int config__finish_upstreams(struct parse *p, const char *label,
			     const struct raw_entry *e,
			     struct config_service *svc, size_t *from);

/* After every section has loaded: no two listeners on one address, and no
 * upstream that is one of the config's own listeners.  0 or -EINVAL /
 * -ENOMEM with the message recorded through config__fail().
 * (config_addrs.c) */
int config__check_addrs(struct parse *p, const struct berth_config *cfg);

/* Pass 1: read the whole source (p->fp or p->text) through inih into p->sec,
 * catching syntax errors, unknown names and duplicates.  Returns p->rc: 0,
 * or the first error, whose message is in p->err. */
int config__read_raw(struct parse *p);

/* An unsigned decimal number min..max: digits only, no sign or spaces.
 * 0, -EINVAL or -ERANGE with the reason in err (errlen bytes). */
int config__parse_number(const char *text, uint32_t min, uint32_t max,
			 uint32_t *out, char *err, size_t errlen);

/* A numeric IPv4 or IPv6 address (with an optional %scope: an interface
 * name or index) and a port.  host is borrowed; 0, -EINVAL, or -ENODEV when
 * the address is fine but the scope names no interface of this host (out
 * then unchanged). */
int config__parse_host(const char *host, uint16_t port, struct config_addr *out);

#endif
