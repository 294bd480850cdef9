/*
 * bench_dns_spoof: the off-path attacker of bench/dns/run's spoofing trial.
 *
 * For every question name read from stdin it sends a bounded number of
 * forged DNS answers to 127.0.0.1, each to a random port of the given range
 * and with a random ID, carrying the right question and an A record with a
 * marker address.  It sends them from a UDP socket it inherits (--fd) that
 * is bound to the real upstream's address and port, so the forged answers
 * carry the upstream's source address exactly as a spoofed packet would,
 * without raw sockets.  It never reads from that socket: everything it
 * knows is the port range and the question, which is what an off-path
 * attacker who triggers the query knows.
 *
 * Protocol on stdin/stdout, one line each way per question:
 *   in:  NAME            (an A/IN question, e.g. s17.slow.bench)
 *   out: sent N errors E (after the last forged answer left)
 *
 * Loopback only (the destination is fixed to 127.0.0.1), bounded count per
 * question and a bounded rate.  Prints figures and asserts nothing.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define MAX_COUNT 1000000ul
#define MAX_RATE 10000000ul
#define MSG_MAX 512
#define NAME_MAX_TEXT 256

struct spoof_opts {
	int fd;
	uint16_t lo, hi;
	unsigned long count;	/* forged answers per question */
	unsigned long rate;	/* datagrams per second, 0 = unpaced */
	struct in_addr marker;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_dns_spoof --fd FD --ports LO-HI --count N "
		"[--rate PPS] [--marker A.B.C.D]\n"
		"Reads question names from stdin; for each, sends N forged "
		"answers from FD to\n127.0.0.1:random port in LO-HI with random "
		"IDs; prints 'sent N errors E'.\n");
}

/* Parse a decimal unsigned long in [min, max]; false on any junk. */
static bool parse_ul(const char *s, unsigned long min, unsigned long max,
		     unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	if (*s < '0' || *s > '9')
		return false;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || v < min || v > max)
		return false;
	*out = v;
	return *end == '\0' || *end == '-';
}

static bool parse_range(const char *s, uint16_t *lo, uint16_t *hi)
{
	unsigned long a, b;
	const char *dash = strchr(s, '-');
	if (!dash || !parse_ul(s, 1, 65535, &a) ||
	    !parse_ul(dash + 1, 1, 65535, &b) || strchr(dash + 1, '-') || a > b)
		return false;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return true;
}

static bool parse_args(int argc, char **argv, struct spoof_opts *o)
{
	bool have_fd = false, have_ports = false, have_count = false;
	unsigned long v;
	inet_pton(AF_INET, "6.6.6.6", &o->marker);
	/* Options come in pairs: "--name value". */
	for (int i = 1; i < argc; i += 2) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!val)
			return false;
		if (strcmp(argv[i], "--fd") == 0 && parse_ul(val, 0, 1 << 20, &v)
		    && strchr(val, '-') == NULL) {
			o->fd = (int)v;
			have_fd = true;
		} else if (strcmp(argv[i], "--ports") == 0 &&
			   parse_range(val, &o->lo, &o->hi)) {
			have_ports = true;
		} else if (strcmp(argv[i], "--count") == 0 &&
			   parse_ul(val, 1, MAX_COUNT, &o->count) &&
			   strchr(val, '-') == NULL) {
			have_count = true;
		} else if (strcmp(argv[i], "--rate") == 0 &&
			   parse_ul(val, 0, MAX_RATE, &o->rate) &&
			   strchr(val, '-') == NULL) {
		} else if (strcmp(argv[i], "--marker") == 0 &&
			   inet_pton(AF_INET, val, &o->marker) == 1) {
		} else {
			return false;
		}
	}
	return have_fd && have_ports && have_count;
}

/*
 * Encode a dotted name into wire format; returns its length or 0 when a
 * label is empty or too long or the whole name exceeds 255 octets.
 */
static size_t encode_name(const char *name, uint8_t *out, size_t cap)
{
	size_t n = 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (len == 0 || len > 63 || n + 1 + len + 1 > cap)
			return 0;
		out[n++] = (uint8_t)len;
		memcpy(out + n, p, len);
		n += len;
		p += len;
		if (*p == '.')
			p++;
	}
	if (n == 0 || n + 1 > 255)
		return 0;
	out[n++] = 0;
	return n;
}

