/* config: berth.conf loader; see config.h and berth.conf(5). */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "berth/fileio.h"

_Static_assert(CONFIG_SOCKET_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
	       "CONFIG_SOCKET_PATH_MAX must match sun_path");

enum section_kind { SEC_PORTS, SEC_POOL, SEC_SERVICE, SEC_CONTROL, SEC_METRICS };

/*
 * Loading runs in two passes.  The first (inih plus the reader and handler
 * below) only collects sections and raw "key = value" entries, catching
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

static const char *const section_keys[][14] = {
	[SEC_PORTS] = { "dynamic_range", "dynamic_start", "dynamic_count",
			"max_user_port", "max_user_port_semantics",
			"from_kernel", "reserved", "reserved_catalog",
			"catalog_dir", "avoid_in_use", NULL },
	[SEC_POOL] = { "size", "mode", "rotate", NULL },
	[SEC_SERVICE] = { "protocol", "listen", "upstream",
			  "new_connection_timeout", "idle_timeout",
			  "upstream_timeout", "reset_on_timeout", "hosts",
			  "dns_0x20", "blocked_source_ports", "max_sessions",
			  "tls_cert", "tls_key", NULL },
	[SEC_CONTROL] = { "socket", NULL },
	[SEC_METRICS] = { "listen", NULL },
};

/* Record the first error as "FILE:LINE: LABEL KEY: reason" (line, label and
 * key are left out when 0/NULL) and return the error code to propagate. */
