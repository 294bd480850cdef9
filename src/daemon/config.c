/* config: berth.conf loader; see config.h and berth.conf(5).  Pass 1 (the
 * INI reader) is config_ini.c, the value parsers are config_value.c; this
 * file interprets the sections (pass 2) and holds the public entry points. */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "berth/fileio.h"
#include "daemon/config_int.h"

_Static_assert(CONFIG_SOCKET_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
	       "CONFIG_SOCKET_PATH_MAX must match sun_path");

int config__fail(struct parse *p, int rc, unsigned line, const char *label,
		 const char *key, const char *fmt, ...)
{
	if (p->rc)
		return p->rc;
	char reason[512], at[16] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(at, sizeof(at), ":%u", line);
	snprintf(p->err, p->errlen, "%s%s: %s%s%s%s%s", p->file, at,
		 label ? label : "", label && key ? " " : "", key ? key : "",
		 label || key ? ": " : "", reason);
	p->rc = rc;
	p->err_line = line;
	return rc;
}

/* ---- pass 2: interpreting the sections ------------------------------------ */

/* The entry for key in sec, or NULL. */
static struct raw_entry *find_entry(const struct raw_section *sec, const char *key)
{
	for (size_t i = 0; i < sec->n; i++)
		if (strcmp(sec->entries[i].key, key) == 0)
			return &sec->entries[i];
	return NULL;
}

static int load_ports(struct raw_section *sec, struct berth_config *cfg)
{
	struct plan_spec *spec = &cfg->ports;
	const struct { const char *key; struct plan_setting *set; } map[] = {
		{ "dynamic_range", &spec->dynamic_range },
		{ "dynamic_start", &spec->dynamic_start },
		{ "dynamic_count", &spec->dynamic_count },
		{ "max_user_port", &spec->max_user_port },
		{ "max_user_port_semantics", &spec->max_user_port_semantics },
		{ "from_kernel", &spec->from_kernel },
		{ "reserved", &spec->reserved },
		{ "reserved_catalog", &spec->reserved_catalog },
		{ "catalog_dir", &spec->catalog_dir },
		{ "avoid_in_use", &spec->avoid_in_use },
	};
	cfg->ports_line = sec->line;
	for (size_t i = 0; i < sec->n; i++) {
		struct raw_entry *e = &sec->entries[i];
		for (size_t m = 0; m < sizeof(map) / sizeof(map[0]); m++) {
			if (strcmp(e->key, map[m].key) != 0)
				continue;
			/* The plan interprets the text; the config owns it. */
			*map[m].set = (struct plan_setting){ .value = e->value,
							     .line = e->line };
			e->value = NULL;
		}
	}
	return 0;
}

static int load_pool(struct parse *p, const struct raw_section *sec,
		     struct berth_config *cfg)
{
	cfg->pool.present = true;
	cfg->pool.line = sec->line;
	cfg->ports.pool_size_line = sec->line;
	for (size_t i = 0; i < sec->n; i++) {
		const struct raw_entry *e = &sec->entries[i];
		char why[256];
		int rc = 0;
		if (strcmp(e->key, "size") == 0) {
			rc = config__parse_number(e->value, 1, 65535,
						  &cfg->pool.size, why,
						  sizeof(why));
			cfg->ports.pool_size_line = e->line;
		} else if (strcmp(e->key, "mode") == 0) {
			if (strcmp(e->value, "pool") == 0)
				cfg->pool.mode = CONFIG_POOL_PREBOUND;
			else if (strcmp(e->value, "per-query") == 0)
				cfg->pool.mode = CONFIG_POOL_PER_QUERY;
			else
				rc = -EINVAL;
			snprintf(why, sizeof(why), "'%s' is not a mode (pool or per-query)",
				 e->value);
		} else {
			rc = config_parse_duration(e->value, &cfg->pool.rotate_ms, why,
						   sizeof(why));
			/* The pool keeps the period in 32 bits of milliseconds. */
			if (rc == 0 && cfg->pool.rotate_ms > UINT32_MAX) {
				rc = -EINVAL;
				snprintf(why, sizeof(why), "'%s' is too large (at most "
					 "4294967295ms, about 49 days)", e->value);
			}
		}
		if (rc)
			return config__fail(p, -EINVAL, e->line, sec->label,
					    e->key, "%s", why);
	}
	return 0;
}

