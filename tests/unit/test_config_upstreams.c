/* Unit tests for a service's upstream list as the config loader builds it:
 * duplicates, resolv.conf files (their limit, repeats, scoped and commented
 * nameserver lines) and the bounds of upstream_timeout. */
#include <errno.h>
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

#define SVC "[service d]\nprotocol = dns\nlisten = 127.0.0.1:5300\n"
#define KRB "[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:8800\n"

static void load_ok(const char *text, struct berth_config *cfg)
{
	char err[512] = "";
	int rc = config_load_text("t.conf", text, strlen(text), cfg, err, sizeof(err));
	if (rc != 0)
		fail_msg("load failed (%d): %s\n--- text:\n%s", rc, err, text);
}

/* The load must fail with -EINVAL and a message holding every part. */
static void expect_error(const char *text, const char *part1, const char *part2)
{
	struct berth_config cfg = { 0 };
	char err[512] = "";
	int rc = config_load_text("t.conf", text, strlen(text), &cfg, err, sizeof(err));
	if (rc == 0)
		fail_msg("accepted:\n%s", text);
	if (rc != -EINVAL)
		fail_msg("rc %d (%s), want -EINVAL for:\n%s", rc, err, text);
	if (!strstr(err, part1) || (part2 && !strstr(err, part2)))
		fail_msg("error '%s' lacks '%s' / '%s' for:\n%s", err, part1,
			 part2 ? part2 : "", text);
	assert_null(cfg.services);
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
		cmocka_unit_test(test_upstream_timeout_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