__attribute__((format(printf, 6, 7)))
static int fail(struct parse *p, int rc, unsigned line, const char *label,
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

/* ---- pass 1: lines, sections and raw entries ---------------------------- */

/* The next raw line (newline included), or false at the end or on error. */
static bool next_line(struct parse *p, const char **line, size_t *len)
{
	if (p->fp) {
		errno = 0;
		ssize_t n = getline(&p->linebuf, &p->linecap, p->fp);
		if (n < 0) {
			if (ferror(p->fp))
				fail(p, errno ? -errno : -EIO, 0, NULL, NULL,
				     "read error: %s", strerror(errno ? errno : EIO));
			return false;
		}
		*line = p->linebuf;
		*len = (size_t)n;
		return true;
	}
	if (p->pos >= p->len)
		return false;
	const char *s = p->text + p->pos;
	const char *nl = memchr(s, '\n', p->len - p->pos);
	*line = s;
	*len = nl ? (size_t)(nl - s) + 1 : p->len - p->pos;
	p->pos += *len;
	return true;
}

static bool is_name(const char *s)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

/* inih treats ';' as a comment only after white space. */
static bool comment_at(const char *s, size_t i)
{
	return s[i] == ';' && i > 0 && isspace((unsigned char)s[i - 1]);
}

/* A section header; s..s+len is the text after '['. */
static int section_begin(struct parse *p, const char *s, size_t len)
{
	size_t close = 0;
	while (close < len && s[close] != ']' && !comment_at(s, close))
		close++;
	if (close == len || s[close] != ']')
		return fail(p, -EINVAL, p->lineno, NULL, NULL,
			    "section header has no closing ']'");
	size_t rest = close + 1;
	while (rest < len && isspace((unsigned char)s[rest]))
		rest++;
	if (rest < len && s[rest] != ';' && s[rest] != '#')
		return fail(p, -EINVAL, p->lineno, NULL, NULL,
			    "unexpected text after ']'");

	size_t a = 0, b = close;
	while (a < b && isspace((unsigned char)s[a]))
		a++;
	while (b > a && isspace((unsigned char)s[b - 1]))
		b--;
	struct raw_section sec = { .line = p->lineno };
	char title[256];
	snprintf(title, sizeof(title), "[%.*s]", (int)(b - a), s + a);
	const char *t = s + a;
	size_t tlen = b - a;
	if (tlen == 5 && memcmp(t, "ports", 5) == 0) {
		sec.kind = SEC_PORTS;
	} else if (tlen == 4 && memcmp(t, "pool", 4) == 0) {
		sec.kind = SEC_POOL;
	} else if (tlen == 7 && memcmp(t, "control", 7) == 0) {
		sec.kind = SEC_CONTROL;
	} else if (tlen == 7 && memcmp(t, "metrics", 7) == 0) {
		sec.kind = SEC_METRICS;
	} else if (tlen >= 7 && memcmp(t, "service", 7) == 0 &&
		   (tlen == 7 || isspace((unsigned char)t[7]))) {
		size_t n = 7;
		while (n < tlen && isspace((unsigned char)t[n]))
			n++;
		if (n == tlen)
			return fail(p, -EINVAL, p->lineno, title, NULL,
				    "a service section needs a name: [service NAME]");
		if (tlen - n > CONFIG_NAME_MAX)
			return fail(p, -EINVAL, p->lineno, title, NULL,
				    "service name longer than %d characters",
				    CONFIG_NAME_MAX);
		sec.kind = SEC_SERVICE;
		memcpy(sec.name, t + n, tlen - n);
		if (!is_name(sec.name))
			return fail(p, -EINVAL, p->lineno, title, NULL,
				    "service name '%s' may hold only letters, digits, '-', '_' and '.'",
				    sec.name);
	} else {
		return fail(p, -EINVAL, p->lineno, title, NULL,
			    "unknown section (known: ports, pool, service NAME, control, metrics)");
	}
	static const char *const labels[] = {
		[SEC_PORTS] = "[ports]", [SEC_POOL] = "[pool]",
		[SEC_CONTROL] = "[control]", [SEC_METRICS] = "[metrics]",
	};
	if (sec.kind == SEC_SERVICE)
		snprintf(sec.label, sizeof(sec.label), "[service %s]", sec.name);
	else
		snprintf(sec.label, sizeof(sec.label), "%s", labels[sec.kind]);

	for (size_t i = 0; i < p->nsec; i++)
		if (p->sec[i].kind == sec.kind && strcmp(p->sec[i].name, sec.name) == 0)
			return fail(p, -EINVAL, p->lineno, sec.label, NULL,
				    "duplicate section (first at line %u)",
				    p->sec[i].line);
	struct raw_section *grown = realloc(p->sec, (p->nsec + 1) * sizeof(*grown));
	if (!grown)
		return fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
	p->sec = grown;
	p->sec[p->nsec++] = sec;
	p->have_prev = false;
	return 0;
}

/*
 * Sort one line the way inih will, so that sections (which inih does not
 * report when they are empty) and continuation lines (which inih reports
 * under a name truncated to 50 bytes) are tracked here with full names.
 */
static int classify(struct parse *p, const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && isspace((unsigned char)line[i]))
		i++;
	p->continuation = false;
	if (i == len || line[i] == ';' || line[i] == '#')
		return 0;
	if (i > 0 && p->have_prev) {
		p->continuation = true;
		return 0;
	}
	if (line[i] == '[')
		return section_begin(p, line + i + 1, len - i - 1);
	for (size_t j = i; j < len && !comment_at(line, j); j++)
		if (line[j] == '=' || line[j] == ':')
			return 0;
	return fail(p, -EINVAL, p->lineno, NULL, NULL,
		    "expected '[section]' or 'key = value'");
}