static int push_addr(struct addr_list *l, const struct config_addr *a, size_t from)
{
	struct config_addr *addr = realloc(l->addr, (l->n + 1) * sizeof(*addr));
	if (!addr)
		return -ENOMEM;
	l->addr = addr;
	size_t *fromv = realloc(l->from, (l->n + 1) * sizeof(*fromv));
	if (!fromv)
		return -ENOMEM;
	l->from = fromv;
	addr[l->n] = *a;
	fromv[l->n++] = from;
	return 0;
}

/* Append the nameservers of a resolv.conf-format file, on port 53; at is
 * the offset of path in the value (struct addr_list). */
static int read_resolv(struct parse *p, const struct raw_section *sec,
		       const struct raw_entry *e, const char *path, size_t at,
		       struct addr_list *l)
{
	FILE *f = fileio_open_regular(path);
	if (!f) {
		int rc = -errno;
		return config__fail(p, rc, e->line, sec->label, e->key, "%s: %s", path,
				    fileio_strerror(-rc));
	}
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;
	while (rc == 0 && getline(&line, &cap, f) >= 0) {
		char *s = line + strspn(line, " \t");
		lineno++;
		if (strncmp(s, "nameserver", 10) != 0 || !isspace((unsigned char)s[10]))
			continue;
		s += 10 + strspn(s + 10, " \t");
		s[strcspn(s, " \t\r\n;#")] = '\0';
		struct config_addr a;
		int bad = config__parse_host(s, 53, &a);
		if (bad == -ENODEV)
			rc = config__fail(p, -EINVAL, e->line, sec->label, e->key,
					  "%s:%u: nameserver '%s': this host has no "
					  "interface '%s' (the scope after %%)", path,
					  lineno, s, strchr(s, '%') + 1);
		else if (bad)
			rc = config__fail(p, -EINVAL, e->line, sec->label, e->key,
					  "%s:%u: nameserver '%s' is not a numeric IP address",
					  path, lineno, s);
		else if (push_addr(l, &a, at) != 0)
			rc = config__fail(p, -ENOMEM, e->line, NULL, NULL,
					  "out of memory");
	}
	if (rc == 0 && ferror(f))
		rc = config__fail(p, -EIO, e->line, sec->label, e->key,
				  "%s: read error", path);
	free(line);
	fclose(f);
	return rc;
}

/* One list entry, at offset at in the value: an address, or with files
 * set a resolv.conf path. */
static int load_addr(struct parse *p, const struct raw_section *sec,
		     const struct raw_entry *e, const char *tok, size_t at,
		     uint16_t default_port, bool files, struct addr_list *l)
{
	if (tok[0] == '/' && files)
		return read_resolv(p, sec, e, tok, at, l);
	if (tok[0] == '/')
		return config__fail(p, -EINVAL, e->line, sec->label, e->key,
				    "'%s' is not an address (only a dns upstream may name a resolv.conf file)",
				    tok);
	struct config_addr a;
	char why[256];
	if (config_parse_addr(tok, default_port, &a, why, sizeof(why)) != 0)
		return config__fail(p, -EINVAL, e->line, sec->label, e->key, "%s", why);
	if (push_addr(l, &a, CONFIG_FROM_CONFIG) != 0)
		return config__fail(p, -ENOMEM, e->line, NULL, NULL, "out of memory");
	return 0;
}

/* A list of addresses separated by commas and/or white space, into l
 * (which starts empty and is the caller's to free, also on failure). */
