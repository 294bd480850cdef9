/* portplan: the dynamic range and the reserved ranges, built from the
 * config, the kernel and the catalogs; see include/berth/portplan.h.  The
 * kernel's sysctl files are read and written in portplan_kernel.c. */
#include "berth/portplan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "berth/catalog.h"
#include "portplan_int.h"

/* IANA's dynamic range (RFC 6335), and Windows' since Vista. */
#define IANA_DYNAMIC_LO 49152u
#define LEGACY_DYNAMIC_LO 1024u

/* State shared by the steps of plan_build. */
struct builder {
	const struct plan_spec *spec;
	const struct plan_env *env;
	const char *file; /* spec->file, or "<built-in>" when unset */
	struct plan *plan;
	size_t cap;       /* allocated entries of plan->res */
	char *err;
	size_t errlen;
	/* ip_local_port_range, read once: the dynamic range with from_kernel,
	 * and the kernel's ephemeral range for berthctl check. */
	int range_rc;     /* 0, or -errno with range_why saying why */
	uint16_t range_lo, range_hi;
	char range_why[1536];
};

/* Report "FILE:LINE: [ports] KEY: reason". */
__attribute__((format(printf, 4, 5)))
static void key_error(struct builder *b, const char *key, unsigned line,
		      const char *fmt, ...)
{
	char why[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(b->err, b->errlen, "%s:%u: [ports] %s: %s", b->file, line, key,
		 why);
}

static bool is_set(const struct plan_setting *s)
{
	return s->value != NULL;
}

/*
 * Parse a whole string of decimal digits (no sign, no white space) into
 * *out.  Returns 0, -EINVAL for anything that is not a number, or -ERANGE
 * when the number is above max (*out then holds max + 1).
 */
static int parse_uint(const char *text, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (!*text)
		return -EINVAL;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v <= max)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	*out = v > max ? max + 1 : v;
	return v > max ? -ERANGE : 0;
}

/* Parse the number of setting key into lo..hi, reporting what is wrong. */
static int parse_key_uint(struct builder *b, const char *key,
			  const struct plan_setting *s, unsigned long lo,
			  unsigned long hi, const char *what, unsigned long *out)
{
	int rc = parse_uint(s->value, hi, out);
	if (rc == -EINVAL) {
		key_error(b, key, s->line, "'%.40s' is not a number", s->value);
		return rc;
	}
	if (rc == -ERANGE || *out < lo) {
		key_error(b, key, s->line, "%.40s is out of range %lu-%lu (%s)",
			  s->value, lo, hi, what);
		return -ERANGE;
	}
	return 0;
}

/* Parse a yes/no setting; unset gives dflt. */
static int parse_yes_no(struct builder *b, const char *key,
			const struct plan_setting *s, bool dflt, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	*out = dflt;
	if (!is_set(s))
		return 0;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s->value, yes[i]) == 0 ||
		    strcasecmp(s->value, no[i]) == 0) {
			*out = strcasecmp(s->value, yes[i]) == 0;
			return 0;
		}
	}
	key_error(b, key, s->line, "'%.40s' is not yes or no", s->value);
	return -EINVAL;
}

/* Append one reservation to the plan. */
static int push_res(struct builder *b, const struct plan_reservation *r)
{
	struct plan *p = b->plan;
	if (p->nres == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 16;
		struct plan_reservation *grown = realloc(p->res, ncap * sizeof(*grown));
		if (!grown) {
			snprintf(b->err, b->errlen, "out of memory");
			return -ENOMEM;
		}
		p->res = grown;
		b->cap = ncap;
	}
	p->res[p->nres++] = *r;
	portset_add_range(&p->reserved, r->lo, r->hi);
	return 0;
}

/* The settings that give the dynamic range, for conflict checks. */
struct form_key {
	const char *key;
	const struct plan_setting *s;
};

/* Reject a pair of settings that both give the dynamic range.  kernel and
 * legacy say whether from_kernel = yes and whether max_user_port is legacy. */
