/* catalog: NAME.ports service port lists; see include/berth/catalog.h and
 * data/catalog/README for the file format. */
#include "berth/catalog.h"
#include "berth/fileio.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool catalog_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) > CATALOG_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}

void catalog_free(struct catalog *cat)
{
	if (!cat)
		return;
	free(cat->path);
	free(cat->entries);
	free(cat);
}

/* Parse 1..5 decimal digits at s[0..len) into *port; false when that is not
 * a port number 0..65535. */
static bool parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;
	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535ul)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* Parse the RANGE field tok[0..len) into e->lo..e->hi, or explain why not. */
static int parse_range(const char *tok, size_t len, struct catalog_entry *e,
		       char *why, size_t whylen)
{
	const char *dash = memchr(tok, '-', len);
	int n = (int)(len > 40 ? 40 : len); /* what we quote back */

	if (!dash) {
		if (!parse_port(tok, len, &e->lo)) {
			snprintf(why, whylen,
				 "'%.*s' is not a port 0-65535 or a range LO-HI", n, tok);
			return -EINVAL;
		}
		e->hi = e->lo;
		return 0;
	}
	size_t lo_len = (size_t)(dash - tok);
	if (!parse_port(tok, lo_len, &e->lo) ||
	    !parse_port(dash + 1, len - lo_len - 1, &e->hi)) {
		snprintf(why, whylen,
			 "'%.*s' is not a port 0-65535 or a range LO-HI", n, tok);
		return -EINVAL;
	}
	if (e->lo > e->hi) {
		snprintf(why, whylen, "inverted range %.*s (start above end)", n, tok);
		return -EINVAL;
	}
	return 0;
}

static bool is_service_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

/*
 * Parse one line (comment already cut off, trailing white space removed,
 * not blank) into e.  Returns 0, or -EINVAL with the reason in why.
 */
static int parse_line(char *s, struct catalog_entry *e, char *why,
		      size_t whylen)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t len = strcspn(s, " \t");
	if (parse_range(s, len, e, why, whylen) < 0)
		return -EINVAL;
	s += len;
	while (*s == ' ' || *s == '\t')
		s++;
	len = strcspn(s, " \t");
	if (len == 0) {
		snprintf(why, whylen, "missing service name after the range");
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (!is_service_char(s[i])) {
			snprintf(why, whylen,
				 "bad character '%c' in service name (use letters, digits, '.', '_', '-')",
				 s[i]);
			return -EINVAL;
		}
	}
	if (len > CATALOG_SERVICE_MAX) {
		snprintf(why, whylen, "service name longer than %d characters",
			 CATALOG_SERVICE_MAX);
		return -EINVAL;
	}
	memcpy(e->service, s, len);
	e->service[len] = '\0';
	s += len;
	while (*s == ' ' || *s == '\t')
		s++;
	if (strlen(s) > CATALOG_DESC_MAX) {
		snprintf(why, whylen, "description longer than %d characters",
			 CATALOG_DESC_MAX);
		return -EINVAL;
	}
	snprintf(e->description, sizeof(e->description), "%s", s);
	return 0;
}

/* Cut a line at its comment and strip trailing white space (and CR/LF).
 * Returns true when anything but white space is left. */
static bool trim_line(char *s)
{
	s[strcspn(s, "#")] = '\0';
	size_t len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		s[--len] = '\0';
	return s[strspn(s, " \t")] != '\0';
}

/* The earlier entry that shares a port with e, or NULL. */
static const struct catalog_entry *find_overlap(const struct catalog *cat,
						const struct catalog_entry *e)
{
	for (size_t i = 0; i < cat->n; i++)
		if (cat->entries[i].lo <= e->hi && e->lo <= cat->entries[i].hi)
			return &cat->entries[i];
	return NULL;
}

/* Append e to cat's entries; -ENOMEM when that cannot grow. */
static int push_entry(struct catalog *cat, size_t *cap,
		      const struct catalog_entry *e)
{
	if (cat->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct catalog_entry *grown =
			realloc(cat->entries, ncap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		cat->entries = grown;
		*cap = ncap;
	}
	cat->entries[cat->n++] = *e;
	return 0;
}

struct catalog *catalog_read(const char *name, const char *path, char *err,
			     size_t errlen)
{
	struct catalog *cat = calloc(1, sizeof(*cat));
	FILE *f = NULL;
	char *buf = NULL;
	size_t bufcap = 0, cap = 0;
	unsigned line = 0;
	char why[160];

	if (!cat || !(cat->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(cat->name, sizeof(cat->name), "%s", name);
	if (!(f = fileio_open_regular(path))) {
		snprintf(err, errlen, "cannot read catalog %s: %s", path,
			 fileio_strerror(errno));
		goto fail;
	}
	while (getline(&buf, &bufcap, f) >= 0) {
		struct catalog_entry e = { .line = ++line };
		const struct catalog_entry *prev;
		if (!trim_line(buf))
			continue;
		if (parse_line(buf, &e, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, line, why);
			goto fail;
		}
		if ((prev = find_overlap(cat, &e))) {
			snprintf(err, errlen,
				 "%s:%u: ports %u-%u overlap line %u (%u-%u %s)",
				 path, line, e.lo, e.hi, prev->line, prev->lo,
				 prev->hi, prev->service);
			goto fail;
		}
		if (push_entry(cat, &cap, &e) < 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read catalog %s: %s", path,
			 strerror(errno));
		goto fail;
	}
	free(buf);
	fclose(f);
	return cat;
fail:
	free(buf);
	if (f)
		fclose(f);
	catalog_free(cat);
	return NULL;
}

struct catalog *catalog_load(const char *name, const char *const *dirs,
			     char *err, size_t errlen)
{
	char path[4096];
	char looked[512] = "";
	size_t used = 0;

	if (!catalog_name_valid(name)) {
		snprintf(err, errlen,
			 "bad catalog name '%.40s' (a name is 1-%d of a-z, 0-9, '_', '-')",
			 name ? name : "", CATALOG_NAME_MAX);
		return NULL;
	}
	for (size_t i = 0; dirs && dirs[i]; i++) {
		int n = snprintf(path, sizeof(path), "%s/%s.ports", dirs[i], name);
		if (n < 0 || (size_t)n >= sizeof(path))
			continue;
		/* Only a missing file moves the search on: a catalog that is
		 * there but unreadable is an error the operator must see,
		 * not a reason to silently use another directory's copy. */
		if (access(path, F_OK) == 0)
			return catalog_read(name, path, err, errlen);
		if (used < sizeof(looked)) {
			n = snprintf(looked + used, sizeof(looked) - used, "%s%s",
				     used ? ", " : "", dirs[i]);
			used += n > 0 ? (size_t)n : 0;
		}
	}
	snprintf(err, errlen, "unknown catalog '%s' (looked for %s.ports in %s)",
		 name, name, used ? looked : "no directory");
	return NULL;
}