static int load_addrs(struct parse *p, const struct raw_section *sec,
		      const struct raw_entry *e, uint16_t default_port,
		      bool files, struct addr_list *l)
{
	const char *s = e->value;
	if (!s[strspn(s, " \t")])
		return config__fail(p, -EINVAL, e->line, sec->label, e->key,
				    "empty list");
	for (;;) {
		size_t flen = strcspn(s, ","), i = 0;
		unsigned tokens = 0;
		while ((i += strspn(s + i, " \t")) < flen) {
			size_t tlen = strcspn(s + i, " \t,");
			char tok[256];
			if (tlen >= sizeof(tok))
				return config__fail(p, -EINVAL, e->line,
						    sec->label, e->key,
						    "entry '%.40s...' is too long",
						    s + i);
			memcpy(tok, s + i, tlen);
			tok[tlen] = '\0';
			size_t at = (size_t)(s + i - e->value);
			i += tlen;
			tokens++;
			int rc = load_addr(p, sec, e, tok, at, default_port, files, l);
			if (rc)
				return rc;
		}
		if (!tokens)
			return config__fail(p, -EINVAL, e->line, sec->label, e->key,
					    "empty entry in the list");
		if (!s[flen])
			return 0;
		s += flen + 1;
	}
}

/* A duration that must not be zero. */
static int parse_timeout(const char *text, uint64_t *ms, char *why, size_t len)
{
	int rc = config_parse_duration(text, ms, why, len);
	if (rc == 0 && *ms == 0) {
		snprintf(why, len, "'%s': a timeout must be greater than 0", text);
		rc = -EINVAL;
	}
	return rc;
}

static int service_value(struct parse *p, const struct raw_section *sec,
			 struct raw_entry *e, struct config_service *svc)
{
	static const uint16_t upstream_port[] = {
		[CONFIG_PROTO_DNS] = 53, [CONFIG_PROTO_KERBEROS] = 88,
		[CONFIG_PROTO_LDAP] = 389,
	};
	const char *k = e->key;
	char why[256] = "";
	int rc = 0;
	bool dns_only = !strcmp(k, "hosts") || !strcmp(k, "dns_0x20");
	bool ldap_only = !strcmp(k, "tls_cert") || !strcmp(k, "tls_key");
	if ((dns_only && svc->protocol != CONFIG_PROTO_DNS) ||
	    (ldap_only && svc->protocol != CONFIG_PROTO_LDAP))
		return config__fail(p, -EINVAL, e->line, sec->label, k,
				    "only valid for protocol %s (this service is %s)",
				    dns_only ? "dns" : "ldap",
				    config_protocol_name(svc->protocol));
	if (!strcmp(k, "listen") || !strcmp(k, "upstream")) {
		/* Pass 1 refused a key given twice: both lists start empty.
		 * The config owns what was read, also on failure. */
		struct addr_list l = { 0 };
		if (!strcmp(k, "listen")) {
			rc = load_addrs(p, sec, e, 0, false, &l);
			svc->listen = l.addr;
			svc->nlisten = l.n;
			svc->listen_line = e->line;
		} else {
			rc = load_addrs(p, sec, e, upstream_port[svc->protocol],
					svc->protocol == CONFIG_PROTO_DNS, &l);
			svc->upstream = l.addr;
			svc->nupstream = l.n;
			svc->upstream_line = e->line;
			if (rc == 0)
				rc = config__finish_upstreams(p, sec->label, e, svc,
							      l.from);
		}
		free(l.from);
		return rc;
	} else if (!strcmp(k, "new_connection_timeout")) {
		rc = parse_timeout(e->value, &svc->new_connection_timeout_ms, why,
				   sizeof(why));
	} else if (!strcmp(k, "idle_timeout")) {
		rc = parse_timeout(e->value, &svc->idle_timeout_ms, why, sizeof(why));
	} else if (!strcmp(k, "upstream_timeout")) {
		rc = parse_timeout(e->value, &svc->upstream_timeout_ms, why,
				   sizeof(why));
		if (rc == 0 && svc->upstream_timeout_ms > CONFIG_UPSTREAM_TIMEOUT_MAX_MS) {
			rc = -EINVAL;
			snprintf(why, sizeof(why), "'%s' is too long: at most %us (the "
				 "clients have given up long before, and the next "
				 "upstream would wait as long)", e->value,
				 CONFIG_UPSTREAM_TIMEOUT_MAX_MS / 1000);
		}
	} else if (!strcmp(k, "reset_on_timeout")) {
		rc = config_parse_bool(e->value, &svc->reset_on_timeout, why,
				       sizeof(why));
	} else if (!strcmp(k, "dns_0x20")) {
		rc = config_parse_bool(e->value, &svc->dns_0x20, why, sizeof(why));
	} else if (!strcmp(k, "blocked_source_ports")) {
		portset_clear(&svc->blocked_source_ports);
		rc = portset_parse(&svc->blocked_source_ports, e->value, why,
				   sizeof(why));
	} else if (!strcmp(k, "max_sessions")) {
		rc = config__parse_number(e->value, 1, 1000000, &svc->max_sessions, why,
					  sizeof(why));
	} else if (dns_only || ldap_only) {
		char **path = !strcmp(k, "hosts") ? &svc->hosts :
			      !strcmp(k, "tls_cert") ? &svc->tls_cert : &svc->tls_key;
		if (!*e->value)
			return config__fail(p, -EINVAL, e->line, sec->label, k,
					    "empty path");
		*path = e->value;
		e->value = NULL;
		if (path == &svc->hosts)
			svc->hosts_line = e->line;
	}
	if (rc)
		return config__fail(p, -EINVAL, e->line, sec->label, k, "%s", why);
	return 0;
}