static int check_conflicts(struct builder *b, bool kernel, bool legacy)
{
	const struct plan_spec *sp = b->spec;
	const struct form_key range = { "dynamic_range", &sp->dynamic_range },
			      start = { "dynamic_start", &sp->dynamic_start },
			      count = { "dynamic_count", &sp->dynamic_count },
			      mup = { "max_user_port", &sp->max_user_port },
			      kern = { "from_kernel", &sp->from_kernel };
	/* No pair may be set together.  dynamic_start with max_user_port is
	 * legal for count semantics (the count starts there) and comes last so
	 * it is skipped unless max_user_port is legacy, which starts at 1024. */
	const struct form_key pairs[][2] = {
		{ range, start }, { range, count }, { range, mup }, { range, kern },
		{ kern, start }, { kern, count }, { kern, mup }, { mup, count },
		{ mup, start },
	};
	size_t npairs = sizeof(pairs) / sizeof(pairs[0]) - (legacy ? 0 : 1);
	for (size_t i = 0; i < npairs; i++) {
		const struct form_key *x = &pairs[i][0], *y = &pairs[i][1];
		if (!is_set(x->s) || !is_set(y->s))
			continue;
		if ((x->s == kern.s || y->s == kern.s) && !kernel)
			continue; /* from_kernel = no gives no range */
		const struct form_key *first = x->s->line <= y->s->line ? x : y;
		const struct form_key *second = first == x ? y : x;
		key_error(b, second->key, second->s->line,
			  "conflicts with %s at %s:%u (give the dynamic range in one way only)",
			  first->key, b->file, first->s->line);
		return -EINVAL;
	}
	return 0;
}

/* dynamic_range = A-B */
static int dynamic_from_range(struct builder *b)
{
	const struct plan_setting *s = &b->spec->dynamic_range;
	struct plan *p = b->plan;
	const char *dash = strchr(s->value, '-');
	char lo_text[16], hi_text[16];
	unsigned long lo = 0, hi = 0;

	if (!dash || (size_t)(dash - s->value) >= sizeof(lo_text) ||
	    strlen(dash + 1) >= sizeof(hi_text)) {
		key_error(b, "dynamic_range", s->line,
			  "'%.40s' is not a range A-B", s->value);
		return -EINVAL;
	}
	snprintf(lo_text, sizeof(lo_text), "%.*s", (int)(dash - s->value), s->value);
	snprintf(hi_text, sizeof(hi_text), "%s", dash + 1);
	int rl = parse_uint(lo_text, 65535, &lo), rh = parse_uint(hi_text, 65535, &hi);
	if (rl == -EINVAL || rh == -EINVAL) {
		key_error(b, "dynamic_range", s->line,
			  "'%.40s' is not a range A-B", s->value);
		return -EINVAL;
	}
	if (rl < 0 || rh < 0 || lo == 0) {
		key_error(b, "dynamic_range", s->line,
			  "%.40s is out of range: ports are 1-65535", s->value);
		return -ERANGE;
	}
	if (lo > hi) {
		key_error(b, "dynamic_range", s->line,
			  "inverted range %.40s (start above end)", s->value);
		return -EINVAL;
	}
	p->dynamic_lo = (uint16_t)lo;
	p->dynamic_hi = (uint16_t)hi;
	snprintf(p->dynamic_how, sizeof(p->dynamic_how),
		 "dynamic_range = %lu-%lu at %s:%u", lo, hi, b->file, s->line);
	return 0;
}

/* dynamic_start (or 49152) and a count, checked against 65535. */
static int start_and_count(struct builder *b, const char *count_key,
			   const struct plan_setting *count_s, unsigned long *lo,
			   unsigned long *n)
{
	const struct plan_setting *start_s = &b->spec->dynamic_start;
	*lo = IANA_DYNAMIC_LO;
	if (is_set(start_s) &&
	    parse_key_uint(b, "dynamic_start", start_s, 1, 65535,
			   "a port number", lo) < 0)
		return -EINVAL;
	if (parse_key_uint(b, count_key, count_s, 1, 65536, "a port count", n) < 0)
		return -EINVAL;
	if (*lo + *n - 1 > 65535ul) {
		key_error(b, count_key, count_s->line,
			  "%lu ports from %lu run past 65535 (last port %lu)", *n,
			  *lo, *lo + *n - 1);
		return -ERANGE;
	}
	return 0;
}

