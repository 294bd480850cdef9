/*
 * config: berth's INI config loader (berth.conf(5)).
 *
 * The loader reads a file, or the built-in default (the text of
 * conf/berth.conf compiled in), into a struct berth_config.  Every value is
 * checked here except the [ports] section, whose raw text goes to the port
 * plan (include/berth/portplan.h) so that the plan can report its own
 * errors with file, line and key.  Every error message names FILE:LINE,
 * "[section] key" and the reason, e.g.
 *
 *     berth.conf:12: [pool] size: '25x0' is not a number
 *
 * The structs are public because berthd and berthctl read them directly;
 * treat a loaded config as read-only and release it with config_free().
 */
#ifndef BERTH_DAEMON_CONFIG_H
#define BERTH_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "berth/portplan.h"
#include "berth/portset.h"

/* Longest [service NAME]; names are letters, digits, '-', '_' and '.'. */
#define CONFIG_NAME_MAX 32

/*
 * The longest upstream_timeout.  A client's own resolver gives up long
 * before (glibc after 5 s), so a longer wait answers nobody and only holds
 * back the failover to the next upstream.
 */
#define CONFIG_UPSTREAM_TIMEOUT_MAX_MS 60000u

/*
 * The most upstreams a dns service forwards to (the forwarder's
 * DNS_FWD_MAX_UPSTREAMS).  More addresses given in the config itself are an
 * error (berthd --check); nameservers of a resolv.conf past it are left out
 * with a warning, as glibc uses only the first three of its own.
 */
#define CONFIG_DNS_MAX_UPSTREAMS 8u

/* Room for a control socket path: sizeof(sockaddr_un.sun_path) on Linux. */
#define CONFIG_SOCKET_PATH_MAX 108

/* One numeric socket address as given in the config (port always set). */
struct config_addr {
	struct sockaddr_storage sa;
	socklen_t len; /* sizeof(struct sockaddr_in) or sockaddr_in6 */
};

enum config_protocol {
	CONFIG_PROTO_DNS = 1, /* UDP + TCP, upstream port 53 */
	CONFIG_PROTO_KERBEROS, /* UDP + TCP, upstream port 88 */
	CONFIG_PROTO_LDAP,     /* TCP (TLS when tls_cert/tls_key), port 389 */
};

enum config_pool_mode {
	CONFIG_POOL_PREBOUND,  /* "pool": sockets bound up front */
	CONFIG_POOL_PER_QUERY, /* "per-query": bind a fresh socket per query */
};

/* [pool] */
struct config_pool {
	bool present;      /* the file has a [pool] section */
	unsigned line;     /* its header line, 0 when absent */
	uint32_t size;     /* 1..65535, default 2500 */
	enum config_pool_mode mode; /* default CONFIG_POOL_PREBOUND */
	uint64_t rotate_ms; /* 0 = never (default) */
};

/*
 * One [service NAME] section.  The address arrays are heap arrays owned by
 * the config (freed by config_free()).
 */
struct config_service {
	char name[CONFIG_NAME_MAX + 1];
	unsigned line;          /* line of the [service NAME] header */
	enum config_protocol protocol;
	struct config_addr *listen; /* owned, nlisten >= 1 entries */
	size_t nlisten;
	unsigned listen_line;
	/* Owned, nupstream entries, in the order given; a dns upstream naming
	 * a resolv.conf file contributes its nameservers (port 53) in place.
	 * No address twice: the config itself may not repeat one, and one a
	 * resolv.conf repeats is kept where it first appears.  Empty only for
	 * a dns service that has hosts set. */
	struct config_addr *upstream;
	size_t nupstream;
	unsigned upstream_line; /* 0 when upstream is not set */
	/* resolv.conf nameservers left out because the service had
	 * CONFIG_DNS_MAX_UPSTREAMS without them (the config's own addresses
	 * come first), and the file the first of them came from (owned, NULL
	 * when none were).  The loader only counts them: the dns service
	 * warns about them when it is checked and started. */
	size_t upstream_left_out;
	char *upstream_left_out_file;
	uint64_t new_connection_timeout_ms; /* default 10 s */
	uint64_t idle_timeout_ms;           /* default 2 min */
	uint64_t upstream_timeout_ms;       /* default 2 s, at most 60 s */
	bool reset_on_timeout;              /* default false: close with FIN */
	char *hosts;                        /* owned path or NULL; dns only */
	unsigned hosts_line;                /* 0 when hosts is not set */
	bool dns_0x20;                      /* default false; dns only */
	struct portset blocked_source_ports; /* host byte order */
	uint32_t max_sessions;              /* 1..1000000, default 10000 */
	char *tls_cert;                     /* owned path or NULL; ldap only */
	char *tls_key;                      /* owned path or NULL; ldap only */
};