static int load_service(struct parse *p, const struct raw_section *sec,
			struct config_service *svc)
{
	static const char *const names[] = {
		[CONFIG_PROTO_DNS] = "dns", [CONFIG_PROTO_KERBEROS] = "kerberos",
		[CONFIG_PROTO_LDAP] = "ldap",
	};
	/* Source ports that let a reply loop between two services. */
	static const char *const blocked_default[] = {
		[CONFIG_PROTO_DNS] = "0, 7, 13, 19, 37, 464",
		[CONFIG_PROTO_KERBEROS] = "88, 464",
		[CONFIG_PROTO_LDAP] = "",
	};
	*svc = (struct config_service){
		.line = sec->line,
		.new_connection_timeout_ms = 10000,
		.idle_timeout_ms = 120000,
		.upstream_timeout_ms = 2000,
		.max_sessions = 10000,
	};
	memcpy(svc->name, sec->name, sizeof(svc->name));
	const struct raw_entry *proto = find_entry(sec, "protocol");
	if (!proto)
		return config__fail(p, -EINVAL, sec->line, sec->label, "protocol",
				    "missing (dns, kerberos or ldap)");
	for (enum config_protocol i = CONFIG_PROTO_DNS; i <= CONFIG_PROTO_LDAP; i++)
		if (strcmp(proto->value, names[i]) == 0)
			svc->protocol = i;
	if (!svc->protocol)
		return config__fail(p, -EINVAL, proto->line, sec->label, "protocol",
				    "'%s' is not a protocol (dns, kerberos or ldap)",
				    proto->value);
	char why[128];
	if (portset_parse(&svc->blocked_source_ports,
			  blocked_default[svc->protocol], why, sizeof(why)) != 0)
		return config__fail(p, -EINVAL, sec->line, sec->label,
				    "blocked_source_ports", "built-in default: %s", why);

	for (size_t i = 0; i < sec->n; i++) {
		if (&sec->entries[i] == proto)
			continue;
		int rc = service_value(p, sec, &sec->entries[i], svc);
		if (rc)
			return rc;
	}

