/*
 * portplan_kernel: the plan's side of the kernel's sysctl files
 * (ip_local_port_range, ip_local_reserved_ports): reading them for
 * plan_build() (portplan.c) and writing the reserved list for
 * plan_kernel_apply(); see include/berth/portplan.h.
 */
#include "portplan_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYSCTL_DEFAULT "/proc/sys/net/ipv4"

/* Read a small text file (a sysctl) into a NUL-terminated malloc'd string.
 * Returns 0 or -errno; *out is the caller's to free. */
static int read_text(const char *path, char **out)
{
	FILE *f = fopen(path, "r");
	size_t cap = 0;
	int rc = 0;
	*out = NULL;
	if (!f)
		return -errno;
	if (getdelim(out, &cap, '\0', f) < 0) {
		if (ferror(f))
			rc = -errno;
		else if (!*out && !(*out = malloc(1)))
			rc = -ENOMEM;
		else
			(*out)[0] = '\0'; /* an empty file is an empty list */
	}
	fclose(f);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

const char *plan__sysctl_dir(const struct plan_env *env)
{
	return env && env->sysctl_dir ? env->sysctl_dir : SYSCTL_DEFAULT;
}

int plan__read_kernel_reserved(const char *dir, struct portset *set,
			       char *why, size_t whylen)
{
	char path[1024], reason[128];
	char *text = NULL;
	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	int rc = read_text(path, &text);
	portset_clear(set);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = portset_parse(set, text, reason, sizeof(reason));
	if (rc < 0)
		snprintf(why, whylen, "%s: %s", path, reason);
	free(text);
	return rc;
}

int plan__read_kernel_range(const char *dir, uint16_t *lo, uint16_t *hi,
			    char *why, size_t whylen)
{
	char path[1024];
	char *text = NULL;
	unsigned long a = 0, b = 0;
	int used = 0;
	snprintf(path, sizeof(path), "%s/ip_local_port_range", dir);
	int rc = read_text(path, &text);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	if (sscanf(text, "%lu %lu %n", &a, &b, &used) != 2 || text[used] != '\0' ||
	    a == 0 || a > b || b > 65535ul) {
		snprintf(why, whylen, "%s does not hold a range 'lo hi'", path);
		rc = -EINVAL;
	} else {
		*lo = (uint16_t)a;
		*hi = (uint16_t)b;
	}
	free(text);
	return rc;
}

/* Write text to path in one write(2): a sysctl takes the list whole. */
static int write_sysctl(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, len);
	if (n < 0)
		rc = -errno;
	else if ((size_t)n != len)
		rc = -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int plan_kernel_apply(const struct plan *plan, const char *sysctl_dir,
		      bool dry_run, struct portset *added, char *err,
		      size_t errlen)
{
	const char *dir = sysctl_dir ? sysctl_dir : SYSCTL_DEFAULT;
	struct portset merged;
	char path[1024];
	char *text = NULL;
	int rc;

	portset_clear(added);
	snprintf(path, sizeof(path), "%s/ip_local_reserved_ports", dir);
	rc = plan__read_kernel_reserved(dir, &merged, err, errlen);
	if (rc < 0)
		return rc;
	*added = plan->reserved;
	portset_diff(added, &merged);
	if (dry_run || portset_count(added) == 0)
		return 0;
	portset_union(&merged, &plan->reserved);
	size_t need = portset_format(&merged, NULL, 0, ",");
	if (!(text = malloc(need + 2))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	portset_format(&merged, text, need + 1, ",");
	text[need] = '\n';
	text[need + 1] = '\0';
	rc = write_sysctl(path, text);
	if (rc == -EACCES || rc == -EPERM)
		snprintf(err, errlen,
			 "cannot write %s: %s (run berthctl apply as root, or use --dry-run to see what it would add)",
			 path, strerror(-rc));
	else if (rc < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
	free(text);
	return rc;
}
