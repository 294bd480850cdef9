/*
 * config_ini: pass 1 of the config loader.  inih, fed by the line reader
 * here, splits the source into sections and raw "key = value" entries; this
 * file catches syntax errors, unknown names and duplicates, and leaves the
 * values for pass 2 (config.c) to interpret.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config_int.h"

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

/* The next raw line (newline included), or false at the end or on error. */
static bool next_line(struct parse *p, const char **line, size_t *len)
{
	if (p->fp) {
		errno = 0;
		ssize_t n = getline(&p->linebuf, &p->linecap, p->fp);
		if (n < 0) {
			if (ferror(p->fp))
				config__fail(p, errno ? -errno : -EIO, 0, NULL, NULL,
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
		return config__fail(p, -EINVAL, p->lineno, NULL, NULL,
				    "section header has no closing ']'");
	size_t rest = close + 1;
	while (rest < len && isspace((unsigned char)s[rest]))
		rest++;
	if (rest < len && s[rest] != ';' && s[rest] != '#')
		return config__fail(p, -EINVAL, p->lineno, NULL, NULL,
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
			return config__fail(p, -EINVAL, p->lineno, title, NULL,
					    "a service section needs a name: [service NAME]");
		if (tlen - n > CONFIG_NAME_MAX)
			return config__fail(p, -EINVAL, p->lineno, title, NULL,
					    "service name longer than %d characters",
					    CONFIG_NAME_MAX);
		sec.kind = SEC_SERVICE;
		memcpy(sec.name, t + n, tlen - n);
		if (!is_name(sec.name))
			return config__fail(p, -EINVAL, p->lineno, title, NULL,
					    "service name '%s' may hold only letters, digits, '-', '_' and '.'",
					    sec.name);
	} else {
		return config__fail(p, -EINVAL, p->lineno, title, NULL,
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
			return config__fail(p, -EINVAL, p->lineno, sec.label, NULL,
					    "duplicate section (first at line %u)",
					    p->sec[i].line);
	struct raw_section *grown = realloc(p->sec, (p->nsec + 1) * sizeof(*grown));
	if (!grown)
		return config__fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
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
	return config__fail(p, -EINVAL, p->lineno, NULL, NULL,
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
		config__fail(p, -EINVAL, p->lineno, NULL, NULL,
			     "line is longer than %d characters", num - 3);
		return NULL;
	}
	if (memchr(line, '\0', len)) {
		config__fail(p, -EINVAL, p->lineno, NULL, NULL,
			     "line contains a NUL byte");
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
		return config__fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
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
		return !config__fail(p, -EINVAL, p->lineno, NULL, name,
				     "key outside any section");
	struct raw_section *sec = &p->sec[p->nsec - 1];
	if (!*name)
		return !config__fail(p, -EINVAL, p->lineno, sec->label, NULL,
				     "missing key name before '='");
	bool known = false;
	for (const char *const *k = section_keys[sec->kind]; *k; k++)
		known = known || strcmp(*k, name) == 0;
	/* No key holds white space: "listen 127.0.0.1:53" was split at its
	 * colon, which the reader takes for '='. */
	if (!known)
		return !config__fail(p, -EINVAL, p->lineno, sec->label, name,
				     strpbrk(name, " \t")
					     ? "unknown key (a key is one word: is the '=' missing?)"
					     : "unknown key");
	for (size_t i = 0; i < sec->n; i++)
		if (strcmp(sec->entries[i].key, name) == 0)
			return !config__fail(p, -EINVAL, p->lineno, sec->label, name,
					     "duplicate key (first set at line %u)",
					     sec->entries[i].line);
	struct raw_entry *grown = realloc(sec->entries, (sec->n + 1) * sizeof(*grown));
	if (grown)
		sec->entries = grown;
	char *k = strdup(name), *v = strdup(value);
	if (!grown || !k || !v) {
		free(k);
		free(v);
		return !config__fail(p, -ENOMEM, p->lineno, NULL, NULL, "out of memory");
	}
	sec->entries[sec->n++] = (struct raw_entry){ .key = k, .value = v,
						     .line = p->lineno };
	p->have_prev = true;
	return 1;
}

int config__read_raw(struct parse *p)
{
	int rc = ini_parse_stream(ini_read, p, ini_handle, p);
	if (rc != 0 && (!p->rc || (rc > 0 && (unsigned)rc < p->err_line))) {
		/* inih found an error the reader did not anticipate. */
		p->rc = 0;
		if (rc > 0)
			config__fail(p, -EINVAL, (unsigned)rc, NULL, NULL,
				     "syntax error");
		else
			config__fail(p, -ENOMEM, 0, NULL, NULL, "out of memory");
	}
	return p->rc;
}