	if (!svc->nlisten)
		return config__fail(p, -EINVAL, sec->line, sec->label, "listen",
				    "missing (one or more ADDRESS:PORT)");
	if (!svc->upstream_line && !(svc->protocol == CONFIG_PROTO_DNS && svc->hosts))
		return config__fail(p, -EINVAL, sec->line, sec->label,
				    "upstream", "missing%s",
				    svc->protocol == CONFIG_PROTO_DNS ?
				    " (a dns service needs upstream, hosts, or both)" : "");
	if (svc->upstream_line && !svc->nupstream && !svc->hosts)
		return config__fail(p, -EINVAL, svc->upstream_line,
				    sec->label, "upstream",
				    "'%s' lists no nameserver, which is allowed only when hosts is set",
				    find_entry(sec, "upstream")->value);
	if (!svc->tls_cert != !svc->tls_key)
		return config__fail(p, -EINVAL, sec->line, sec->label,
				    svc->tls_cert ? "tls_key" : "tls_cert",
				    "missing: tls_cert and tls_key must be set together");
	return 0;
}

/* Resolve the control socket path; a relative one goes under the runtime
 * directory, which is per user so that berthd needs no root. */
static int resolve_socket(struct parse *p, const char *value, unsigned line,
			  struct config_control *ctl)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	bool relative = value[0] != '/';
	bool under_xdg = relative && xdg && xdg[0] == '/';
	bool root = geteuid() == 0;
	int n;
	if (!*value)
		return config__fail(p, -EINVAL, line, "[control]", "socket",
				    "empty path");
	if (!relative)
		n = snprintf(ctl->socket, sizeof(ctl->socket), "%s", value);
	else if (under_xdg)
		n = snprintf(ctl->socket, sizeof(ctl->socket), "%s/%s", xdg, value);
	else if (root)
		n = snprintf(ctl->socket, sizeof(ctl->socket), "/run/berth/%s", value);
	else
		n = snprintf(ctl->socket, sizeof(ctl->socket), "/tmp/berth-%u/%s",
			     (unsigned)geteuid(), value);
	ctl->line = line;
	ctl->private_dir = relative && !under_xdg && !root;
	if (n < 0 || (size_t)n >= sizeof(ctl->socket))
		return config__fail(p, -EINVAL, line, "[control]", "socket",
				    "'%s' resolves to a path longer than the %zu bytes a socket path may have",
				    value, sizeof(ctl->socket) - 1);
	ctl->root_fallback[0] = '\0';
	if (under_xdg && root) {
		int m = snprintf(ctl->root_fallback, sizeof(ctl->root_fallback),
				 "/run/berth/%s", value);
		/* No berthd can listen on a path too long, and trying the same
		 * path twice would only repeat its error. */
		if (m < 0 || (size_t)m >= sizeof(ctl->root_fallback) ||
		    strcmp(ctl->root_fallback, ctl->socket) == 0)
			ctl->root_fallback[0] = '\0';
	}
	return 0;
}

static int load_section(struct parse *p, struct raw_section *sec,
			struct berth_config *cfg)
{
	struct raw_entry *e = sec->n ? &sec->entries[0] : NULL;
	char why[256];
	switch (sec->kind) {
	case SEC_PORTS:
		return load_ports(sec, cfg);
	case SEC_POOL:
		return load_pool(p, sec, cfg);
	case SEC_SERVICE:
		/* Counted first so that config_free() sees a half-built one. */
		cfg->nservices++;
		return load_service(p, sec, &cfg->services[cfg->nservices - 1]);
	case SEC_CONTROL:
		return e ? resolve_socket(p, e->value, e->line, &cfg->control) : 0;
	case SEC_METRICS:
		if (!e)
			return 0;
		if (config_parse_addr(e->value, 0, &cfg->metrics.listen, why,
				      sizeof(why)) != 0)
			return config__fail(p, -EINVAL, e->line, sec->label,
					    e->key, "%s", why);
		cfg->metrics.enabled = true;
		cfg->metrics.line = e->line;
		return 0;
	}
	return config__fail(p, -EINVAL, sec->line, sec->label, NULL, "unknown section");
}

