/*
 * procnet: local sockets and their owners from /proc (see procnet.h).
 *
 * A line of /proc/net/tcp looks like
 *
 *    0: 0100007F:14B4 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000  0 48213 1 ...
 *
 * The kernel prints the address as the raw 32-bit words it stores, in host
 * order: IPv4 is one word, IPv6 four.  127.0.0.1 therefore reads 0100007F on
 * a little-endian machine.  Parsing each word as a number and storing it back
 * in host order rebuilds the network-order bytes on any machine, because the
 * reader and the kernel share the byte order.  The port is printed as a
 * plain number (host order), so it needs no conversion.
 */
#include "berth/procnet.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The files a protocol is read from, one per address family. */
struct net_file {
	const char *name;
	int proto;
	int family;
};

static const struct net_file net_files[] = {
	{ .name = "tcp", .proto = IPPROTO_TCP, .family = AF_INET },
	{ .name = "tcp6", .proto = IPPROTO_TCP, .family = AF_INET6 },
	{ .name = "udp", .proto = IPPROTO_UDP, .family = AF_INET },
	{ .name = "udp6", .proto = IPPROTO_UDP, .family = AF_INET6 },
};

#define NET_FILES (sizeof(net_files) / sizeof(net_files[0]))

/* Called for each socket parsed; a negative return stops the walk. */
typedef int (*sock_fn)(void *ctx, const struct procnet_sock *s);

/* The columns a line needs: sl, local, remote, st, tx:rx, tr:when,
 * retrnsmt, uid, timeout, inode. */
#define MIN_FIELDS 10
#define MAX_FIELDS 16

static void count_malformed(struct procnet_stats *stats)
{
	if (stats)
		stats->malformed++;
}

/* Parse exactly len hex digits (1..16) into *v. */
static bool parse_hex(const char *s, size_t len, uint64_t *v)
{
	uint64_t acc = 0;

	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		acc = acc << 4 | d;
	}
	*v = acc;
	return true;
}

/* Parse a non-empty run of decimal digits that ends the string. */
static bool parse_dec(const char *s, uint64_t *v)
{
	uint64_t acc = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (acc > (UINT64_MAX - d) / 10)
			return false;
		acc = acc * 10 + d;
	}
	*v = acc;
	return true;
}

/* Split line at white space in place; returns the number of fields found
 * (at most max). */
static size_t split_fields(char *line, char **field, size_t max)
{
	size_t n = 0;
	char *p = line;

	while (n < max) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p == '\0')
			break;
		field[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			p++;
		if (*p == '\0')
			break;
		*p++ = '\0';
	}
	return n;
}

/* Parse "ADDR:PORT" as printed for family into s->addr and s->port. */
static bool parse_endpoint(const char *text, int family, struct procnet_sock *s)
{
	const char *colon = strchr(text, ':');
	size_t words = family == AF_INET6 ? 4 : 1;
	unsigned char bytes[16];
	uint64_t v;

	if (!colon || (size_t)(colon - text) != words * 8)
		return false;
	for (size_t i = 0; i < words; i++) {
		if (!parse_hex(text + 8 * i, 8, &v))
			return false;
		uint32_t word = (uint32_t)v;
		memcpy(bytes + 4 * i, &word, sizeof(word));
	}
	if (!parse_hex(colon + 1, strlen(colon + 1), &v) || v > UINT16_MAX)
		return false;
	s->port = (uint16_t)v;
	return inet_ntop(family, bytes, s->addr, sizeof(s->addr)) != NULL;
}

/* Parse one data line of a net file; false when it is malformed. */
static bool parse_line(char *line, const struct net_file *f,
		       struct procnet_sock *s)
{
	char *field[MAX_FIELDS];
	size_t nf = split_fields(line, field, MAX_FIELDS);
	uint64_t v;

	if (nf < MIN_FIELDS)
		return false;
	size_t sl_len = strlen(field[0]);
	if (sl_len < 2 || field[0][sl_len - 1] != ':')
		return false;
	*s = (struct procnet_sock){
		.proto = f->proto,
		.family = f->family,
		.pid = -1,
	};
	if (!parse_endpoint(field[1], f->family, s))
		return false;
	if (!parse_hex(field[3], strlen(field[3]), &v) || v > UINT8_MAX)
		return false;
	s->state = (uint8_t)v;
	return parse_dec(field[9], &s->inode);
}