/* dynamic_start / dynamic_count, the netsh form. */
static int dynamic_from_netsh(struct builder *b)
{
	const struct plan_spec *sp = b->spec;
	struct plan *p = b->plan;
	unsigned long lo, n;

	if (!is_set(&sp->dynamic_count)) {
		if (parse_key_uint(b, "dynamic_start", &sp->dynamic_start, 1, 65535,
				   "a port number", &lo) < 0)
			return -EINVAL;
		p->dynamic_lo = (uint16_t)lo;
		p->dynamic_hi = 65535;
		snprintf(p->dynamic_how, sizeof(p->dynamic_how),
			 "dynamic_start = %lu through 65535 at %s:%u", lo, b->file,
			 sp->dynamic_start.line);
		return 0;
	}
	if (start_and_count(b, "dynamic_count", &sp->dynamic_count, &lo, &n) < 0)
		return -EINVAL;
	p->dynamic_lo = (uint16_t)lo;
	p->dynamic_hi = (uint16_t)(lo + n - 1);
	snprintf(p->dynamic_how, sizeof(p->dynamic_how),
		 "dynamic_start = %lu%s, dynamic_count = %lu (netsh) at %s:%u", lo,
		 is_set(&sp->dynamic_start) ? "" : " (default)", n, b->file,
		 sp->dynamic_count.line);
	return 0;
}

/* max_user_port with its semantics. */
static int dynamic_from_max_user_port(struct builder *b)
{
	const struct plan_spec *sp = b->spec;
	const struct plan_setting *mup = &sp->max_user_port,
				  *sem = &sp->max_user_port_semantics;
	struct plan *p = b->plan;
	unsigned long lo, n;

	if (!is_set(sem)) {
		key_error(b, "max_user_port", mup->line,
			  "max_user_port_semantics is not set: say legacy (ports 1024..N, Windows 2000/2003) or count (N ports from dynamic_start, Vista/2008 and later)");
		return -EINVAL;
	}
	if (strcasecmp(sem->value, "legacy") == 0) {
		if (parse_key_uint(b, "max_user_port", mup, LEGACY_DYNAMIC_LO + 1,
				   65535, "legacy: the last port of 1024..N", &n) < 0)
			return -EINVAL;
		p->dynamic_lo = LEGACY_DYNAMIC_LO;
		p->dynamic_hi = (uint16_t)n;
		snprintf(p->dynamic_how, sizeof(p->dynamic_how),
			 "max_user_port = %lu (legacy: 1024..N) at %s:%u", n, b->file,
			 mup->line);
		return 0;
	}
	if (strcasecmp(sem->value, "count") != 0) {
		key_error(b, "max_user_port_semantics", sem->line,
			  "unknown semantics '%.40s' (say legacy or count)", sem->value);
		return -EINVAL;
	}
	if (start_and_count(b, "max_user_port", mup, &lo, &n) < 0)
		return -EINVAL;
	p->dynamic_lo = (uint16_t)lo;
	p->dynamic_hi = (uint16_t)(lo + n - 1);
	snprintf(p->dynamic_how, sizeof(p->dynamic_how),
		 "max_user_port = %lu (count: N ports from %lu) at %s:%u", n, lo,
		 b->file, mup->line);
	return 0;
}