/*
 * Build the forged answer for name into msg (ID left 0, filled per copy):
 * QR AA RD RA, NOERROR, the question, one A record with the marker address.
 */
static size_t build_answer(const char *name, struct in_addr marker,
			   uint8_t *msg, size_t cap)
{
	static const uint8_t head[12] = { 0, 0, 0x85, 0x80, 0, 1, 0, 1,
					  0, 0, 0, 0 };
	static const uint8_t tail[] = {
		0, 1, 0, 1,			/* QTYPE A, QCLASS IN */
		0xc0, 12, 0, 1, 0, 1,		/* name -> question, A, IN */
		0, 0, 0x0e, 0x10, 0, 4,		/* TTL 3600, RDLENGTH 4 */
	};
	if (cap < sizeof(head) + sizeof(tail) + 4)
		return 0;
	memcpy(msg, head, sizeof(head));
	size_t n = encode_name(name, msg + sizeof(head),
			       cap - sizeof(head) - sizeof(tail) - 4);
	if (n == 0)
		return 0;
	n += sizeof(head);
	memcpy(msg + n, tail, sizeof(tail));
	n += sizeof(tail);
	memcpy(msg + n, &marker.s_addr, 4);
	return n + 4;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	double d = t - now_s();
	if (d <= 0)
		return;
	struct timespec ts = {
		.tv_sec = (time_t)d,
		.tv_nsec = (long)((d - (double)(time_t)d) * 1e9),
	};
	nanosleep(&ts, NULL);
}

/* Send o->count forged answers for one question; count send errors. */
static void flood_one(const struct spoof_opts *o, const uint8_t *tmpl,
		      size_t len, unsigned long *sent, unsigned long *errors)
{
	static uint8_t bufs[BATCH][MSG_MAX];
	static struct sockaddr_in to[BATCH];
	static struct iovec iov[BATCH];
	static struct mmsghdr mm[BATCH];
	uint32_t span = (uint32_t)o->hi - o->lo + 1;
	double start = now_s();
	*sent = 0;
	*errors = 0;
	while (*sent + *errors < o->count) {
		unsigned long left = o->count - *sent - *errors;
		unsigned int k = left < BATCH ? (unsigned int)left : BATCH;
		for (unsigned int i = 0; i < k; i++) {
			memcpy(bufs[i], tmpl, len);
			uint16_t id = (uint16_t)arc4random_uniform(65536);
			bufs[i][0] = (uint8_t)(id >> 8);
			bufs[i][1] = (uint8_t)(id & 0xff);
			to[i] = (struct sockaddr_in){
				.sin_family = AF_INET,
				.sin_port = htons((uint16_t)(o->lo +
					arc4random_uniform(span))),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
			};
			iov[i] = (struct iovec){ .iov_base = bufs[i],
						 .iov_len = len };
			mm[i] = (struct mmsghdr){ .msg_hdr = {
				.msg_name = &to[i], .msg_namelen = sizeof(to[i]),
				.msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int r = sendmmsg(o->fd, mm, k, 0);
		if (r < 0) {
			/* A full send buffer or a transient error costs one
			 * datagram, so the loop always ends. */
			(*errors)++;
		} else {
			*sent += (unsigned long)r;
			if (r == 0)
				(*errors)++;
		}
		if (o->rate > 0)
			sleep_until(start + (double)(*sent + *errors) /
					    (double)o->rate);
	}
}

int main(int argc, char **argv)
{
	struct spoof_opts o = { .fd = -1 };
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (!parse_args(argc, argv, &o)) {
		usage(stderr);
		return 2;
	}
	char line[NAME_MAX_TEXT + 2];
	uint8_t tmpl[MSG_MAX];
	unsigned long total = 0, total_err = 0, questions = 0;
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		size_t len = build_answer(line, o.marker, tmpl, sizeof(tmpl));
		if (len == 0) {
			fprintf(stderr, "bench_dns_spoof: bad name '%s'\n",
				line);
			return 1;
		}
		unsigned long sent, errors;
		flood_one(&o, tmpl, len, &sent, &errors);
		total += sent;
		total_err += errors;
		questions++;
		printf("sent %lu errors %lu\n", sent, errors);
		fflush(stdout);
	}
	fprintf(stderr, "bench_dns_spoof: %lu questions, %lu forged answers "
		"sent, %lu send errors\n", questions, total, total_err);
	return 0;
}