static int build(struct parse *p, struct berth_config *cfg)
{
	size_t nsvc = 0;
	for (size_t i = 0; i < p->nsec; i++)
		nsvc += p->sec[i].kind == SEC_SERVICE;
	cfg->file = strdup(p->file);
	cfg->services = nsvc ? calloc(nsvc, sizeof(*cfg->services)) : NULL;
	if (!cfg->file || (nsvc && !cfg->services))
		return config__fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
	cfg->ports.file = cfg->file;
	cfg->pool = (struct config_pool){ .size = 2500, .mode = CONFIG_POOL_PREBOUND };
	for (size_t i = 0; i < p->nsec; i++) {
		int rc = load_section(p, &p->sec[i], cfg);
		if (rc)
			return rc;
	}
	if (!cfg->control.socket[0] &&
	    resolve_socket(p, "berth.sock", 0, &cfg->control) != 0)
		return p->rc;
	if (cfg->pool.present)
		cfg->ports.pool_size = cfg->pool.size;
	config_listen_ports(cfg, &cfg->ports.listen);
	return config__check_addrs(p, cfg);
}

/* The one parse path shared by files and text in memory. */
static int load(struct parse *p, struct berth_config *cfg)
{
	*cfg = (struct berth_config){ 0 };
	if (config__read_raw(p) == 0)
		build(p, cfg);
	for (size_t i = 0; i < p->nsec; i++) {
		for (size_t j = 0; j < p->sec[i].n; j++) {
			free(p->sec[i].entries[j].key);
			free(p->sec[i].entries[j].value);
		}
		free(p->sec[i].entries);
	}
	free(p->sec);
	if (p->rc)
		config_free(cfg);
	return p->rc;
}

int config_load(const char *path, struct berth_config *cfg, char *err,
		size_t errlen)
{
	struct parse p = { .file = path, .err = err, .errlen = errlen };
	p.fp = fileio_open_regular(path);
	if (!p.fp) {
		int rc = -errno;
		*cfg = (struct berth_config){ 0 };
		snprintf(err, errlen, "%s: %s", path, fileio_strerror(-rc));
		return rc;
	}
	int rc = load(&p, cfg);
	fclose(p.fp);
	free(p.linebuf);
	return rc;
}

int config_load_text(const char *name, const char *text, size_t len,
		     struct berth_config *cfg, char *err, size_t errlen)
{
	struct parse p = { .file = name, .text = text, .len = len, .err = err,
			   .errlen = errlen };
	return load(&p, cfg);
}

int config_load_default(struct berth_config *cfg, char *err, size_t errlen)
{
	return config_load_text("<built-in>", config_default_text,
				config_default_len, cfg, err, errlen);
}

void config_free(struct berth_config *cfg)
{
	struct plan_setting *settings[] = {
		&cfg->ports.dynamic_range, &cfg->ports.dynamic_start,
		&cfg->ports.dynamic_count, &cfg->ports.max_user_port,
		&cfg->ports.max_user_port_semantics, &cfg->ports.from_kernel,
		&cfg->ports.reserved, &cfg->ports.reserved_catalog,
		&cfg->ports.catalog_dir, &cfg->ports.avoid_in_use,
	};
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		free((void *)settings[i]->value);
	for (size_t i = 0; i < cfg->nservices; i++) {
		struct config_service *svc = &cfg->services[i];
		free(svc->listen);
		free(svc->upstream);
		free(svc->upstream_left_out_file);
		free(svc->hosts);
		free(svc->tls_cert);
		free(svc->tls_key);
	}
	free(cfg->services);
	free(cfg->file);
	*cfg = (struct berth_config){ 0 };
}