/* Pick the one way the dynamic range was given and compute it. */
static int choose_dynamic(struct builder *b, bool *kernel)
{
	const struct plan_spec *sp = b->spec;
	struct plan *p = b->plan;

	if (parse_yes_no(b, "from_kernel", &sp->from_kernel, false, kernel) < 0)
		return -EINVAL;
	if (is_set(&sp->max_user_port_semantics) && !is_set(&sp->max_user_port)) {
		key_error(b, "max_user_port_semantics", sp->max_user_port_semantics.line,
			  "set without max_user_port (it says how to read max_user_port)");
		return -EINVAL;
	}
	bool legacy = is_set(&sp->max_user_port_semantics) &&
		      strcasecmp(sp->max_user_port_semantics.value, "legacy") == 0;
	if (check_conflicts(b, *kernel, legacy) < 0)
		return -EINVAL;
	if (is_set(&sp->dynamic_range))
		return dynamic_from_range(b);
	if (is_set(&sp->max_user_port))
		return dynamic_from_max_user_port(b);
	if (is_set(&sp->dynamic_start) || is_set(&sp->dynamic_count))
		return dynamic_from_netsh(b);
	if (*kernel) {
		if (b->range_rc < 0) {
			key_error(b, "from_kernel", sp->from_kernel.line, "%s",
				  b->range_why);
			return -EINVAL;
		}
		p->dynamic_lo = b->range_lo;
		p->dynamic_hi = b->range_hi;
		snprintf(p->dynamic_how, sizeof(p->dynamic_how),
			 "kernel ip_local_port_range (from_kernel = yes at %s:%u)",
			 b->file, sp->from_kernel.line);
		return 0;
	}
	p->dynamic_lo = IANA_DYNAMIC_LO;
	p->dynamic_hi = 65535;
	snprintf(p->dynamic_how, sizeof(p->dynamic_how),
		 "default (IANA 49152-65535)");
	return 0;
}

/* [ports] reserved: one reservation per range as written. */
static int add_config_reserved(struct builder *b)
{
	const struct plan_setting *s = &b->spec->reserved;
	struct portset one;
	char why[128];
	const char *seps = ", \t\n\v\f\r"; /* as portset_parse */

	if (!is_set(s))
		return 0;
	/* Parse the whole list first so the error is portset's reason. */
	portset_clear(&one);
	if (portset_parse(&one, s->value, why, sizeof(why)) < 0) {
		key_error(b, "reserved", s->line, "%s", why);
		return -EINVAL;
	}
	/* Port 0 is no port a service could hold (bind takes it as "any"),
	 * and the kernel's reserved list has no use for it. */
	if (portset_has(&one, 0)) {
		key_error(b, "reserved", s->line,
			  "port 0 cannot be reserved (ports are 1-65535)");
		return -EINVAL;
	}
	/* The list is valid, so every element is "N" or "A-B" with both ends
	 * in 0..65535 and A <= B: read the ranges back as written. */
	for (const char *p = s->value + strspn(s->value, seps); *p;
	     p += strspn(p, seps)) {
		char *end;
		unsigned long lo = strtoul(p, &end, 10);
		unsigned long hi = *end == '-' ? strtoul(end + 1, &end, 10) : lo;
		struct plan_reservation r = { .lo = (uint16_t)lo, .hi = (uint16_t)hi,
					      .origin = PLAN_ORIGIN_CONFIG,
					      .line = s->line };
		if (push_res(b, &r) < 0)
			return -ENOMEM;
		p += strcspn(p, seps);
	}
	return 0;
}

/* The catalog directories, in search order; *extra holds the resolved
 * catalog_dir (caller frees).  NULL on error. */
static const char **catalog_dirs(struct builder *b, char **extra)
{
	static const char *const defaults[] = {
		BERTH_SOURCE_DATADIR "/catalog", BERTH_INSTALL_DATADIR "/catalog", NULL
	};
	const struct plan_setting *cd = &b->spec->catalog_dir;
	const char *const *rest = b->env && b->env->catalog_dirs ?
					  b->env->catalog_dirs : defaults;
	const char *slash = strrchr(b->file, '/');
	size_t n = 0, i = 0;
	const char **dirs;
	struct stat st;

	*extra = NULL;
	while (rest[n])
		n++;
	if (!(dirs = calloc(n + 2, sizeof(*dirs)))) {
		snprintf(b->err, b->errlen, "out of memory");
		return NULL;
	}
	if (is_set(cd)) {
		/* A relative catalog_dir sits next to the config file. */
		int rc = cd->value[0] != '/' && slash ?
				 asprintf(extra, "%.*s/%s", (int)(slash - b->file),
					  b->file, cd->value) :
				 asprintf(extra, "%s", cd->value);
		if (rc < 0) {
			*extra = NULL;
			snprintf(b->err, b->errlen, "out of memory");
			goto fail;
		}
		if (stat(*extra, &st) < 0) {
			key_error(b, "catalog_dir", cd->line, "cannot use %s: %s",
				  *extra, strerror(errno));
			goto fail;
		}
		if (!S_ISDIR(st.st_mode)) {
			key_error(b, "catalog_dir", cd->line, "%s is not a directory",
				  *extra);
			goto fail;
		}
		dirs[i++] = *extra;
	}
	for (size_t k = 0; k < n; k++)
		dirs[i++] = rest[k];
	return dirs;
fail:
	free(*extra);
	*extra = NULL;
	free(dirs);
	return NULL;
}