/*
 * Feed every socket of one net file to fn.  A missing file sets *missing and
 * is not an error.  Returns 0, fn's negative return, or -errno.
 */
static int parse_file(const char *proc_root, const struct net_file *f,
		      sock_fn fn, void *ctx, struct procnet_stats *stats,
		      bool *missing)
{
	char path[PATH_MAX];
	char *line = NULL;
	size_t cap = 0;
	FILE *fp = NULL;
	int rc = 0;

	*missing = false;
	int len = snprintf(path, sizeof(path), "%s/net/%s", proc_root, f->name);
	if (len < 0 || (size_t)len >= sizeof(path)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	fp = fopen(path, "re");
	if (!fp) {
		if (errno == ENOENT) {
			*missing = true;
			if (stats)
				stats->missing_files++;
		} else {
			rc = -errno;
		}
		goto out;
	}
	while (getline(&line, &cap, fp) >= 0) {
		struct procnet_sock s;
		char *p = line;
		while (*p == ' ')
			p++;
		/* The header names its columns; "sl" is the first one. */
		if (strncmp(p, "sl ", 3) == 0)
			continue;
		if (*p == '\n' || *p == '\0')
			continue;
		if (!parse_line(line, f, &s)) {
			count_malformed(stats);
			continue;
		}
		rc = fn(ctx, &s);
		if (rc < 0)
			goto out;
	}
	if (ferror(fp))
		rc = -EIO;
out:
	free(line);
	if (fp)
		fclose(fp);
	return rc;
}

/*
 * Run fn over every file of the protocols in proto_mask.  Returns 0, -ENOENT
 * when every file asked for is missing, or the first error.
 */
static int walk_files(const char *proc_root, unsigned proto_mask, sock_fn fn,
		      void *ctx, struct procnet_stats *stats)
{
	size_t wanted = 0, missing = 0;

	for (size_t i = 0; i < NET_FILES; i++) {
		const struct net_file *f = &net_files[i];
		unsigned bit = f->proto == IPPROTO_TCP ? PROCNET_TCP : PROCNET_UDP;
		bool gone;

		if (!(proto_mask & bit))
			continue;
		wanted++;
		int rc = parse_file(proc_root, f, fn, ctx, stats, &gone);
		if (rc < 0)
			return rc;
		if (gone)
			missing++;
	}
	return wanted > 0 && missing == wanted ? -ENOENT : 0;
}

struct sock_vec {
	struct procnet_sock *v;
	size_t n, cap;
};

static int append_sock(void *ctx, const struct procnet_sock *s)
{
	struct sock_vec *vec = ctx;

	if (vec->n == vec->cap) {
		size_t cap = vec->cap ? vec->cap * 2 : 64;
		struct procnet_sock *v = reallocarray(vec->v, cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = *s;
	return 0;
}

int procnet_list(const char *proc_root, unsigned proto_mask,
		 struct procnet_sock **out, size_t *n,
		 struct procnet_stats *stats)
{
	struct sock_vec vec = { 0 };
	int rc;

	*out = NULL;
	*n = 0;
	if (!(proto_mask & (PROCNET_TCP | PROCNET_UDP)))
		return -EINVAL;
	rc = walk_files(proc_root, proto_mask, append_sock, &vec, stats);
	if (rc < 0) {
		free(vec.v);
		return rc;
	}
	if (vec.n == 0) {
		free(vec.v);
		vec.v = NULL;
	}
	*out = vec.v;
	*n = vec.n;
	return 0;
}

bool procnet_holds(const struct procnet_sock *s)
{
	return s->proto == IPPROTO_UDP || s->state != PROCNET_TIME_WAIT;
}

static int add_held_port(void *ctx, const struct procnet_sock *s)
{
	if (procnet_holds(s))
		portset_add(ctx, s->port);
	return 0;
}

int procnet_ports_in_use(const char *proc_root, int proto, struct portset *out,
			 struct procnet_stats *stats)
{
	unsigned mask;

	if (proto == IPPROTO_TCP)
		mask = PROCNET_TCP;
	else if (proto == IPPROTO_UDP)
		mask = PROCNET_UDP;
	else
		return -EINVAL;
	portset_clear(out);
	return walk_files(proc_root, mask, add_held_port, out, stats);
}

const char *procnet_proto_name(const struct procnet_sock *s)
{
	return s->proto == IPPROTO_TCP ? "tcp" : "udp";
}

const char *procnet_state_name(const struct procnet_sock *s)
{
	static const char *const tcp_names[] = {
		[PROCNET_ESTABLISHED] = "established",
		[PROCNET_SYN_SENT] = "syn-sent",
		[PROCNET_SYN_RECV] = "syn-recv",
		[PROCNET_FIN_WAIT1] = "fin-wait-1",
		[PROCNET_FIN_WAIT2] = "fin-wait-2",
		[PROCNET_TIME_WAIT] = "time-wait",
		[PROCNET_CLOSE] = "close",
		[PROCNET_CLOSE_WAIT] = "close-wait",
		[PROCNET_LAST_ACK] = "last-ack",
		[PROCNET_LISTEN] = "listen",
		[PROCNET_CLOSING] = "closing",
		[PROCNET_NEW_SYN_RECV] = "new-syn-recv",
	};

	if (s->proto == IPPROTO_UDP) {
		/* UDP reuses the TCP numbers: connect() makes it ESTABLISHED,
		 * otherwise it sits in CLOSE, which for UDP means bound. */
		return s->state == PROCNET_ESTABLISHED ? "connected" : "bound";
	}
	if (s->state < sizeof(tcp_names) / sizeof(tcp_names[0]) &&
	    tcp_names[s->state])
		return tcp_names[s->state];
	return "unknown";
}

/* One socket being looked up: its inode, where it sits in the caller's
 * array, and the lowest pid found holding it so far. */
struct owner_key {
	uint64_t inode;
	size_t idx;
	pid_t pid;
};

static int cmp_key(const void *a, const void *b)
{
	const struct owner_key *x = a, *y = b;
	return (x->inode > y->inode) - (x->inode < y->inode);
}

/* True when name is a non-empty string of digits naming a pid. */
static bool parse_pid(const char *name, pid_t *pid)
{
	uint64_t v;

	if (!parse_dec(name, &v) || v == 0 || v > INT_MAX)
		return false;
	*pid = (pid_t)v;
	return true;
}

/* Parse a link target "socket:[INODE]". */
static bool parse_socket_link(const char *target, uint64_t *inode)
{
	static const char prefix[] = "socket:[";
	char digits[24];

	if (strncmp(target, prefix, sizeof(prefix) - 1) != 0)
		return false;
	const char *p = target + sizeof(prefix) - 1;
	const char *end = strchr(p, ']');
	if (!end || end[1] != '\0' || (size_t)(end - p) >= sizeof(digits))
		return false;
	memcpy(digits, p, (size_t)(end - p));
	digits[end - p] = '\0';
	return parse_dec(digits, inode);
}

/*
 * Record pid as a holder of every looked-up socket with this inode.  Keys
 * are sorted, so equal inodes (a socket listed twice) sit next to each other.
 */
static void claim(struct owner_key *keys, size_t nkeys, uint64_t inode,
		  pid_t pid)
{
	struct owner_key probe = { .inode = inode };
	struct owner_key *hit = bsearch(&probe, keys, nkeys, sizeof(*keys),
					cmp_key);
	if (!hit)
		return;
	while (hit > keys && hit[-1].inode == inode)
		hit--;
	for (; hit < keys + nkeys && hit->inode == inode; hit++)
		if (hit->pid < 0 || pid < hit->pid)
			hit->pid = pid;
}

/*
 * Look at every fd of one process.  A process that exits while we look is
 * simply gone; any other failure to open its fd directory means we may not
 * see it, which the caller reports as hidden owners.
 */
static void scan_process(const char *proc_root, pid_t pid,
			 struct owner_key *keys, size_t nkeys,
			 struct procnet_stats *stats)
{
	char path[PATH_MAX];
	char target[64];
	DIR *fds;
	struct dirent *e;

	int len = snprintf(path, sizeof(path), "%s/%d/fd", proc_root, (int)pid);
	if (len < 0 || (size_t)len >= sizeof(path))
		return;
	fds = opendir(path);
	if (!fds) {
		if (errno != ENOENT && stats)
			stats->hidden_procs++;
		return;
	}
	while ((e = readdir(fds))) {
		uint64_t inode;
		if (e->d_name[0] == '.')
			continue;
		ssize_t n = readlinkat(dirfd(fds), e->d_name, target,
				       sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (parse_socket_link(target, &inode))
			claim(keys, nkeys, inode, pid);
	}
	closedir(fds);
}

/* Read pid's program name into comm; "?" when the process is gone or the
 * file cannot be read. */
static void read_comm(const char *proc_root, pid_t pid,
		      char comm[PROCNET_COMM_LEN])
{
	char path[PATH_MAX];
	char buf[64] = "";
	FILE *fp = NULL;

	snprintf(comm, PROCNET_COMM_LEN, "?");
	int len = snprintf(path, sizeof(path), "%s/%d/comm", proc_root, (int)pid);
	if (len < 0 || (size_t)len >= sizeof(path))
		return;
	fp = fopen(path, "re");
	if (!fp)
		return;
	if (fgets(buf, sizeof(buf), fp)) {
		/* The kernel keeps at most 15 characters; a longer line (only a
		 * fixture can have one) is cut to that. */
		size_t n = strcspn(buf, "\n");
		if (n >= PROCNET_COMM_LEN)
			n = PROCNET_COMM_LEN - 1;
		if (n > 0) {
			memcpy(comm, buf, n);
			comm[n] = '\0';
		}
	}
	fclose(fp);
}

int procnet_owners(const char *proc_root, struct procnet_sock *socks, size_t n,
		   struct procnet_stats *stats)
{
	struct owner_key *keys = NULL;
	size_t nkeys = 0;
	DIR *procs = NULL;
	struct dirent *e;
	int rc = 0;

	if (n == 0)
		goto out;
	keys = calloc(n, sizeof(*keys));
	if (!keys) {
		rc = -ENOMEM;
		goto out;
	}
	/* Inode 0 (TIME_WAIT) belongs to no socket file, so no fd names it. */
	for (size_t i = 0; i < n; i++)
		if (socks[i].inode != 0)
			keys[nkeys++] = (struct owner_key){
				.inode = socks[i].inode, .idx = i, .pid = -1,
			};
	qsort(keys, nkeys, sizeof(*keys), cmp_key);
	procs = opendir(proc_root);
	if (!procs) {
		rc = -errno;
		goto out;
	}
	while (nkeys > 0 && (e = readdir(procs))) {
		pid_t pid;
		if (parse_pid(e->d_name, &pid))
			scan_process(proc_root, pid, keys, nkeys, stats);
	}
	for (size_t i = 0; i < n; i++) {
		socks[i].pid = -1;
		socks[i].comm[0] = '\0';
	}
	for (size_t k = 0; k < nkeys; k++) {
		struct procnet_sock *s = &socks[keys[k].idx];
		s->pid = keys[k].pid;
		if (s->pid >= 0)
			read_comm(proc_root, s->pid, s->comm);
	}
	if (stats)
		for (size_t i = 0; i < n; i++)
			if (socks[i].inode != 0 && socks[i].pid < 0)
				stats->unowned++;
out:
	if (procs)
		closedir(procs);
	free(keys);
	return rc;
}

int procnet_sock_cmp(const void *a, const void *b)
{
	const struct procnet_sock *x = a, *y = b;
	int c;

	if (x->proto != y->proto)
		return x->proto == IPPROTO_TCP ? -1 : 1;
	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	if ((c = strcmp(x->addr, y->addr)) != 0)
		return c;
	return (x->pid > y->pid) - (x->pid < y->pid);
}