/* inih's fgets-like reader: one line per call, counted, checked. */
static char *ini_read(char *str, int num, void *stream)
{
	struct parse *p = stream;
	const char *line;
	size_t len;
	if (p->rc || !next_line(p, &line, &len))
		return NULL;
	p->lineno++;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (p->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		line += 3;
		len -= 3;
	}
	/* inih needs room for "\r\n\0"; a longer line would be cut silently. */
	if (num < 4 || len > (size_t)num - 3) {
		fail(p, -EINVAL, p->lineno, NULL, NULL,
		     "line is longer than %d characters", num - 3);
		return NULL;
	}
	if (memchr(line, '\0', len)) {
		fail(p, -EINVAL, p->lineno, NULL, NULL, "line contains a NUL byte");
		return NULL;
	}
	memcpy(str, line, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return classify(p, line, len) < 0 ? NULL : str;
}

/* An indented line: append it, minus any inline comment, with one space. */
static int append_continuation(struct parse *p, const char *value)
{
	struct raw_section *sec = &p->sec[p->nsec - 1];
	struct raw_entry *e = &sec->entries[sec->n - 1];
	size_t n = 0;
	while (value[n] && !comment_at(value, n))
		n++;
	while (n > 0 && isspace((unsigned char)value[n - 1]))
		n--;
	if (n == 0)
		return 0;
	size_t old = strlen(e->value);
	char *v = realloc(e->value, old + n + 2);
	if (!v)
		return fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
	if (old)
		v[old++] = ' ';
	memcpy(v + old, value, n);
	v[old + n] = '\0';
	e->value = v;
	return 0;
}

static int ini_handle(void *user, const char *section, const char *name,
		      const char *value)
{
	struct parse *p = user;
	(void)section; /* sections are tracked by the reader (classify) */
	if (p->rc)
		return 0;
	if (p->continuation)
		return append_continuation(p, value) == 0;
	if (p->nsec == 0)
		return !fail(p, -EINVAL, p->lineno, NULL, name,
			     "key outside any section");
	struct raw_section *sec = &p->sec[p->nsec - 1];
	if (!*name)
		return !fail(p, -EINVAL, p->lineno, sec->label, NULL,
			     "missing key name before '='");
	bool known = false;
	for (const char *const *k = section_keys[sec->kind]; *k; k++)
		known = known || strcmp(*k, name) == 0;
	if (!known)
		return !fail(p, -EINVAL, p->lineno, sec->label, name, "unknown key");
	for (size_t i = 0; i < sec->n; i++)
		if (strcmp(sec->entries[i].key, name) == 0)
			return !fail(p, -EINVAL, p->lineno, sec->label, name,
				     "duplicate key (first set at line %u)",
				     sec->entries[i].line);
	struct raw_entry *grown = realloc(sec->entries, (sec->n + 1) * sizeof(*grown));
	if (grown)
		sec->entries = grown;
	char *k = strdup(name), *v = strdup(value);
	if (!grown || !k || !v) {
		free(k);
		free(v);
		return !fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
	}
	sec->entries[sec->n++] = (struct raw_entry){ .key = k, .value = v,
						     .line = p->lineno };
	p->have_prev = true;
	return 1;
}

/* ---- value parsers ------------------------------------------------------- */

int config_parse_duration(const char *text, uint64_t *ms, char *err, size_t errlen)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 },
	};
	if (!*text) {
		snprintf(err, errlen, "empty duration");
		return -EINVAL;
	}
	const char *s = text;
	uint64_t n = 0;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			goto range;
		n = n * 10 + d;
	}
	for (size_t i = 0; s != text && i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / units[i].ms)
			goto range;
		*ms = n * units[i].ms;
		return 0;
	}
	snprintf(err, errlen, "'%s' is not a duration (examples: 250ms, 10s, 2m, 1h)",
		 text);
	return -EINVAL;
range:
	snprintf(err, errlen, "'%s' is too large a duration", text);
	return -ERANGE;
}

int config_parse_bool(const char *text, bool *out, char *err, size_t errlen)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
			*out = strcasecmp(text, yes[i]) == 0;
			return 0;
		}
	}
	snprintf(err, errlen, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
		 text);
	return -EINVAL;
}

/* An unsigned decimal number min..max: digits only, no sign or spaces. */
static int parse_number(const char *text, uint32_t min, uint32_t max,
			uint32_t *out, char *err, size_t errlen)
{
	size_t digits = strspn(text, "0123456789");
	if (digits == 0 || text[digits]) {
		snprintf(err, errlen, "'%s' is not a number", text);
		return -EINVAL;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < digits && n <= max; i++)
		n = n * 10 + (unsigned)(text[i] - '0');
	if (n < min || n > max) {
		snprintf(err, errlen, "'%s' is out of range %u..%u", text, min, max);
		return -ERANGE;
	}
	*out = (uint32_t)n;
	return 0;
}

