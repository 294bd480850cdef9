/*
 * catalog: named lists of ports that services on the host need, kept as data
 * in NAME.ports files (format: data/catalog/README).  The port plan reserves
 * every range of the catalogs the config names.
 */
#ifndef BERTH_CATALOG_H
#define BERTH_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest catalog name, service name and description, without the NUL.  The
 * sizes let "service (description)" fit struct plan_reservation.service. */
#define CATALOG_NAME_MAX 31
#define CATALOG_SERVICE_MAX 31
#define CATALOG_DESC_MAX 60

/* One line of a catalog: ports lo..hi belong to service. */
struct catalog_entry {
	uint16_t lo, hi;
	unsigned line;                              /* line in the file */
	char service[CATALOG_SERVICE_MAX + 1];
	char description[CATALOG_DESC_MAX + 1]; /* "" when the line has none */
};

/* A loaded catalog; entries are in file order. */
struct catalog {
	char name[CATALOG_NAME_MAX + 1];
	char *path;                    /* the file it was read from; owned */
	struct catalog_entry *entries; /* owned, n of them */
	size_t n;
};

/*
 * True when name is a valid catalog name: 1..CATALOG_NAME_MAX characters of
 * [a-z0-9_-].  Names are never paths, so a config cannot point a catalog
 * lookup outside the catalog directories.  name may be NULL (false).
 */
bool catalog_name_valid(const char *name);

/*
 * Find NAME.ports in the first directory of dirs that has it and parse it.
 *
 * name: a catalog name (see catalog_name_valid); borrowed.
 * dirs: NULL-terminated list of directories, searched in order; borrowed.
 * err, errlen: receives a one-line reason on failure (errlen > 0): a bad
 *   name, "unknown catalog 'x' (looked for x.ports in A, B)", a file that
 *   cannot be read, or "PATH:LINE: reason" for a malformed line.
 *
 * Returns a catalog the caller frees with catalog_free, or NULL on error
 * (and on allocation failure, with "out of memory" in err).
 */
struct catalog *catalog_load(const char *name, const char *const *dirs,
			     char *err, size_t errlen);

/*
 * Parse the catalog file at path and call it name.  Same errors and
 * ownership as catalog_load, without the search.  name and path are
 * borrowed; name must be valid.
 */
struct catalog *catalog_read(const char *name, const char *path, char *err,
			     size_t errlen);

/* Free a catalog from catalog_load or catalog_read; NULL is a no-op. */
void catalog_free(struct catalog *cat);

#endif
