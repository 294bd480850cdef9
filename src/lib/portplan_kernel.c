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
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#define SYSCTL_DEFAULT "/proc/sys/net/ipv4"

/*
 * The longest text a reserved-ports sysctl can show: every other port of
 * 1..65535 listed singly is about 190 KB.
 */
#define SYSCTL_TEXT_MAX (256u << 10)

/*
 * Read a sysctl (or a file standing for one) into a NUL-terminated malloc'd
 * string.  The kernel answers only the first read of a large sysctl such as
 * ip_local_reserved_ports (proc_do_large_bitmap): a read at any later offset
 * is end of file.  So the first read(2) gets a buffer for the longest text,
 * never stdio's 1 KiB, which cut the list after its first kilobyte.
 * Returns 0, -EFBIG when the text fills the buffer, or -errno; *out is the
 * caller's to free.
 */
static int read_text(const char *path, char **out)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char *buf = malloc(SYSCTL_TEXT_MAX + 1);
	size_t len = 0;
	int rc = buf ? 0 : -ENOMEM;
	while (rc == 0) {
		ssize_t n = read(fd, buf + len, SYSCTL_TEXT_MAX - len);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n == 0)
			break;
		else if (n > 0 && (len += (size_t)n) == SYSCTL_TEXT_MAX)
			rc = -EFBIG;
	}
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
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

/*
 * Add the ports of text ("a-b,c,...") to the list at path.  The kernel's
 * ip_local_reserved_ports (proc_do_large_bitmap) replaces its list with
 * what a write at offset 0 holds and adds what a write at any later offset
 * holds, a page at most per write(2), up to the last whole number.  So on
 * procfs the file is written from offset 1 on, and only the ports to add:
 * the kernel's list only ever grows, however many writes it takes, and a
 * failure halfway loses nothing it had.  A plain file standing for the
 * sysctl (tests) is rewritten whole with full, the merged list.
 */
static int write_sysctl(const char *path, const char *add, const char *full)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct statfs fs;
	bool procfs = fstatfs(fd, &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
	const char *text = procfs ? add : full;
	size_t len = strlen(text), done = 0;
	int rc = 0;
	if (procfs ? lseek(fd, 1, SEEK_SET) < 0 : ftruncate(fd, 0) < 0)
		rc = -errno;
	while (rc == 0 && done < len) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n == 0)
			rc = -EIO;
		else if (n > 0)
			done += (size_t)n;
	}
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* s in the kernel's "a-b,c" form plus a newline, malloc'd; NULL when out
 * of memory. */
static char *list_text(const struct portset *s)
{
	size_t need = portset_format(s, NULL, 0, ",");
	char *text = malloc(need + 2);
	if (!text)
		return NULL;
	portset_format(s, text, need + 1, ",");
	text[need] = '\n';
	text[need + 1] = '\0';
	return text;
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
	char *add = list_text(added);
	text = list_text(&merged);
	if (!add || !text) {
		free(add);
		free(text);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = write_sysctl(path, add, text);
	free(add);
	if (rc == -EACCES || rc == -EPERM)
		snprintf(err, errlen,
			 "cannot write %s: %s (run berthctl apply as root, or use --dry-run to see what it would add)",
			 path, strerror(-rc));
	else if (rc < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
	free(text);
	return rc;
}