/* Reserve every line of one catalog. */
static int add_catalog(struct builder *b, const char *name, const char **dirs)
{
	const struct plan_setting *s = &b->spec->reserved_catalog;
	char why[1536];
	struct catalog *cat = catalog_load(name, dirs, why, sizeof(why));
	int rc = 0;

	if (!cat) {
		key_error(b, "reserved_catalog", s->line, "%s", why);
		return -EINVAL;
	}
	for (size_t i = 0; i < cat->n && rc == 0; i++) {
		const struct catalog_entry *e = &cat->entries[i];
		struct plan_reservation r = {
			.lo = e->lo, .hi = e->hi, .origin = PLAN_ORIGIN_CATALOG,
		};
		snprintf(r.catalog, sizeof(r.catalog), "%s", cat->name);
		snprintf(r.service, sizeof(r.service), e->description[0] ?
			 "%s (%s)" : "%s%s", e->service, e->description);
		rc = push_res(b, &r);
	}
	catalog_free(cat);
	return rc;
}

/* [ports] reserved_catalog: comma/space separated catalog names. */
static int add_catalogs(struct builder *b)
{
	const struct plan_setting *s = &b->spec->reserved_catalog;
	const char *seps = ", \t\n\v\f\r"; /* as portset_parse */
	char *extra = NULL;
	const char **dirs = NULL;
	int rc = 0;

	if (!is_set(s))
		return 0;
	if (!(dirs = catalog_dirs(b, &extra)))
		return -EINVAL;
	for (const char *p = s->value + strspn(s->value, seps); *p && rc == 0;
	     p += strspn(p, seps)) {
		size_t len = strcspn(p, seps);
		char name[CATALOG_NAME_MAX + 2];
		snprintf(name, sizeof(name), "%.*s",
			 (int)(len < sizeof(name) - 1 ? len : sizeof(name) - 1), p);
		const char *again = p + len;
		/* A name listed twice would reserve its ranges twice over. */
		for (again += strspn(again, seps); *again && rc == 0;
		     again += strspn(again, seps)) {
			size_t alen = strcspn(again, seps);
			if (alen == len && memcmp(again, p, len) == 0) {
				key_error(b, "reserved_catalog", s->line,
					  "catalog '%s' is named twice", name);
				rc = -EINVAL;
			}
			again += alen;
		}
		if (rc == 0)
			rc = add_catalog(b, name, dirs);
		p += len;
	}
	free(dirs);
	free(extra);
	return rc;
}

/* Read the kernel's reserved list; with from_kernel it joins the plan. */
static int add_kernel_reserved(struct builder *b, bool kernel)
{
	struct plan *p = b->plan;
	char why[1536];
	uint32_t cursor = 0;
	struct plan_reservation r = { .origin = PLAN_ORIGIN_KERNEL };

	p->kernel_read = plan__read_kernel_reserved(plan__sysctl_dir(b->env),
						    &p->kernel_reserved, why,
						    sizeof(why)) == 0;
	if (!kernel)
		return 0;
	if (!p->kernel_read) {
		key_error(b, "from_kernel", b->spec->from_kernel.line, "%s", why);
		return -EINVAL;
	}
	while (portset_next_range(&p->kernel_reserved, &cursor, &r.lo, &r.hi))
		if (push_res(b, &r) < 0)
			return -ENOMEM;
	return 0;
}