/* [control] */
struct config_control {
	char socket[CONFIG_SOCKET_PATH_MAX]; /* absolute, resolved at load */
	unsigned line;                       /* line of socket =, or 0 */
	/* The socket's directory is the fallback /tmp/berth-EUID (a relative
	 * socket without XDG_RUNTIME_DIR, not root): anyone could have made it,
	 * so berthd requires it to be its own (control_check_dir()). */
	bool private_dir;
	/* Where root's berthd without XDG_RUNTIME_DIR (as systemd starts it)
	 * puts this same socket: /run/berth/VALUE for a relative value that
	 * socket resolved under XDG_RUNTIME_DIR while the euid is 0, so that
	 * berthctl in a root login shell (XDG_RUNTIME_DIR=/run/user/0) can try
	 * it when nothing is at socket.  Empty otherwise, and when it would be
	 * socket itself or too long for a socket path. */
	char root_fallback[CONFIG_SOCKET_PATH_MAX];
};

/* [metrics] */
struct config_metrics {
	bool enabled;             /* listen is set */
	struct config_addr listen;
	unsigned line;            /* line of listen =, or 0 */
};

/* A loaded config.  Zero-initialise before the first config_load*(). */
struct berth_config {
	char *file; /* owned: the path as given, or "<built-in>" */
	/* [ports], uninterpreted.  ports.file borrows file; every value is an
	 * owned heap string despite the const in struct plan_setting (the
	 * config frees them).  pool_size/pool_size_line mirror [pool]. */
	struct plan_spec ports;
	unsigned ports_line;      /* [ports] header line, 0 when absent */
	struct config_pool pool;
	struct config_service *services; /* owned, nservices entries, in file order */
	size_t nservices;
	struct config_control control;
	struct config_metrics metrics;
};

/*
 * The text of conf/berth.conf, embedded at build time (a generated source
 * file), config_default_len bytes followed by a NUL.
 */
extern const char config_default_text[];
extern const size_t config_default_len;

/*
 * Load the config file at path into *cfg (whose previous contents are
 * overwritten, not freed).  Returns 0, or -errno with a one-line message in
 * err (errlen > 0): -ENOENT/-EACCES/... when the file cannot be read,
 * -EINVAL for any error in its content, -ENOMEM.  On failure *cfg is left
 * zeroed.  path is borrowed (copied into cfg->file).
 */
int config_load(const char *path, struct berth_config *cfg, char *err,
		size_t errlen);

/*
 * Load the built-in default (config_default_text) as file "<built-in>".
 * Same contract as config_load().
 */
int config_load_default(struct berth_config *cfg, char *err, size_t errlen);

/*
 * Load config text held in memory: len bytes at text (NULs inside are an
 * error), reported as file name in messages.  Both borrowed.  Same contract
 * as config_load(); used by config_load_default(), tests and the fuzzer.
 */
int config_load_text(const char *name, const char *text, size_t len,
		     struct berth_config *cfg, char *err, size_t errlen);

/*
 * Free everything a config owns and zero it.  Safe on a zeroed config, on
 * one a failed load left behind, and twice in a row.
 */
void config_free(struct berth_config *cfg);

/*
 * Parse a duration: a decimal number with an optional unit "ms", "s", "m"
 * or "h"; a bare number is seconds ("250ms", "10s", "2m", "1h", "30").
 * Stores milliseconds in *ms.  Returns 0, -EINVAL (empty, sign, garbage) or
 * -ERANGE (does not fit in 64 bits of milliseconds), with the reason,
 * quoting text, in err.  text is borrowed.
 */
int config_parse_duration(const char *text, uint64_t *ms, char *err,
			  size_t errlen);

/*
 * Parse a boolean: yes/no, true/false, on/off, 1/0 (any letter case).
 * Returns 0 or -EINVAL with the reason in err.  text is borrowed.
 */
int config_parse_bool(const char *text, bool *out, char *err, size_t errlen);

/*
 * Parse a numeric socket address: "192.0.2.1:53", "192.0.2.1",
 * "[2001:db8::1]:53", "[fe80::1%eth0]", "2001:db8::1".  No name lookups.
 * When the text has no port, default_port is used; default_port 0 means a
 * port is required.  Port 0 is never accepted.  Returns 0 or -EINVAL with
 * the reason in err.  text is borrowed; *out is filled on success.
 */
int config_parse_addr(const char *text, uint16_t default_port,
		      struct config_addr *out, char *err, size_t errlen);

/*
 * Write addr as "192.0.2.1:53" or "[2001:db8::1]:53" (snprintf
 * semantics: at most len bytes including the NUL; returns the length the
 * whole text needs, or a negative value on an unknown family).
 */
int config_format_addr(const struct config_addr *addr, char *buf, size_t len);

/* The port of addr in host order; 0 for an unknown family. */
uint16_t config_addr_port(const struct config_addr *addr);

/*
 * True when a and b are the same address and port as the kernel compares
 * them: an IPv4-mapped IPv6 address is the IPv4 address it stands for, and
 * a scope counts only on a link-local address.
 */
bool config_same_addr(const struct config_addr *a, const struct config_addr *b);

/*
 * Add to out the port of every listen address in cfg: each service's and
 * the metrics listener's.  The socket pool must never take one of them, or a
 * service could find its own port held by its own daemon.
 */
void config_listen_ports(const struct berth_config *cfg, struct portset *out);

/* "dns", "kerberos", "ldap", or "?" for anything else. */
const char *config_protocol_name(enum config_protocol protocol);

#endif
