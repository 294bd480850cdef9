/* Unit tests for a service's upstream list as the config loader builds it:
 * duplicates, resolv.conf files (their limit, repeats, scoped and commented
 * nameserver lines) and the bounds of upstream_timeout. */
#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/config.h"

#include "config_fixture.h"

#define KRB "[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:8800\n"

static void assert_addr(const struct config_addr *a, const char *want)
{
	char buf[128];
	config_format_addr(a, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

/* A resolv.conf with the given text in a fresh temporary file, whose path
 * goes to path (room for 64 bytes); the test unlinks it. */
static void write_resolv(const char *text, char *path)
{
	snprintf(path, 64, "/tmp/berth-test-resolv-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* Load text with every "@" replaced by path. */
static int load_with(const char *text, const char *path, struct berth_config *cfg,
		     char *err, size_t errlen)
{
	char buf[2048];
	size_t k = 0;
	for (const char *s = text; *s; s++) {
		const char *piece = *s == '@' ? path : (char[2]){ *s, '\0' };
		size_t n = strlen(piece);
		assert_true(k + n < sizeof(buf));
		memcpy(buf + k, piece, n);
		k += n;
	}
	buf[k] = '\0';
	return config_load_text("t.conf", buf, k, cfg, err, errlen);
}

static void load_with_ok(const char *text, const char *path, struct berth_config *cfg)
{
	char err[512] = "";
	int rc = load_with(text, path, cfg, err, sizeof(err));
	if (rc != 0)
		fail_msg("load failed (%d): %s\n--- text:\n%s", rc, err, text);
}

static void test_duplicate_upstreams(void **state)
{
	(void)state;
	/* Given twice in the config itself: a mistake, as a second listen is. */
	expect_error(SVC "upstream = 127.0.0.1:53,127.0.0.1:53\n",
		     "t.conf:4: [service d] upstream: 127.0.0.1:53 is given twice "
		     "(in the same list)", NULL);
	expect_error(SVC "upstream = 192.0.2.1, 192.0.2.2,\n  192.0.2.1:53\n",
		     "t.conf:4: [service d] upstream: 192.0.2.1:53 is given twice", NULL);
	expect_error(SVC "upstream = 127.0.0.1:53, [::ffff:127.0.0.1]:53\n",
		     "t.conf:4: [service d] upstream: [::ffff:127.0.0.1]:53 is given "
		     "twice (in the same list, as 127.0.0.1:53)", NULL);
	expect_error(KRB "upstream = 192.0.2.88, 192.0.2.88:88\n",
		     "t.conf:4: [service k] upstream: 192.0.2.88:88 is given twice", NULL);

	/* Another port is another upstream. */
	struct berth_config cfg = { 0 };
	load_ok(SVC "upstream = 127.0.0.1:53, 127.0.0.1:5353\n", &cfg);
	assert_int_equal(cfg.services[0].nupstream, 2);
	config_free(&cfg);

	/* A resolv.conf may repeat itself and the config, as glibc lets it:
	 * each address is used once, where it first appears. */
	char path[64];
	write_resolv("nameserver 192.0.2.1\nnameserver 192.0.2.1\n"
		     "nameserver 192.0.2.2\n", path);
	load_with_ok(SVC "upstream = @\n", path, &cfg);
	assert_int_equal(cfg.services[0].nupstream, 2);
	assert_addr(&cfg.services[0].upstream[0], "192.0.2.1:53");
	assert_addr(&cfg.services[0].upstream[1], "192.0.2.2:53");
	assert_int_equal(cfg.services[0].upstream_left_out, 0);
	config_free(&cfg);

	load_with_ok(SVC "upstream = 192.0.2.2, @\n", path, &cfg);
	assert_int_equal(cfg.services[0].nupstream, 2);
	assert_addr(&cfg.services[0].upstream[0], "192.0.2.2:53");
	assert_addr(&cfg.services[0].upstream[1], "192.0.2.1:53");
	config_free(&cfg);

	load_with_ok(SVC "upstream = @, 192.0.2.2, @\n", path, &cfg);
	assert_int_equal(cfg.services[0].nupstream, 2);
	assert_addr(&cfg.services[0].upstream[0], "192.0.2.1:53");
	assert_addr(&cfg.services[0].upstream[1], "192.0.2.2:53");
	config_free(&cfg);

	/* The config naming it twice stays an error with a file in between. */
	char err[512] = "";
	assert_int_equal(load_with(SVC "upstream = 192.0.2.1, @, 192.0.2.1\n", path,
				   &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:4: [service d] upstream: 192.0.2.1:53 "
			       "is given twice"));
	assert_null(cfg.services);
	unlink(path);
}

static void test_resolv_limit(void **state)
{
	(void)state;
	char path[64], text[512] = "", err[512] = "";
	for (int i = 1; i <= 9; i++) {
		size_t k = strlen(text);
		snprintf(text + k, sizeof(text) - k, "nameserver 10.0.0.%d\n", i);
	}
	write_resolv(text, path);
	struct berth_config cfg = { 0 };

	/* Nine nameservers: the first eight are used, the ninth left out. */
	load_with_ok(SVC "upstream = @\n", path, &cfg);
	const struct config_service *d = &cfg.services[0];
	assert_int_equal(d->nupstream, CONFIG_DNS_MAX_UPSTREAMS);
	assert_addr(&d->upstream[0], "10.0.0.1:53");
	assert_addr(&d->upstream[7], "10.0.0.8:53");
	assert_int_equal(d->upstream_left_out, 1);
	assert_string_equal(d->upstream_left_out_file, path);
	config_free(&cfg);

	/* The config's own addresses are always kept, wherever they are;
	 * the file fills the room left. */
	load_with_ok(SVC "upstream = 192.0.2.1, @, 192.0.2.2\n", path, &cfg);
	d = &cfg.services[0];
	assert_int_equal(d->nupstream, 8);
	assert_addr(&d->upstream[0], "192.0.2.1:53");
	assert_addr(&d->upstream[1], "10.0.0.1:53");
	assert_addr(&d->upstream[6], "10.0.0.6:53");
	assert_addr(&d->upstream[7], "192.0.2.2:53");
	assert_int_equal(d->upstream_left_out, 3);
	config_free(&cfg);

	const char *eight = "192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, "
			    "192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8";
	char conf[512];
	snprintf(conf, sizeof(conf), SVC "upstream = %s, @\n", eight);
	load_with_ok(conf, path, &cfg);
	assert_int_equal(cfg.services[0].nupstream, 8);
	assert_addr(&cfg.services[0].upstream[7], "192.0.2.8:53");
	assert_int_equal(cfg.services[0].upstream_left_out, 9);
	config_free(&cfg);

	/* Nine given in the config load (the dns service's check refuses them,
	 * naming the limit); nothing is left out silently. */
	snprintf(conf, sizeof(conf), SVC "upstream = %s, 192.0.2.9\n", eight);
	load_ok(conf, &cfg);
	assert_int_equal(cfg.services[0].nupstream, 9);
	assert_int_equal(cfg.services[0].upstream_left_out, 0);
	assert_null(cfg.services[0].upstream_left_out_file);
	config_free(&cfg);
	unlink(path);

	/* Repeats do not count towards the limit. */
	write_resolv("nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.1\n"
		     "nameserver 10.0.0.2\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
		     "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n",
		     path);
	assert_int_equal(load_with(SVC "upstream = @\n", path, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.services[0].nupstream, 3);
	assert_int_equal(cfg.services[0].upstream_left_out, 0);
	config_free(&cfg);
	unlink(path);
}

static void test_resolv_lines(void **state)
{
	(void)state;
	char path[64], err[512] = "";
	struct berth_config cfg = { 0 };
	/* A scope, a comment, trailing text: as glibc reads them. */
	write_resolv("nameserver fe80::1%lo\n"
		     "nameserver 192.0.2.1 # the second\n"
		     "nameserver 192.0.2.2 trailing text\n"
		     "nameserver\t192.0.2.3;x\n", path);
	load_with_ok(SVC "upstream = @\n", path, &cfg);
	const struct config_service *d = &cfg.services[0];
	assert_int_equal(d->nupstream, 4);
	assert_int_equal(d->upstream[0].sa.ss_family, AF_INET6);
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&d->upstream[0].sa;
	assert_int_equal(s6->sin6_scope_id, if_nametoindex("lo"));
	assert_int_equal(ntohs(s6->sin6_port), 53);
	assert_addr(&d->upstream[1], "192.0.2.1:53");
	assert_addr(&d->upstream[2], "192.0.2.2:53");
	assert_addr(&d->upstream[3], "192.0.2.3:53");
	config_free(&cfg);
	unlink(path);

	/* A scope naming an interface this host lacks: said so, not "not an
	 * address". */
	write_resolv("nameserver 192.0.2.1\nnameserver fe80::1%nosuch0\n", path);
	assert_int_equal(load_with(SVC "upstream = @\n", path, &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "t.conf:4: [service d] upstream: "));
	assert_non_null(strstr(err, ":2: nameserver 'fe80::1%nosuch0': this host has "
			       "no interface 'nosuch0'"));
	assert_null(cfg.services);
	unlink(path);

	struct config_addr a;
	assert_int_equal(config_parse_addr("[fe80::1%nosuch0]:53", 0, &a, err,
					   sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'[fe80::1%nosuch0]:53': this host has no "
			       "interface 'nosuch0'"));
	assert_int_equal(config_parse_addr("[fe80::1%lo]:53", 0, &a, err, sizeof(err)), 0);
	assert_int_equal(((struct sockaddr_in6 *)&a.sa)->sin6_scope_id, if_nametoindex("lo"));
}

static void test_upstream_timeout_bounds(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	load_ok(SVC "upstream = 192.0.2.1\nupstream_timeout = 60s\n", &cfg);
	assert_int_equal(cfg.services[0].upstream_timeout_ms, 60000);
	config_free(&cfg);
	/* The lower bound is the one every timeout has: more than 0. */
	load_ok(SVC "upstream = 192.0.2.1\nupstream_timeout = 1ms\n", &cfg);
	assert_int_equal(cfg.services[0].upstream_timeout_ms, 1);
	config_free(&cfg);
	expect_error(SVC "upstream = 192.0.2.1\nupstream_timeout = 0\n",
		     "t.conf:5: [service d] upstream_timeout: '0'", "greater than 0");

	expect_error(SVC "upstream = 192.0.2.1\nupstream_timeout = 100000h\n",
		     "t.conf:5: [service d] upstream_timeout: '100000h'", "at most 60s");
	expect_error(SVC "upstream = 192.0.2.1\nupstream_timeout = 60001ms\n",
		     "t.conf:5: [service d] upstream_timeout: '60001ms'", "at most 60s");
	expect_error(SVC "upstream = 192.0.2.1\nupstream_timeout = 2m\n",
		     "t.conf:5: [service d] upstream_timeout: '2m'", "at most 60s");
	/* The kerberos relay's attempts have the same bound. */
	expect_error(KRB "upstream = 192.0.2.88\nupstream_timeout = 61\n",
		     "t.conf:5: [service k] upstream_timeout: '61'", "at most 60s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duplicate_upstreams),
		cmocka_unit_test(test_resolv_limit),
		cmocka_unit_test(test_resolv_lines),
		cmocka_unit_test(test_upstream_timeout_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
