/*
 * config_fixture: loading a config from text in the config loader's unit
 * tests, expecting success or a rejection whose message names what it must.
 */
#ifndef BERTH_TEST_CONFIG_FIXTURE_H
#define BERTH_TEST_CONFIG_FIXTURE_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/config.h"

#define SVC "[service d]\nprotocol = dns\nlisten = 127.0.0.1:5300\n"

static inline void load_ok(const char *text, struct berth_config *cfg)
{
	char err[512] = "";
	int rc = config_load_text("t.conf", text, strlen(text), cfg, err, sizeof(err));
	if (rc != 0)
		fail_msg("load failed (%d): %s\n--- text:\n%s", rc, err, text);
}

/* The load must fail with -EINVAL and a message holding every part. */
static inline void expect_error(const char *text, const char *part1,
				const char *part2)
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
	/* A failed load leaves nothing behind. */
	assert_null(cfg.file);
	assert_null(cfg.services);
	assert_null(cfg.ports.reserved.value);
}

#endif
