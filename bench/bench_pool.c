/*
 * bench_pool: what the socket pool costs and what it buys, with real sockets
 * on 127.0.0.1.
 *
 *  1. Time to build a 2,500-socket pool (SocketPoolSize) over the kernel's
 *     dynamic range, median of several runs.
 *  2. Cost per outbound query: pool mode (acquire + done on a pre-bound
 *     socket) against per-query mode (a bind and a close per query).
 *  3. Spoofing entropy, log2(ports x 65,536 DNS IDs), for the kernel's range
 *     and for the legacy 1024-5000 range minus the sbs catalog's ports.
 *
 * Prints figures and asserts nothing: benchmarks measure, tests gate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>

#include "berth/portset.h"
#include "berth/sockpool.h"

#define CREATE_RUNS 5
#define POOL_QUERIES 1000000u
#define PER_QUERY_QUERIES 20000u

/* The sbs catalog's reserved ports, as the issue lists them. */
static const char sbs_ports[] =
	"1433-1434, 1745, 1080, 1718-1720, 3343, 1645-1646, 1812-1813, "
	"1701, 2883, 4500, 1801, 4070-4071, 3500-3619";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* log2(n) for n >= 1 by squaring the mantissa: no libm needed. */
static double log2_u64(uint64_t n)
{
	int e = 63 - __builtin_clzll(n);
	double m = (double)n / (double)(UINT64_C(1) << e);
	double frac = 0, bit = 0.5;
	for (int i = 0; i < 48; i++, bit /= 2) {
		m *= m;
		if (m >= 2) {
			m /= 2;
			frac += bit;
		}
	}
	return e + frac;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Read a one-line /proc file into buf; false when it cannot be read. */
static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *fp = fopen(path, "r");
	if (!fp)
		return false;
	bool ok = fgets(buf, (int)len, fp) != NULL;
	fclose(fp);
	if (!ok)
		buf[0] = '\0';
	return true;
}

/*
 * The kernel's dynamic range minus its reserved ports; falls back to the
 * IANA range 49152-65535 when /proc cannot be read.
 */
static void kernel_allowed(struct portset *allowed, char *how, size_t howlen)
{
	char line[4096], err[128];
	unsigned long lo = 49152, hi = 65535;
	portset_clear(allowed);
	if (read_line("/proc/sys/net/ipv4/ip_local_port_range", line,
		      sizeof(line))) {
		char *end;
		unsigned long a = strtoul(line, &end, 10);
		unsigned long b = strtoul(end, NULL, 10);
		if (a > 0 && b >= a && b <= 65535) {
			lo = a;
			hi = b;
		}
	}
	portset_add_range(allowed, (uint16_t)lo, (uint16_t)hi);
	struct portset reserved;
	portset_clear(&reserved);
	if (read_line("/proc/sys/net/ipv4/ip_local_reserved_ports", line,
		      sizeof(line)) &&
	    portset_parse(&reserved, line, err, sizeof(err)) == 0)
		portset_diff(allowed, &reserved);
	snprintf(how, howlen, "%lu-%lu minus %u kernel-reserved", lo, hi,
		 portset_count(&reserved));
}

static void raise_nofile(uint32_t need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		printf("RLIMIT_NOFILE: cannot read: %s\n", strerror(errno));
		return;
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		printf("RLIMIT_NOFILE: cannot raise the soft limit: %s\n",
		       strerror(errno));
	getrlimit(RLIMIT_NOFILE, &rl);
	printf("RLIMIT_NOFILE soft limit %llu (hard %llu)\n",
	       (unsigned long long)rl.rlim_cur,
	       (unsigned long long)rl.rlim_max);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need + 64)
		printf("WARNING: %u sockets need more fds than the limit "
		       "allows; the 2,500-socket pool will fail\n", need);
}

