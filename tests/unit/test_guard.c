/*
 * Unit tests for the source-port guard: 88 and 464 are blocked, 22528 and
 * 53249 pass, through real sockaddr_in / sockaddr_in6 values; and why: the
 * old comparison of the network-order field against a host-order list.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "berth/guard.h"

static struct guard *kerberos_guard(void)
{
	struct portset blocked;
	char err[128];
	portset_clear(&blocked);
	assert_int_equal(portset_parse(&blocked, "88, 464", err, sizeof(err)), 0);
	struct guard *g = guard_new(&blocked);
	assert_non_null(g);
	return g;
}

/* A source address as recvfrom()/accept() fill it: port in network order. */
static struct sockaddr_storage from_v4(uint16_t port_host)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(port_host),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	memcpy(&ss, &sin, sizeof(sin));
	return ss;
}

static struct sockaddr_storage from_v6(uint16_t port_host)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 sin6 = {
		.sin6_family = AF_INET6,
		.sin6_port = htons(port_host),
		.sin6_addr = IN6ADDR_LOOPBACK_INIT,
	};
	memcpy(&ss, &sin6, sizeof(sin6));
	return ss;
}

static void test_blocks_kerberos_ports_host_order(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	assert_true(guard_blocks_port(g, 88));
	assert_true(guard_blocks_port(g, 464));
	assert_false(guard_blocks_port(g, 22528));
	assert_false(guard_blocks_port(g, 53249));
	assert_false(guard_blocks_port(g, 53));
	guard_free(g);
}

static void test_blocks_through_sockaddr(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	const struct { uint16_t port; bool blocked; } cases[] = {
		{ 88, true }, { 464, true }, { 22528, false }, { 53249, false },
		{ 87, false }, { 89, false }, { 53, false }, { 0, false },
		{ 65535, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage v4 = from_v4(cases[i].port);
		struct sockaddr_storage v6 = from_v6(cases[i].port);
		assert_int_equal(guard_port_host((struct sockaddr *)&v4), cases[i].port);
		assert_int_equal(guard_port_host((struct sockaddr *)&v6), cases[i].port);
		if (guard_blocks_sockaddr(g, (struct sockaddr *)&v4) != cases[i].blocked)
			fail_msg("IPv4 source port %u: blocked should be %d",
				 cases[i].port, cases[i].blocked);
		if (guard_blocks_sockaddr(g, (struct sockaddr *)&v6) != cases[i].blocked)
			fail_msg("IPv6 source port %u: blocked should be %d",
				 cases[i].port, cases[i].blocked);
	}
	guard_free(g);
}

/* A bare sockaddr_in (not inside a sockaddr_storage) works the same. */
static void test_bare_sockaddr_in(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(464) };
	assert_true(guard_blocks_sockaddr(g, (const struct sockaddr *)&sin));
	sin.sin_port = htons(53249);
	assert_false(guard_blocks_sockaddr(g, (const struct sockaddr *)&sin));
	guard_free(g);
}

static void test_portless_family_passes(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "X" };
	assert_int_equal(guard_port_host((const struct sockaddr *)&sun), -1);
	assert_false(guard_blocks_sockaddr(g, (const struct sockaddr *)&sun));
	assert_false(guard_drop_sockaddr(g, (const struct sockaddr *)&sun));
	guard_free(g);
}

/*
 * Why host order matters.  The old loop protection compared the raw
 * sin_port field (network order) with a list written in host order.  On a
 * little-endian host htons(88) is 22528 and htons(464) is 53249, so it
 * dropped clients that happened to use ports 22528 and 53249 and let
 * Kerberos ports through.  This test replays that comparison to show it,
 * and shows the guard does not make it.
 */
static bool buggy_blocks(const struct portset *blocked_host_order,
			 const struct sockaddr_in *sin)
{
	return portset_has(blocked_host_order, sin->sin_port); /* the bug */
}

static void test_network_order_bug_documented(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	const struct portset *blocked = guard_blocked(g);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	const uint16_t innocent[] = { 22528, 53249 };
	const uint16_t kerberos[] = { 88, 464 };
	const bool little_endian = htons(1) != 1;

	if (little_endian) {
		assert_int_equal(htons(88), 22528);
		assert_int_equal(htons(464), 53249);
	}
	for (size_t i = 0; i < 2; i++) {
		sin.sin_port = htons(innocent[i]);
		/* The bug blocks the innocent ports exactly on little endian. */
		assert_int_equal(buggy_blocks(blocked, &sin), little_endian);
		assert_false(guard_blocks_sockaddr(g, (const struct sockaddr *)&sin));

		sin.sin_port = htons(kerberos[i]);
		assert_int_equal(buggy_blocks(blocked, &sin), !little_endian);
		assert_true(guard_blocks_sockaddr(g, (const struct sockaddr *)&sin));
	}
	guard_free(g);
}

static void test_drop_counters(void **state)
{
	(void)state;
	struct guard *g = kerberos_guard();
	struct sockaddr_storage k88 = from_v4(88), k464 = from_v6(464);
	struct sockaddr_storage ok = from_v4(22528);
	for (int i = 0; i < 3; i++)
		assert_true(guard_drop_sockaddr(g, (struct sockaddr *)&k88));
	assert_true(guard_drop_sockaddr(g, (struct sockaddr *)&k464));
	assert_false(guard_drop_sockaddr(g, (struct sockaddr *)&ok));
	assert_int_equal(guard_drops(g, 88), 3);
	assert_int_equal(guard_drops(g, 464), 1);
	assert_int_equal(guard_drops(g, 22528), 0);
	assert_int_equal(guard_drops_total(g), 4);
	/* The predicate never counts. */
	assert_true(guard_blocks_sockaddr(g, (struct sockaddr *)&k88));
	assert_int_equal(guard_drops_total(g), 4);
	guard_free(g);
}

/* A wide blocked range: counters stay bounded, the total stays exact. */
static void test_wide_range_counters(void **state)
{
	(void)state;
	struct portset blocked;
	portset_clear(&blocked);
	portset_add_range(&blocked, 0, 1023);
	struct guard *g = guard_new(&blocked);
	assert_non_null(g);
	portset_clear(&blocked); /* the guard kept its own copy */
	for (uint16_t p = 0; p < 100; p++) {
		struct sockaddr_storage ss = from_v4(p);
		assert_true(guard_drop_sockaddr(g, (struct sockaddr *)&ss));
	}
	assert_int_equal(guard_drops_total(g), 100);
	assert_int_equal(guard_drops(g, 0), 1);
	assert_int_equal(guard_drops(g, GUARD_TRACKED_PORTS - 1), 1);
	assert_int_equal(guard_drops(g, 99), 0); /* counted in the total only */
	assert_int_equal(portset_count(guard_blocked(g)), 1024);
	guard_free(g);
	guard_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blocks_kerberos_ports_host_order),
		cmocka_unit_test(test_blocks_through_sockaddr),
		cmocka_unit_test(test_bare_sockaddr_in),
		cmocka_unit_test(test_portless_family_passes),
		cmocka_unit_test(test_network_order_bug_documented),
		cmocka_unit_test(test_drop_counters),
		cmocka_unit_test(test_wide_range_counters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