/* A numeric IPv4 or IPv6 address (with an optional %scope) and a port. */
static int parse_host(const char *host, uint16_t port, struct config_addr *out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		*out = (struct config_addr){ .len = sizeof(sin) };
		memcpy(&out->sa, &sin, sizeof(sin));
		return 0;
	}
	char addr[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	if (snprintf(addr, sizeof(addr), "%s", host) >= (int)sizeof(addr))
		return -EINVAL;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	char *scope = strchr(addr, '%');
	if (scope) {
		*scope++ = '\0';
		uint32_t id;
		char why[8];
		if (parse_number(scope, 1, UINT32_MAX, &id, why, sizeof(why)) != 0 &&
		    (id = if_nametoindex(scope)) == 0)
			return -EINVAL;
		sin6.sin6_scope_id = id;
	}
	if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) != 1)
		return -EINVAL;
	*out = (struct config_addr){ .len = sizeof(sin6) };
	memcpy(&out->sa, &sin6, sizeof(sin6));
	return 0;
}

int config_parse_addr(const char *text, uint16_t default_port,
		      struct config_addr *out, char *err, size_t errlen)
{
	const char *host = text, *port = NULL;
	size_t hlen = strlen(text);
	const char *colon = strchr(text, ':');
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || (close[1] && close[1] != ':')) {
			snprintf(err, errlen, "'%s' is not an address ([IPv6]:PORT expected)",
				 text);
			return -EINVAL;
		}
		host = text + 1;
		hlen = (size_t)(close - host);
		port = close[1] ? close + 2 : NULL;
	} else if (colon && !strchr(colon + 1, ':')) {
		hlen = (size_t)(colon - text);
		port = colon + 1;
	}
	uint32_t portnum = default_port;
	char hostbuf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], why[64];
	if (port && parse_number(port, 1, 65535, &portnum, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "'%s': bad port: %s", text, why);
		return -EINVAL;
	}
	if (portnum == 0) {
		snprintf(err, errlen, "'%s' has no port (write ADDRESS:PORT)", text);
		return -EINVAL;
	}
	if (hlen == 0 || hlen >= sizeof(hostbuf)) {
		snprintf(err, errlen, "'%s' is not a numeric IP address", text);
		return -EINVAL;
	}
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';
	if (parse_host(hostbuf, (uint16_t)portnum, out) != 0) {
		snprintf(err, errlen, "'%s' is not a numeric IP address", text);
		return -EINVAL;
	}
	return 0;
}

int config_format_addr(const struct config_addr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (addr->sa.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		return snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	}
	if (addr->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		if (sin6->sin6_scope_id)
			return snprintf(buf, len, "[%s%%%u]:%u", host,
					(unsigned)sin6->sin6_scope_id,
					ntohs(sin6->sin6_port));
		return snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	}
	return -1;
}

const char *config_protocol_name(enum config_protocol protocol)
{
	switch (protocol) {
	case CONFIG_PROTO_DNS: return "dns";
	case CONFIG_PROTO_KERBEROS: return "kerberos";
	case CONFIG_PROTO_LDAP: return "ldap";
	}
	return "?";
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
			rc = parse_number(e->value, 1, 65535, &cfg->pool.size, why,
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
		}
		if (rc)
			return fail(p, -EINVAL, e->line, sec->label, e->key, "%s", why);
	}
	return 0;
}