static struct pool *make(const struct pool_config *base,
			 const struct portset *allowed)
{
	char err[256];
	struct pool_config cfg = *base;
	inet_pton(AF_INET, "127.0.0.1", &cfg.bind4);
	struct pool *p = pool_create(&cfg, allowed, NULL, NULL, NULL, 0, err,
				     sizeof(err));
	if (!p)
		printf("pool_create failed: %s\n", err);
	return p;
}

static void bench_create(const struct portset *allowed)
{
	double t[CREATE_RUNS];
	int runs = 0;
	for (int i = 0; i < CREATE_RUNS; i++) {
		double t0 = now_s();
		struct pool *p = make(&(struct pool_config){
			.size = POOL_DEFAULT_SIZE }, allowed);
		double t1 = now_s();
		if (!p)
			break;
		struct pool_stats st;
		pool_stats(p, &st);
		pool_free(p);
		t[runs++] = t1 - t0;
		if (i == 0)
			printf("  %u sockets bound, %llu ports refused "
			       "(in use)\n", st.bound,
			       (unsigned long long)st.bind_failures);
	}
	if (runs == 0)
		return;
	qsort(t, (size_t)runs, sizeof(t[0]), cmp_double);
	printf("  create 2,500-socket pool: median %.2f ms over %d runs "
	       "(min %.2f, max %.2f)\n", t[runs / 2] * 1e3, runs, t[0] * 1e3,
	       t[runs - 1] * 1e3);
}

/* Seconds per acquire + done, or a negative value on failure. */
static double per_query_cost(struct pool *p, uint32_t n)
{
	double t0 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct pool_handle h;
		int rc = pool_acquire(p, AF_INET, &h);
		if (rc < 0) {
			printf("  pool_acquire: %s\n", strerror(-rc));
			return -1;
		}
		pool_done(p, &h);
	}
	return (now_s() - t0) / n;
}

static void bench_queries(const struct portset *allowed)
{
	struct pool *pooled = make(&(struct pool_config){
		.size = POOL_DEFAULT_SIZE }, allowed);
	struct pool *fresh = make(&(struct pool_config){
		.size = 1, .mode = POOL_MODE_PER_QUERY }, allowed);
	if (pooled && fresh) {
		double a = per_query_cost(pooled, POOL_QUERIES);
		double b = per_query_cost(fresh, PER_QUERY_QUERIES);
		if (a > 0 && b > 0)
			printf("  per query: pool mode %.1f ns, per-query mode "
			       "%.1f ns (bind + close): %.0fx\n", a * 1e9,
			       b * 1e9, b / a);
	}
	pool_free(pooled);
	pool_free(fresh);
}

static void entropy(const char *label, uint32_t ports)
{
	double bits = log2_u64((uint64_t)ports * 65536u);
	printf("  %-44s %6u ports x 65,536 IDs = %.2f bits\n", label, ports,
	       bits);
}

int main(void)
{
	struct portset allowed, legacy, sbs;
	char how[128], err[128];
	kernel_allowed(&allowed, how, sizeof(how));
	printf("allowed set: kernel range %s = %u ports\n", how,
	       portset_count(&allowed));
	raise_nofile(POOL_DEFAULT_SIZE + 1);

	printf("\npool creation (127.0.0.1):\n");
	bench_create(&allowed);
	printf("\nquery cost (127.0.0.1):\n");
	bench_queries(&allowed);

	portset_clear(&legacy);
	portset_add_range(&legacy, 1024, 5000);
	portset_clear(&sbs);
	if (portset_parse(&sbs, sbs_ports, err, sizeof(err)) != 0) {
		printf("sbs list: %s\n", err);
		return 1;
	}
	portset_diff(&legacy, &sbs);
	printf("\nspoofing entropy (source port x DNS ID):\n");
	char label[160];
	snprintf(label, sizeof(label), "kernel range %s:", how);
	entropy(label, portset_count(&allowed));
	entropy("legacy 1024-5000 minus sbs catalog:", portset_count(&legacy));
	entropy("fixed source port (no pool):", 1);
	return 0;
}
