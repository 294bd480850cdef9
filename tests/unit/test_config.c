/* Unit tests for the config loader: every key's forms, every rejection and
 * its message, defaults, continuation lines and the built-in default. */
#include <arpa/inet.h>
#include <errno.h>
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

#define DATA BERTH_TEST_DATADIR "/"

static uint16_t port_of(const struct config_addr *a)
{
	if (a->sa.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

static void assert_addr(const struct config_addr *a, const char *want)
{
	char buf[128];
	config_format_addr(a, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void test_durations(void **state)
{
	(void)state;
	static const struct { const char *text; uint64_t ms; } ok[] = {
		{ "250ms", 250 }, { "10s", 10000 }, { "2m", 120000 },
		{ "1h", 3600000 }, { "30", 30000 }, { "0", 0 }, { "0ms", 0 },
		{ "18446744073709551615ms", UINT64_MAX },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t ms = 1;
		char err[128] = "";
		assert_int_equal(config_parse_duration(ok[i].text, &ms, err, sizeof(err)), 0);
		assert_true(ms == ok[i].ms);
	}
	static const char *const garbage[] = {
		"", "-1", "+1", "1.5s", "10x", "s", "ms", "10 s", " 10", "10s ",
		"1d", "10S", "0x10", "1e3",
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		uint64_t ms = 7;
		char err[128] = "";
		assert_int_equal(config_parse_duration(garbage[i], &ms, err, sizeof(err)),
				 -EINVAL);
		assert_true(ms == 7);
		assert_true(err[0] != '\0');
	}
	static const char *const overflow[] = {
		"18446744073709551615", "18446744073709551616ms",
		"99999999999999999999999", "5124095576030432h",
	};
	for (size_t i = 0; i < sizeof(overflow) / sizeof(overflow[0]); i++) {
		uint64_t ms;
		char err[128] = "";
		assert_int_equal(config_parse_duration(overflow[i], &ms, err, sizeof(err)),
				 -ERANGE);
		assert_non_null(strstr(err, "too large"));
	}
}

static void test_booleans(void **state)
{
	(void)state;
	static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
	static const char *const no[] = { "no", "false", "off", "0", "No", "OFF" };
	for (size_t i = 0; i < 6; i++) {
		bool v = false;
		char err[128];
		assert_int_equal(config_parse_bool(yes[i], &v, err, sizeof(err)), 0);
		assert_true(v);
		assert_int_equal(config_parse_bool(no[i], &v, err, sizeof(err)), 0);
		assert_false(v);
	}
	static const char *const bad[] = { "", "maybe", "2", "yes!", "y", "n", " on" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool v;
		char err[128] = "";
		assert_int_equal(config_parse_bool(bad[i], &v, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "not a boolean"));
	}
}

static void test_addresses(void **state)
{
	(void)state;
	static const struct { const char *text; uint16_t def; const char *want; } ok[] = {
		{ "127.0.0.1:5300", 0, "127.0.0.1:5300" },
		{ "192.0.2.1", 53, "192.0.2.1:53" },
		{ "192.0.2.1:88", 53, "192.0.2.1:88" },
		{ "[::1]:5300", 0, "[::1]:5300" },
		{ "[2001:db8::1]", 389, "[2001:db8::1]:389" },
		{ "2001:db8::1", 53, "[2001:db8::1]:53" },
		{ "[fe80::1%3]:53", 0, "[fe80::1%3]:53" },
		{ "0.0.0.0:65535", 0, "0.0.0.0:65535" },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct config_addr a;
		char err[128] = "";
		if (config_parse_addr(ok[i].text, ok[i].def, &a, err, sizeof(err)) != 0)
			fail_msg("'%s' rejected: %s", ok[i].text, err);
		assert_addr(&a, ok[i].want);
		assert_int_equal(a.len, a.sa.ss_family == AF_INET ?
			sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	}
	static const struct { const char *text; uint16_t def; const char *why; } bad[] = {
		{ "127.0.0.1", 0, "has no port" },
		{ "::1", 0, "has no port" },
		{ "127.0.0.1:0", 0, "bad port" },
		{ "127.0.0.1:65536", 0, "bad port" },
		{ "127.0.0.1:53x", 53, "bad port" },
		{ "127.0.0.1:", 53, "bad port" },
		{ "localhost:53", 0, "not a numeric IP address" },
		{ "127.1:53", 0, "not a numeric IP address" },
		{ "256.0.0.1:53", 0, "not a numeric IP address" },
		{ "[::1:53", 0, "not an address" },
		{ "[::1]53", 0, "not an address" },
		{ "[]:53", 0, "not a numeric IP address" },
		{ ":53", 0, "not a numeric IP address" },
		{ "", 53, "not a numeric IP address" },
		{ "[fe80::1%nosuchif0]:53", 0, "this host has no interface 'nosuchif0'" },
		{ "[fe80::x%lo]:53", 0, "not a numeric IP address" },
		{ "[fe80::1%0]:53", 0, "not a numeric IP address" },
		{ "[fe80::1%]:53", 0, "not a numeric IP address" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_addr a;
		char err[128] = "";
		if (config_parse_addr(bad[i].text, bad[i].def, &a, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i].text);
		if (!strstr(err, bad[i].why))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].text, err, bad[i].why);
	}
}

static void test_full_file(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	char err[512] = "";
	if (config_load(DATA "config_full.conf", &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(cfg.file, DATA "config_full.conf");
	assert_ptr_equal(cfg.ports.file, cfg.file);

	const struct plan_spec *s = &cfg.ports;
	assert_int_equal(cfg.ports_line, 2);
	assert_string_equal(s->dynamic_range.value, "49152-65535");
	assert_int_equal(s->dynamic_range.line, 3);
	assert_string_equal(s->dynamic_start.value, "50000");
	assert_string_equal(s->dynamic_count.value, "1000");
	assert_string_equal(s->max_user_port.value, "5000");
	assert_int_equal(s->max_user_port.line, 6);
	assert_string_equal(s->max_user_port_semantics.value, "legacy");
	assert_string_equal(s->from_kernel.value, "no");
	assert_string_equal(s->reserved.value, "1433-1434, 4500-4500, 3343");
	assert_int_equal(s->reserved.line, 9);
	assert_string_equal(s->reserved_catalog.value, "ad, sbs");
	assert_string_equal(s->catalog_dir.value, "/etc/berth/catalog");
	assert_string_equal(s->avoid_in_use.value, "off");
	assert_int_equal(s->pool_size, 1000);
	assert_int_equal(s->pool_size_line, 16);

	assert_true(cfg.pool.present);
	assert_int_equal(cfg.pool.line, 15);
	assert_int_equal(cfg.pool.size, 1000);
	assert_int_equal(cfg.pool.mode, CONFIG_POOL_PER_QUERY);
	assert_true(cfg.pool.rotate_ms == 600000);

	assert_int_equal(cfg.nservices, 3);
	const struct config_service *d = &cfg.services[0];
	assert_string_equal(d->name, "dns");
	assert_int_equal(d->line, 20);
	assert_int_equal(d->protocol, CONFIG_PROTO_DNS);
	assert_int_equal(d->nlisten, 2);
	assert_int_equal(d->listen_line, 22);
	assert_addr(&d->listen[0], "127.0.0.1:5300");
	assert_addr(&d->listen[1], "[::1]:5300");
	assert_int_equal(d->nupstream, 3);
	assert_int_equal(d->upstream_line, 23);
	assert_addr(&d->upstream[0], "192.0.2.1:53");
	assert_addr(&d->upstream[1], "192.0.2.2:5353");
	assert_addr(&d->upstream[2], "[2001:db8::1]:53");
	assert_true(d->new_connection_timeout_ms == 250);
	assert_true(d->idle_timeout_ms == 30000);
	assert_true(d->upstream_timeout_ms == 1000);
	assert_true(d->reset_on_timeout);
	assert_string_equal(d->hosts, "/etc/hosts");
	assert_true(d->dns_0x20);
	assert_int_equal(portset_count(&d->blocked_source_ports), 5);
	assert_true(portset_has(&d->blocked_source_ports, 1001));
	assert_false(portset_has(&d->blocked_source_ports, 464));
	assert_int_equal(d->max_sessions, 1000000);
	assert_null(d->tls_cert);

	const struct config_service *k = &cfg.services[1];
	assert_string_equal(k->name, "kdc");
	assert_int_equal(k->line, 33);
	assert_int_equal(k->protocol, CONFIG_PROTO_KERBEROS);
	assert_addr(&k->upstream[0], "192.0.2.88:88");
	assert_null(k->hosts);
	assert_false(k->dns_0x20);
	assert_true(k->new_connection_timeout_ms == 10000);
	assert_true(k->idle_timeout_ms == 120000);
	assert_true(k->upstream_timeout_ms == 2000);
	assert_false(k->reset_on_timeout);
	assert_int_equal(k->max_sessions, 10000);

	const struct config_service *l = &cfg.services[2];
	assert_int_equal(l->protocol, CONFIG_PROTO_LDAP);
	assert_addr(&l->listen[0], "0.0.0.0:6360");
	assert_addr(&l->upstream[0], "192.0.2.10:636");
	assert_string_equal(l->tls_cert, "/etc/berth/ldap.crt");
	assert_string_equal(l->tls_key, "/etc/berth/ldap.key");
	assert_int_equal(l->max_sessions, 1);

	assert_string_equal(cfg.control.socket, "/run/test/berth.sock");
	assert_int_equal(cfg.control.line, 47);
	assert_true(cfg.metrics.enabled);
	assert_int_equal(cfg.metrics.line, 50);
	assert_addr(&cfg.metrics.listen, "127.0.0.1:9153");

	config_free(&cfg);
	assert_null(cfg.file);
	assert_int_equal(cfg.nservices, 0);
	config_free(&cfg);
}

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	load_ok("[ports]\n", &cfg);
	assert_int_equal(cfg.ports_line, 1);
	assert_null(cfg.ports.from_kernel.value);
	assert_int_equal(cfg.ports.from_kernel.line, 0);
	assert_false(cfg.pool.present);
	assert_int_equal(cfg.pool.size, 2500);
	assert_int_equal(cfg.pool.mode, CONFIG_POOL_PREBOUND);
	assert_true(cfg.pool.rotate_ms == 0);
	assert_int_equal(cfg.ports.pool_size, 0);
	assert_int_equal(cfg.nservices, 0);
	assert_false(cfg.metrics.enabled);
	assert_string_equal(cfg.file, "t.conf");
	config_free(&cfg);

	/* An empty [pool] section is present with its defaults. */
	load_ok("; pool\n[pool]\n[metrics]\n[control]\n", &cfg);
	assert_true(cfg.pool.present);
	assert_int_equal(cfg.ports.pool_size, 2500);
	assert_int_equal(cfg.ports.pool_size_line, 2);
	assert_false(cfg.metrics.enabled);
	assert_true(cfg.control.socket[0] == '/');
	config_free(&cfg);

	load_ok("[pool]\nmode = pool\nrotate = 250ms\nsize = 65535\n", &cfg);
	assert_int_equal(cfg.pool.mode, CONFIG_POOL_PREBOUND);
	assert_true(cfg.pool.rotate_ms == 250);
	assert_int_equal(cfg.ports.pool_size, 65535);
	assert_int_equal(cfg.ports.pool_size_line, 4);
	config_free(&cfg);
}

static void test_protocol_defaults(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	load_ok("[service a]\nprotocol = dns\nlisten = 127.0.0.1:1\nupstream = 192.0.2.1\n"
		"[service b]\nprotocol = kerberos\nlisten = 127.0.0.1:2\nupstream = 192.0.2.1\n"
		"[service c]\nprotocol = ldap\nlisten = 127.0.0.1:3\nupstream = 192.0.2.1\n"
		"[service e]\nprotocol = dns\nlisten = 127.0.0.1:4\nupstream = 192.0.2.1\n"
		"blocked_source_ports =\n", &cfg);
	assert_int_equal(cfg.nservices, 4);
	const struct portset *dns = &cfg.services[0].blocked_source_ports;
	assert_int_equal(portset_count(dns), 6);
	static const uint16_t dns_blocked[] = { 0, 7, 13, 19, 37, 464 };
	for (size_t i = 0; i < 6; i++)
		assert_true(portset_has(dns, dns_blocked[i]));
	assert_false(portset_has(dns, 53));
	const struct portset *krb = &cfg.services[1].blocked_source_ports;
	assert_int_equal(portset_count(krb), 2);
	assert_true(portset_has(krb, 88) && portset_has(krb, 464));
	assert_int_equal(portset_count(&cfg.services[2].blocked_source_ports), 0);
	assert_int_equal(portset_count(&cfg.services[3].blocked_source_ports), 0);
	assert_int_equal(port_of(&cfg.services[0].upstream[0]), 53);
	assert_int_equal(port_of(&cfg.services[1].upstream[0]), 88);
	assert_int_equal(port_of(&cfg.services[2].upstream[0]), 389);
	config_free(&cfg);

	/* dns without upstream is fine when it answers from hosts alone. */
	load_ok(SVC "hosts = /etc/hosts\n", &cfg);
	assert_int_equal(cfg.services[0].nupstream, 0);
	assert_int_equal(cfg.services[0].upstream_line, 0);
	config_free(&cfg);
}

static void test_resolv_conf(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	load_ok(SVC "upstream = 192.0.2.7, " DATA "config_resolv.conf,\n"
		"  [2001:db8::7]:5353\n", &cfg);
	const struct config_service *d = &cfg.services[0];
	assert_int_equal(d->nupstream, 4);
	assert_addr(&d->upstream[0], "192.0.2.7:53");
	assert_addr(&d->upstream[1], "192.0.2.53:53");
	assert_addr(&d->upstream[2], "[2001:db8::53]:53");
	assert_addr(&d->upstream[3], "[2001:db8::7]:5353");
	config_free(&cfg);

	load_ok(SVC "upstream = " DATA "config_resolv_empty.conf\nhosts = /h\n", &cfg);
	assert_int_equal(cfg.services[0].nupstream, 0);
	config_free(&cfg);

	expect_error(SVC "upstream = " DATA "config_resolv_empty.conf\n",
		     "t.conf:4: [service d] upstream:", "allowed only when hosts is set");
	expect_error(SVC "upstream = " DATA "config_resolv_bad.conf\n",
		     "t.conf:4: [service d] upstream:",
		     "config_resolv_bad.conf:3: nameserver 'dns.example.test' is not a numeric IP address");

	struct berth_config c2 = { 0 };
	char err[512] = "";
	const char *missing = SVC "upstream = /nonexistent/resolv.conf\n";
	assert_int_equal(config_load_text("t.conf", missing, strlen(missing), &c2, err,
					  sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "t.conf:4: [service d] upstream: /nonexistent/resolv.conf:"));
	assert_null(c2.services);
}

static void test_control_socket(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	char *saved = getenv("XDG_RUNTIME_DIR") ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;

	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	load_ok("[control]\nsocket = berth.sock\n", &cfg);
	assert_string_equal(cfg.control.socket, "/run/user/4242/berth.sock");
	assert_int_equal(cfg.control.line, 2);
	config_free(&cfg);
	load_ok("[pool]\n", &cfg);
	assert_string_equal(cfg.control.socket, "/run/user/4242/berth.sock");
	assert_int_equal(cfg.control.line, 0);
	config_free(&cfg);
	load_ok("[control]\nsocket = sub/ctl.sock\n", &cfg);
	assert_string_equal(cfg.control.socket, "/run/user/4242/sub/ctl.sock");
	config_free(&cfg);
	load_ok("[control]\nsocket = /var/tmp/b.sock\n", &cfg);
	assert_string_equal(cfg.control.socket, "/var/tmp/b.sock");
	assert_false(cfg.control.private_dir);
	assert_string_equal(cfg.control.root_fallback, "");
	config_free(&cfg);

	/* Root with a runtime dir (a login shell) also knows where root's
	 * berthd without one (systemd's) puts the same relative socket. */
	load_ok("[control]\nsocket = sub/ctl.sock\n", &cfg);
	assert_string_equal(cfg.control.root_fallback,
			    geteuid() == 0 ? "/run/berth/sub/ctl.sock" : "");
	config_free(&cfg);
	load_ok("[pool]\n", &cfg);
	assert_string_equal(cfg.control.root_fallback,
			    geteuid() == 0 ? "/run/berth/berth.sock" : "");
	config_free(&cfg);
	/* The runtime dir that is /run/berth already has nothing to add. */
	setenv("XDG_RUNTIME_DIR", "/run/berth", 1);
	load_ok("[pool]\n", &cfg);
	assert_string_equal(cfg.control.socket, "/run/berth/berth.sock");
	assert_string_equal(cfg.control.root_fallback, "");
	config_free(&cfg);
	/* A name that fits under /x but not under /run/berth: no fallback, and
	 * no error either, since the socket itself is fine. */
	char text[160], name[101];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text), "[control]\nsocket = %s\n", name);
	setenv("XDG_RUNTIME_DIR", "/x", 1);
	load_ok(text, &cfg);
	assert_int_equal(strlen(cfg.control.socket), 103);
	assert_string_equal(cfg.control.root_fallback, "");
	config_free(&cfg);
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);

	/* Without a (usable) runtime dir: /run/berth for root, else /tmp. */
	char want[128];
	if (geteuid() == 0)
		snprintf(want, sizeof(want), "/run/berth/berth.sock");
	else
		snprintf(want, sizeof(want), "/tmp/berth-%u/berth.sock", (unsigned)geteuid());
	unsetenv("XDG_RUNTIME_DIR");
	load_ok("[control]\n", &cfg);
	assert_string_equal(cfg.control.socket, want);
	/* Only the /tmp fallback needs its directory checked. */
	assert_int_equal(cfg.control.private_dir, geteuid() != 0);
	assert_string_equal(cfg.control.root_fallback, "");
	config_free(&cfg);
	setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
	load_ok("[control]\n", &cfg);
	assert_string_equal(cfg.control.socket, want);
	config_free(&cfg);

	char longdir[140];
	memset(longdir, 'x', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	setenv("XDG_RUNTIME_DIR", longdir, 1);
	expect_error("[control]\nsocket = berth.sock\n",
		     "t.conf:2: [control] socket:", "longer than the 107 bytes");
	expect_error("[pool]\n", "t.conf: [control] socket:", "longer than the 107 bytes");
	expect_error("[control]\nsocket =\n", "t.conf:2: [control] socket:", "empty path");

	if (saved)
		setenv("XDG_RUNTIME_DIR", saved, 1);
	else
		unsetenv("XDG_RUNTIME_DIR");
	free(saved);
}

static void test_continuation(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	load_ok("[ports]\nreserved = 1000,\n\t2000 ; first\n\n    3000-3001\n"
		"reserved_catalog = ad\n", &cfg);
	assert_string_equal(cfg.ports.reserved.value, "1000, 2000 3000-3001");
	assert_int_equal(cfg.ports.reserved.line, 2);
	assert_string_equal(cfg.ports.reserved_catalog.value, "ad");
	assert_int_equal(cfg.ports.reserved_catalog.line, 6);
	config_free(&cfg);

	/* A value may start on the continuation line. */
	load_ok(SVC "upstream =\n  192.0.2.1\n  192.0.2.2:54\n", &cfg);
	assert_int_equal(cfg.services[0].nupstream, 2);
	assert_addr(&cfg.services[0].upstream[1], "192.0.2.2:54");
	config_free(&cfg);

	/* An indented first key of a section is a key, not a continuation. */
	load_ok("[pool]\n  size = 7\n", &cfg);
	assert_int_equal(cfg.pool.size, 7);
	config_free(&cfg);

	/* Unindented, the same key again is a duplicate. */
	expect_error("[ports]\nreserved = 1000\nreserved = 2000\n",
		     "t.conf:3: [ports] reserved: duplicate key", "first set at line 2");
	/* "key: value" reads as "key = value". */
	load_ok("[pool]\nsize: 9\n", &cfg);
	assert_int_equal(cfg.pool.size, 9);
	config_free(&cfg);

	/* An indented "key = value" continues the previous value. */
	load_ok("[ports]\nreserved = 1000\n  reserved = 2000\n", &cfg);
	assert_string_equal(cfg.ports.reserved.value, "1000 reserved = 2000");
	config_free(&cfg);
}

static void test_long_lines(void **state)
{
	(void)state;
	char text[400];
	struct berth_config cfg = { 0 };
	/* 197 characters fit: "reserved = " (11) + 186 digits and commas. */
	int n = snprintf(text, sizeof(text), "[ports]\nreserved = %0186d\n", 0);
	assert_true(n > 0);
	load_ok(text, &cfg);
	assert_int_equal(strlen(cfg.ports.reserved.value), 186);
	config_free(&cfg);
	snprintf(text, sizeof(text), "[ports]\nreserved = %0187d\n", 0);
	expect_error(text, "t.conf:2: line is longer than 197 characters", NULL);

	char err[512] = "";
	assert_int_equal(config_load(DATA "config_long_line.conf", &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "config_long_line.conf:3: line is longer than 197"));
	assert_null(cfg.file);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	static const struct { const char *text, *part1, *part2; } cases[] = {
		{ "size = 1\n", "t.conf:1: size: key outside any section", NULL },
		{ "[pool]\nsize 5\n", "t.conf:2: expected '[section]' or 'key = value'", NULL },
		{ "[pool]\n= 5\n", "t.conf:2: [pool]: missing key name", NULL },
		{ "[pool\nsize = 1\n", "t.conf:1: section header has no closing ']'", NULL },
		{ "[pool ;x]\n", "t.conf:1: section header has no closing ']'", NULL },
		{ "[pool] x\n", "t.conf:1: unexpected text after ']'", NULL },
		{ "\n[poool]\n", "t.conf:2: [poool]: unknown section", NULL },
		{ "[service]\n", "t.conf:1: [service]:", "needs a name" },
		{ "[servicedns]\n", "t.conf:1: [servicedns]: unknown section", NULL },
		{ "[service a/b]\n", "t.conf:1: [service a/b]:", "letters, digits" },
		{ "[service aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", "t.conf:1:",
		  "longer than 32" },
		{ "[pool]\n[pool]\n", "t.conf:2: [pool]: duplicate section", "first at line 1" },
		{ SVC "upstream = 192.0.2.1\n[service d]\n",
		  "t.conf:5: [service d]: duplicate section", "first at line 1" },
		{ "[pool]\nsise = 5\n", "t.conf:2: [pool] sise: unknown key", NULL },
		{ "[ports]\nrange = 1-2\n", "t.conf:2: [ports] range: unknown key", NULL },
		{ "[control]\nlisten = x\n", "t.conf:2: [control] listen: unknown key", NULL },
		{ "[metrics]\nsocket = x\n", "t.conf:2: [metrics] socket: unknown key", NULL },
		{ SVC "size = 5\n", "t.conf:4: [service d] size: unknown key", NULL },
		{ SVC "listen 127.0.0.1:5300\n",
		  "t.conf:4: [service d] listen 127.0.0.1: unknown key",
		  "is the '=' missing?" },
		{ "[pool]\nsize = 5\nsize = 6\n", "t.conf:3: [pool] size: duplicate key",
		  "line 2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(cases[i].text, cases[i].part1, cases[i].part2);

	/* A NUL byte inside the text is an error, not the end of the file. */
	struct berth_config cfg = { 0 };
	char err[256] = "";
	static const char nul[] = "[pool]\nsize = 5\0junk\n";
	assert_int_equal(config_load_text("t.conf", nul, sizeof(nul) - 1, &cfg, err,
					  sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:2: line contains a NUL byte"));
}

static void test_value_errors(void **state)
{
	(void)state;
	static const struct { const char *text, *part1, *part2; } cases[] = {
		{ "[pool]\nsize = 25x0\n", "t.conf:2: [pool] size: '25x0' is not a number", NULL },
		{ "[pool]\nsize = 0\n", "t.conf:2: [pool] size:", "out of range 1..65535" },
		{ "[pool]\nsize = 65536\n", "t.conf:2: [pool] size:", "out of range" },
		{ "[pool]\nsize = -5\n", "t.conf:2: [pool] size:", "not a number" },
		{ "[pool]\nsize =\n", "t.conf:2: [pool] size:", "not a number" },
		{ "[pool]\nsize = 99999999999999999999\n", "t.conf:2: [pool] size:", "out of range" },
		{ "[pool]\nsize = 99999999999x\n", "t.conf:2: [pool] size:", "not a number" },
		{ "[pool]\nmode = lazy\n", "t.conf:2: [pool] mode: 'lazy'", "pool or per-query" },
		{ "[pool]\nrotate = soon\n", "t.conf:2: [pool] rotate: 'soon'", "not a duration" },
		{ "[pool]\nrotate = -1s\n", "t.conf:2: [pool] rotate:", NULL },
		{ "[pool]\nrotate = 99999999999999999999h\n", "t.conf:2: [pool] rotate:", "too large" },
		{ "[pool]\nrotate = 1200h\n", "t.conf:2: [pool] rotate: '1200h'", "at most 4294967295ms" },
		{ "[service d]\nlisten = 127.0.0.1:1\n", "t.conf:1: [service d] protocol: missing", NULL },
		{ "[service d]\nprotocol = http\n", "t.conf:2: [service d] protocol: 'http'", NULL },
		{ "[service d]\nprotocol = dns\nupstream = 192.0.2.1\n",
		  "t.conf:1: [service d] listen: missing", NULL },
		{ "[service d]\nprotocol = kerberos\nlisten = 127.0.0.1:1\n",
		  "t.conf:1: [service d] upstream: missing", NULL },
		{ SVC, "t.conf:1: [service d] upstream: missing", "upstream, hosts, or both" },
		{ SVC "upstream = \n", "t.conf:4: [service d] upstream: empty list", NULL },
		{ SVC "upstream = 192.0.2.1,,192.0.2.2\n", "t.conf:4: [service d] upstream:",
		  "empty entry" },
		{ SVC "upstream = 192.0.2.1,\n", "t.conf:4: [service d] upstream:", "empty entry" },
		{ SVC "upstream = ns.example.test\n", "t.conf:4: [service d] upstream:",
		  "'ns.example.test' is not a numeric IP address" },
		{ "[service d]\nprotocol = dns\nlisten = 127.0.0.1\nupstream = 192.0.2.1\n",
		  "t.conf:3: [service d] listen: '127.0.0.1' has no port", NULL },
		{ "[service d]\nprotocol = dns\nlisten = 127.0.0.1:99999\nupstream = 192.0.2.1\n",
		  "t.conf:3: [service d] listen:", "bad port" },
		{ "[service d]\nprotocol = dns\nlisten = /etc/hosts\nupstream = 192.0.2.1\n",
		  "t.conf:3: [service d] listen:", "not an address" },
		{ "[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:1\nupstream = /etc/resolv.conf\n",
		  "t.conf:4: [service k] upstream:", "only a dns upstream" },
		{ "[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:1\nupstream = 192.0.2.1\n"
		  "hosts = /etc/hosts\n", "t.conf:5: [service k] hosts:", "only valid for protocol dns" },
		{ "[service k]\nprotocol = ldap\nlisten = 127.0.0.1:1\nupstream = 192.0.2.1\n"
		  "dns_0x20 = yes\n", "t.conf:5: [service k] dns_0x20:", "only valid for protocol dns" },
		{ SVC "upstream = 192.0.2.1\ntls_cert = /c\n", "t.conf:5: [service d] tls_cert:",
		  "only valid for protocol ldap" },
		{ "[service l]\nprotocol = ldap\nlisten = 127.0.0.1:1\nupstream = 192.0.2.1\n"
		  "tls_cert = /c\n", "t.conf:1: [service l] tls_key: missing", "together" },
		{ "[service l]\nprotocol = ldap\nlisten = 127.0.0.1:1\nupstream = 192.0.2.1\n"
		  "tls_key = /k\n", "t.conf:1: [service l] tls_cert: missing", NULL },
		{ SVC "upstream = 192.0.2.1\nhosts =\n", "t.conf:5: [service d] hosts: empty path", NULL },
		{ SVC "upstream = 192.0.2.1\nidle_timeout = 0\n", "t.conf:5: [service d] idle_timeout:",
		  "greater than 0" },
		{ SVC "upstream = 192.0.2.1\nnew_connection_timeout = 10q\n",
		  "t.conf:5: [service d] new_connection_timeout:", "not a duration" },
		{ SVC "upstream = 192.0.2.1\nupstream_timeout = 2.5s\n",
		  "t.conf:5: [service d] upstream_timeout:", "not a duration" },
		{ SVC "upstream = 192.0.2.1\nreset_on_timeout = perhaps\n",
		  "t.conf:5: [service d] reset_on_timeout:", "not a boolean" },
		{ SVC "upstream = 192.0.2.1\ndns_0x20 = 2\n", "t.conf:5: [service d] dns_0x20:",
		  "not a boolean" },
		{ SVC "upstream = 192.0.2.1\nblocked_source_ports = 90-80\n",
		  "t.conf:5: [service d] blocked_source_ports:", NULL },
		{ SVC "upstream = 192.0.2.1\nmax_sessions = 0\n", "t.conf:5: [service d] max_sessions:",
		  "out of range 1..1000000" },
		{ SVC "upstream = 192.0.2.1\nmax_sessions = 1000001\n",
		  "t.conf:5: [service d] max_sessions:", "out of range" },
		{ "[metrics]\nlisten = 127.0.0.1\n", "t.conf:2: [metrics] listen:", "has no port" },
		{ "[metrics]\nlisten = metrics.local:9153\n", "t.conf:2: [metrics] listen:",
		  "not a numeric IP address" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(cases[i].text, cases[i].part1, cases[i].part2);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	char err[256] = "";
	assert_int_equal(config_load(DATA "config_nonexistent.conf", &cfg, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "config_nonexistent.conf: No such file"));
	assert_null(cfg.file);
	config_free(&cfg);
}

/* A device, a FIFO or a directory would block or never end: refused. */
static void test_not_regular_files(void **state)
{
	(void)state;
	const char *paths[] = { "/dev/zero", "/dev/null", "/tmp" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct berth_config cfg = { 0 };
		char err[256] = "";
		assert_int_equal(config_load(paths[i], &cfg, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, paths[i]));
		assert_non_null(strstr(err, "not a regular file"));
		config_free(&cfg);
	}
	expect_error("[service d]\nprotocol = dns\nlisten = 127.0.0.1:53\n"
		     "upstream = /dev/zero\n",
		     "t.conf:4: [service d] upstream", "/dev/zero: not a regular file");
}

static void assert_setting_equal(const struct plan_setting *a, const struct plan_setting *b)
{
	assert_int_equal(a->line, b->line);
	if (a->value || b->value) {
		assert_non_null(a->value);
		assert_non_null(b->value);
		assert_string_equal(a->value, b->value);
	}
}

static void assert_addrs_equal(const struct config_addr *a, const struct config_addr *b,
			       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].len, b[i].len);
		assert_memory_equal(&a[i].sa, &b[i].sa, a[i].len);
	}
}

static void assert_opt_string_equal(const char *a, const char *b)
{
	if (a || b) {
		assert_non_null(a);
		assert_non_null(b);
		assert_string_equal(a, b);
	}
}

static void test_builtin_default(void **state)
{
	(void)state;
	/* The embedded text is conf/berth.conf byte for byte. */
	FILE *f = fopen(DATA "../../../conf/berth.conf", "r");
	assert_non_null(f);
	static char disk[65536];
	size_t n = fread(disk, 1, sizeof(disk), f);
	fclose(f);
	assert_int_equal(n, config_default_len);
	assert_memory_equal(disk, config_default_text, n);
	assert_int_equal(config_default_text[config_default_len], '\0');

	setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
	struct berth_config def = { 0 }, file = { 0 };
	char err[512] = "";
	if (config_load_default(&def, err, sizeof(err)) != 0)
		fail_msg("built-in default: %s", err);
	if (config_load(DATA "../../../conf/berth.conf", &file, err, sizeof(err)) != 0)
		fail_msg("conf/berth.conf: %s", err);
	assert_string_equal(def.file, "<built-in>");
	assert_string_equal(def.ports.file, "<built-in>");

	/* What the contract promises of the default. */
	assert_string_equal(def.ports.from_kernel.value, "yes");
	assert_string_equal(def.ports.reserved_catalog.value, "ad");
	assert_string_equal(def.ports.avoid_in_use.value, "yes");
	assert_null(def.ports.dynamic_range.value);
	assert_null(def.ports.reserved.value);
	assert_true(def.pool.present);
	assert_int_equal(def.ports.pool_size, 2500);
	assert_int_equal(def.pool.mode, CONFIG_POOL_PREBOUND);
	assert_true(def.pool.rotate_ms == 0);
	assert_int_equal(def.nservices, 1);
	assert_string_equal(def.services[0].name, "dns");
	assert_int_equal(def.services[0].protocol, CONFIG_PROTO_DNS);
	assert_int_equal(def.services[0].nlisten, 1);
	assert_addr(&def.services[0].listen[0], "127.0.0.1:5300");
	assert_string_equal(def.services[0].hosts, "/etc/hosts");
	assert_string_equal(def.control.socket, "/run/user/77/berth.sock");
	assert_false(def.metrics.enabled);

	/* Field by field, the built-in default equals the file on disk. */
	static const size_t settings[] = {
		offsetof(struct plan_spec, dynamic_range),
		offsetof(struct plan_spec, dynamic_start),
		offsetof(struct plan_spec, dynamic_count),
		offsetof(struct plan_spec, max_user_port),
		offsetof(struct plan_spec, max_user_port_semantics),
		offsetof(struct plan_spec, from_kernel),
		offsetof(struct plan_spec, reserved),
		offsetof(struct plan_spec, reserved_catalog),
		offsetof(struct plan_spec, catalog_dir),
		offsetof(struct plan_spec, avoid_in_use),
	};
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		assert_setting_equal(
			(const struct plan_setting *)((const char *)&def.ports + settings[i]),
			(const struct plan_setting *)((const char *)&file.ports + settings[i]));
	assert_int_equal(def.ports_line, file.ports_line);
	assert_int_equal(def.ports.pool_size, file.ports.pool_size);
	assert_int_equal(def.ports.pool_size_line, file.ports.pool_size_line);
	/* Field by field: the padding after `present` need not match. */
	assert_int_equal(def.pool.present, file.pool.present);
	assert_int_equal(def.pool.line, file.pool.line);
	assert_int_equal(def.pool.size, file.pool.size);
	assert_int_equal(def.pool.mode, file.pool.mode);
	assert_int_equal(def.pool.rotate_ms, file.pool.rotate_ms);
	assert_int_equal(def.nservices, file.nservices);
	for (size_t i = 0; i < def.nservices; i++) {
		const struct config_service *a = &def.services[i], *b = &file.services[i];
		assert_string_equal(a->name, b->name);
		assert_int_equal(a->line, b->line);
		assert_int_equal(a->protocol, b->protocol);
		assert_int_equal(a->nlisten, b->nlisten);
		assert_int_equal(a->listen_line, b->listen_line);
		assert_addrs_equal(a->listen, b->listen, a->nlisten);
		assert_int_equal(a->nupstream, b->nupstream);
		assert_int_equal(a->upstream_line, b->upstream_line);
		assert_addrs_equal(a->upstream, b->upstream, a->nupstream);
		assert_true(a->new_connection_timeout_ms == b->new_connection_timeout_ms);
		assert_true(a->idle_timeout_ms == b->idle_timeout_ms);
		assert_true(a->upstream_timeout_ms == b->upstream_timeout_ms);
		assert_int_equal(a->reset_on_timeout, b->reset_on_timeout);
		assert_opt_string_equal(a->hosts, b->hosts);
		assert_int_equal(a->dns_0x20, b->dns_0x20);
		assert_memory_equal(&a->blocked_source_ports, &b->blocked_source_ports,
				    sizeof(a->blocked_source_ports));
		assert_int_equal(a->max_sessions, b->max_sessions);
		assert_opt_string_equal(a->tls_cert, b->tls_cert);
		assert_opt_string_equal(a->tls_key, b->tls_key);
	}
	assert_string_equal(def.control.socket, file.control.socket);
	assert_int_equal(def.control.line, file.control.line);
	assert_int_equal(def.control.private_dir, file.control.private_dir);
	assert_string_equal(def.control.root_fallback, file.control.root_fallback);
	assert_int_equal(def.metrics.enabled, file.metrics.enabled);
	assert_int_equal(def.metrics.line, file.metrics.line);
	config_free(&def);
	config_free(&file);
	unsetenv("XDG_RUNTIME_DIR");
}

static void test_free_is_safe(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
	config_free(&cfg);
	config_free(&cfg);
	load_ok(SVC "upstream = 192.0.2.1\n", &cfg);
	config_free(&cfg);
	assert_null(cfg.services);
	config_free(&cfg);
}
/* Listeners that could never all bind, and upstreams that lead back into
 * berthd, are refused at load with the line that closes the trap. */
static void test_listen_and_upstream_loops(void **state)
{
	(void)state;
	struct berth_config cfg = { 0 };
#define DNS_AT(name, addr) "[service " name "]\nprotocol = dns\nlisten = " addr "\n"
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:5300, 127.0.0.1:5300")
		     "hosts = /h\n",
		     "t.conf:4: [service d] listen:",
		     "127.0.0.1:5300 is given twice (in the same list)");
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:5300") "hosts = /h\n"
		     "[service k]\nprotocol = kerberos\nlisten = 0.0.0.0:5300\n"
		     "upstream = 192.0.2.88\n",
		     "t.conf:8: [service k] listen:",
		     "0.0.0.0:5300 collides with 127.0.0.1:5300 of [service d] (line 4)");
	expect_error("[pool]\n" DNS_AT("d", "[::]:5300") "hosts = /h\n"
		     "[metrics]\nlisten = [::1]:5300\n",
		     "t.conf:7: [metrics] listen:",
		     "[::1]:5300 collides with [::]:5300 of [service d] (line 4)");
	/* IPv6 listeners are IPv6-only: both wildcards bind. */
	load_ok("[pool]\n" DNS_AT("d", "0.0.0.0:5300, [::]:5300") "hosts = /h\n", &cfg);
	config_free(&cfg);

	/* One service, its own listener as upstream: directly, through the
	 * wildcard, through a resolv.conf naming the local forwarder. */
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:5300")
		     "upstream = 192.0.2.1, 127.0.0.1:5300\n",
		     "t.conf:5: [service d] upstream:",
		     "127.0.0.1:5300 reaches this service's own listener 127.0.0.1:5300 (line 4)");
	expect_error("[pool]\n" DNS_AT("d", "0.0.0.0:5300") "upstream = 127.0.0.9:5300\n",
		     "t.conf:5: [service d] upstream:",
		     "127.0.0.9:5300 reaches this service's own listener 0.0.0.0:5300");
	expect_error("[pool]\n" DNS_AT("d", "[::]:53") "upstream = [::1]\n",
		     "t.conf:5: [service d] upstream:", "[::1]:53 reaches this service's own");
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:53")
		     "upstream = " DATA "config_resolv_self.conf\n",
		     "t.conf:5: [service d] upstream:", "127.0.0.1:53 reaches this service's own");
	/* As the kernel compares: an IPv4-mapped upstream is its IPv4
	 * address, and a scope on a non-link-local address is no difference. */
	expect_error("[service k]\nprotocol = kerberos\nlisten = 127.0.0.1:8877\n"
		     "upstream = [::ffff:127.0.0.1]:8877\n",
		     "t.conf:4: [service k] upstream:",
		     "[::ffff:127.0.0.1]:8877 reaches this service's own listener 127.0.0.1:8877");
	expect_error("[pool]\n" DNS_AT("d", "[::1]:5300, [::1%lo]:5300") "hosts = /h\n",
		     "t.conf:4: [service d] listen:", "is given twice");
	/* A wildcard upstream names no host (the kernel sends to this one). */
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:5377") "upstream = 0.0.0.0:5377\n",
		     "t.conf:5: [service d] upstream:",
		     "0.0.0.0:5377 is a wildcard address, which names no host to send to");
	expect_error("[pool]\n" DNS_AT("d", "127.0.0.1:53") "upstream = 192.0.2.1, [::]\n",
		     "t.conf:5: [service d] upstream:", "[::]:53 is a wildcard address");
	/* Another port, another address, or a remote upstream behind a
	 * wildcard listener: no loop. */
	load_ok("[pool]\n" DNS_AT("d", "127.0.0.1:5300") "upstream = 127.0.0.1:5301\n", &cfg);
	config_free(&cfg);
	load_ok("[pool]\n" DNS_AT("d", "127.0.0.1:53") "upstream = 127.0.0.2:53\n", &cfg);
	config_free(&cfg);
	load_ok("[pool]\n" DNS_AT("d", "0.0.0.0:53") "upstream = 192.0.2.1:53\n", &cfg);
	config_free(&cfg);

	/* Two services in a row are roundabout but fine; a ring is not. */
	const char *chain = "[pool]\n" DNS_AT("a", "127.0.0.1:5300")
		"upstream = 127.0.0.1:5301\n" DNS_AT("b", "127.0.0.1:5301")
		"upstream = 192.0.2.1\n";
	load_ok(chain, &cfg);
	/* The plan learns the listen ports, which the pool must leave. */
	assert_int_equal(portset_count(&cfg.ports.listen), 2);
	assert_true(portset_has(&cfg.ports.listen, 5301));
	config_free(&cfg);
	expect_error("[pool]\n" DNS_AT("a", "127.0.0.1:5300")
		     "upstream = 127.0.0.1:5301\n" DNS_AT("b", "127.0.0.1:5301")
		     "upstream = 192.0.2.1, 127.0.0.1:5302\n" DNS_AT("c", "127.0.0.1:5302")
		     "upstream = 127.0.0.1:5300\n",
		     "t.conf:5: [service a] upstream:",
		     "127.0.0.1:5301 reaches the listener 127.0.0.1:5301 of [service b] "
		     "(line 8), whose upstreams lead back to [service a]");
#undef DNS_AT
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_protocol_defaults),
		cmocka_unit_test(test_resolv_conf),
		cmocka_unit_test(test_listen_and_upstream_loops),
		cmocka_unit_test(test_control_socket),
		cmocka_unit_test(test_continuation),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_not_regular_files),
		cmocka_unit_test(test_builtin_default),
		cmocka_unit_test(test_free_is_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