static int push_addr(struct config_addr **arr, size_t *n, const struct config_addr *a)
{
	struct config_addr *grown = realloc(*arr, (*n + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	grown[(*n)++] = *a;
	*arr = grown;
	return 0;
}

/* Append the nameservers of a resolv.conf-format file, on port 53. */
static int read_resolv(struct parse *p, const struct raw_section *sec,
		       const struct raw_entry *e, const char *path,
		       struct config_addr **arr, size_t *n)
{
	FILE *f = fileio_open_regular(path);
	if (!f) {
		int rc = -errno;
		return fail(p, rc, e->line, sec->label, e->key, "%s: %s", path,
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
		if (parse_host(s, 53, &a) != 0)
			rc = fail(p, -EINVAL, e->line, sec->label, e->key,
				  "%s:%u: nameserver '%s' is not a numeric IP address",
				  path, lineno, s);
		else if (push_addr(arr, n, &a) != 0)
			rc = fail(p, -ENOMEM, e->line, NULL, NULL, "out of memory");
	}
	if (rc == 0 && ferror(f))
		rc = fail(p, -EIO, e->line, sec->label, e->key, "%s: read error", path);
	free(line);
	fclose(f);
	return rc;
}

/* One list entry: an address, or with files set a resolv.conf path. */
static int load_addr(struct parse *p, const struct raw_section *sec,
		     const struct raw_entry *e, const char *tok,
		     uint16_t default_port, bool files, struct config_addr **arr,
		     size_t *n)
{
	if (tok[0] == '/' && files)
		return read_resolv(p, sec, e, tok, arr, n);
	if (tok[0] == '/')
		return fail(p, -EINVAL, e->line, sec->label, e->key,
			    "'%s' is not an address (only a dns upstream may name a resolv.conf file)",
			    tok);
	struct config_addr a;
	char why[256];
	if (config_parse_addr(tok, default_port, &a, why, sizeof(why)) != 0)
		return fail(p, -EINVAL, e->line, sec->label, e->key, "%s", why);
	if (push_addr(arr, n, &a) != 0)
		return fail(p, -ENOMEM, e->line, NULL, NULL, "out of memory");
	return 0;
}

/* A list of addresses separated by commas and/or white space. */
static int load_addrs(struct parse *p, const struct raw_section *sec,
		      const struct raw_entry *e, uint16_t default_port,
		      bool files, struct config_addr **arr, size_t *n)
{
	const char *s = e->value;
	if (!s[strspn(s, " \t")])
		return fail(p, -EINVAL, e->line, sec->label, e->key, "empty list");
	for (;;) {
		size_t flen = strcspn(s, ","), i = 0;
		unsigned tokens = 0;
		while ((i += strspn(s + i, " \t")) < flen) {
			size_t tlen = strcspn(s + i, " \t,");
			char tok[256];
			if (tlen >= sizeof(tok))
				return fail(p, -EINVAL, e->line, sec->label, e->key,
					    "entry '%.40s...' is too long", s + i);
			memcpy(tok, s + i, tlen);
			tok[tlen] = '\0';
			i += tlen;
			tokens++;
			int rc = load_addr(p, sec, e, tok, default_port, files, arr, n);
			if (rc)
				return rc;
		}
		if (!tokens)
			return fail(p, -EINVAL, e->line, sec->label, e->key,
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
		return fail(p, -EINVAL, e->line, sec->label, k,
			    "only valid for protocol %s (this service is %s)",
			    dns_only ? "dns" : "ldap",
			    config_protocol_name(svc->protocol));
	if (!strcmp(k, "listen")) {
		svc->listen_line = e->line;
		return load_addrs(p, sec, e, 0, false, &svc->listen, &svc->nlisten);
	} else if (!strcmp(k, "upstream")) {
		svc->upstream_line = e->line;
		return load_addrs(p, sec, e, upstream_port[svc->protocol],
				  svc->protocol == CONFIG_PROTO_DNS, &svc->upstream,
				  &svc->nupstream);
	} else if (!strcmp(k, "new_connection_timeout")) {
		rc = parse_timeout(e->value, &svc->new_connection_timeout_ms, why,
				   sizeof(why));
	} else if (!strcmp(k, "idle_timeout")) {
		rc = parse_timeout(e->value, &svc->idle_timeout_ms, why, sizeof(why));
	} else if (!strcmp(k, "upstream_timeout")) {
		rc = parse_timeout(e->value, &svc->upstream_timeout_ms, why,
				   sizeof(why));
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
		rc = parse_number(e->value, 1, 1000000, &svc->max_sessions, why,
				  sizeof(why));
	} else if (dns_only || ldap_only) {
		char **path = !strcmp(k, "hosts") ? &svc->hosts :
			      !strcmp(k, "tls_cert") ? &svc->tls_cert : &svc->tls_key;
		if (!*e->value)
			return fail(p, -EINVAL, e->line, sec->label, k, "empty path");
		*path = e->value;
		e->value = NULL;
	}
	if (rc)
		return fail(p, -EINVAL, e->line, sec->label, k, "%s", why);
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
		return fail(p, -EINVAL, sec->line, sec->label, "protocol",
			    "missing (dns, kerberos or ldap)");
	for (enum config_protocol i = CONFIG_PROTO_DNS; i <= CONFIG_PROTO_LDAP; i++)
		if (strcmp(proto->value, names[i]) == 0)
			svc->protocol = i;
	if (!svc->protocol)
		return fail(p, -EINVAL, proto->line, sec->label, "protocol",
			    "'%s' is not a protocol (dns, kerberos or ldap)",
			    proto->value);
	char why[128];
	if (portset_parse(&svc->blocked_source_ports,
			  blocked_default[svc->protocol], why, sizeof(why)) != 0)
		return fail(p, -EINVAL, sec->line, sec->label,
			    "blocked_source_ports", "built-in default: %s", why);

	for (size_t i = 0; i < sec->n; i++) {
		if (&sec->entries[i] == proto)
			continue;
		int rc = service_value(p, sec, &sec->entries[i], svc);
		if (rc)
			return rc;
	}

	if (!svc->nlisten)
		return fail(p, -EINVAL, sec->line, sec->label, "listen",
			    "missing (one or more ADDRESS:PORT)");
	if (!svc->upstream_line && !(svc->protocol == CONFIG_PROTO_DNS && svc->hosts))
		return fail(p, -EINVAL, sec->line, sec->label, "upstream", "missing%s",
			    svc->protocol == CONFIG_PROTO_DNS ?
			    " (a dns service needs upstream, hosts, or both)" : "");
	if (svc->upstream_line && !svc->nupstream && !svc->hosts)
		return fail(p, -EINVAL, svc->upstream_line, sec->label, "upstream",
			    "'%s' lists no nameserver, which is allowed only when hosts is set",
			    find_entry(sec, "upstream")->value);
	if (!svc->tls_cert != !svc->tls_key)
		return fail(p, -EINVAL, sec->line, sec->label,
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
	int n;
	if (!*value)
		return fail(p, -EINVAL, line, "[control]", "socket", "empty path");
	if (value[0] == '/')
		n = snprintf(ctl->socket, sizeof(ctl->socket), "%s", value);
	else if (xdg && xdg[0] == '/')
		n = snprintf(ctl->socket, sizeof(ctl->socket), "%s/%s", xdg, value);
	else if (geteuid() == 0)
		n = snprintf(ctl->socket, sizeof(ctl->socket), "/run/berth/%s", value);
	else
		n = snprintf(ctl->socket, sizeof(ctl->socket), "/tmp/berth-%u/%s",
			     (unsigned)geteuid(), value);
	ctl->line = line;
	if (n < 0 || (size_t)n >= sizeof(ctl->socket))
		return fail(p, -EINVAL, line, "[control]", "socket",
			    "'%s' resolves to a path longer than the %zu bytes a socket path may have",
			    value, sizeof(ctl->socket) - 1);
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
			return fail(p, -EINVAL, e->line, sec->label, e->key, "%s", why);
		cfg->metrics.enabled = true;
		cfg->metrics.line = e->line;
		return 0;
	}
	return fail(p, -EINVAL, sec->line, sec->label, NULL, "unknown section");
}

static int build(struct parse *p, struct berth_config *cfg)
{
	size_t nsvc = 0;
	for (size_t i = 0; i < p->nsec; i++)
		nsvc += p->sec[i].kind == SEC_SERVICE;
	cfg->file = strdup(p->file);
	cfg->services = nsvc ? calloc(nsvc, sizeof(*cfg->services)) : NULL;
	if (!cfg->file || (nsvc && !cfg->services))
		return fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
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
	return 0;
}

/* The one parse path shared by files and text in memory. */
static int load(struct parse *p, struct berth_config *cfg)
{
	*cfg = (struct berth_config){ 0 };
	int rc = ini_parse_stream(ini_read, p, ini_handle, p);
	if (rc != 0 && (!p->rc || (rc > 0 && (unsigned)rc < p->err_line))) {
		/* inih found an error the reader did not anticipate. */
		p->rc = 0;
		if (rc > 0)
			fail(p, -EINVAL, (unsigned)rc, NULL, NULL, "syntax error");
		else
			fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
	}
	if (!p->rc)
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
		free(svc->hosts);
		free(svc->tls_cert);
		free(svc->tls_key);
	}
	free(cfg->services);
	free(cfg->file);
	*cfg = (struct berth_config){ 0 };
}