static int cmp_res(const void *x, const void *y)
{
	const struct plan_reservation *a = x, *b = y;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->origin != b->origin)
		return a->origin < b->origin ? -1 : 1;
	return strcmp(a->catalog, b->catalog);
}

/* The pool must fit in what the plan leaves it. */
static int check_pool_fit(struct builder *b)
{
	struct plan *p = b->plan;
	uint32_t room = portset_count(&p->pool_room);

	if (p->pool_size <= room)
		return 0;
	char why[PLAN_POOL_ROOM_WHY_MAX];
	plan_pool_room_why(p, why, sizeof(why));
	snprintf(b->err, b->errlen,
		 "%s:%u: [pool] size: %u sockets do not fit in the %u ports the plan leaves to the pool (%s)",
		 b->file, p->pool_size_line, p->pool_size, room, why);
	return -ENOSPC;
}

void plan_pool_room_why(const struct plan *p, char *buf, size_t len)
{
	struct portset reserved = p->reserved, listen = p->allowed;
	portset_intersect(&reserved, &p->dynamic);
	portset_diff(&listen, &p->pool_room);
	snprintf(buf, len, "dynamic %u-%u, %u of them reserved, %u a listen port of the config's services",
		 p->dynamic_lo, p->dynamic_hi, portset_count(&reserved),
		 portset_count(&listen));
}

struct plan *plan_build(const struct plan_spec *spec,
			const struct plan_env *env, char *err, size_t errlen)
{
	struct builder b = {
		.spec = spec, .env = env, .err = err, .errlen = errlen,
		.file = spec->file ? spec->file : "<built-in>",
	};
	bool kernel = false;

	if (!(b.plan = calloc(1, sizeof(*b.plan)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b.plan->file = b.file;
	b.range_rc = plan__read_kernel_range(plan__sysctl_dir(env), &b.range_lo,
					     &b.range_hi, b.range_why,
					     sizeof(b.range_why));
	if (b.range_rc == 0)
		portset_add_range(&b.plan->kernel_ephemeral, b.range_lo,
				  b.range_hi);
	b.plan->pool_size = spec->pool_size;
	b.plan->pool_size_line = spec->pool_size_line;
	if (choose_dynamic(&b, &kernel) < 0 ||
	    parse_yes_no(&b, "avoid_in_use", &spec->avoid_in_use, true,
			 &b.plan->avoid_in_use) < 0 ||
	    add_config_reserved(&b) < 0 || add_catalogs(&b) < 0 ||
	    add_kernel_reserved(&b, kernel) < 0)
		goto fail;
	if (b.plan->nres > 0)
		qsort(b.plan->res, b.plan->nres, sizeof(*b.plan->res), cmp_res);
	portset_add_range(&b.plan->dynamic, b.plan->dynamic_lo, b.plan->dynamic_hi);
	b.plan->allowed = b.plan->dynamic;
	portset_diff(&b.plan->allowed, &b.plan->reserved);
	b.plan->listen = spec->listen;
	b.plan->pool_room = b.plan->allowed;
	portset_diff(&b.plan->pool_room, &spec->listen);
	if (check_pool_fit(&b) < 0)
		goto fail;
	return b.plan;
fail:
	plan_free(b.plan);
	return NULL;
}

void plan_free(struct plan *plan)
{
	if (!plan)
		return;
	free(plan->res);
	free(plan);
}

size_t plan_origin_describe(const struct plan_reservation *r, const char *file,
			    char *buf, size_t len)
{
	int n;
	switch (r->origin) {
	case PLAN_ORIGIN_CONFIG:
		n = snprintf(buf, len, "config (%s:%u)", file ? file : "<built-in>",
			     r->line);
		break;
	case PLAN_ORIGIN_CATALOG:
		n = snprintf(buf, len, "catalog %s: %s", r->catalog, r->service);
		break;
	default:
		n = snprintf(buf, len, "kernel");
		break;
	}
	return n > 0 ? (size_t)n : 0;
}
