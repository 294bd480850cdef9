/*
 * Unit tests for rnd: bounds of rnd_uniform(), every value of a small range
 * drawn, fresh words across block refills, and a forked child that does not
 * repeat the words its parent still holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "berth/rnd.h"

static void uniform_degenerate_bounds_give_zero(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(rnd_uniform(0), 0);
		assert_int_equal(rnd_uniform(1), 0);
	}
}

/* 7000 draws from [0, 7): every value shows up and none is out of range;
 * a value missing by chance has probability about 7 x (6/7)^7000. */
static void uniform_stays_in_range_and_covers_it(void **state)
{
	(void)state;
	unsigned seen[7] = { 0 };
	for (int i = 0; i < 7000; i++) {
		uint32_t v = rnd_uniform(7);
		assert_true(v < 7);
		seen[v]++;
	}
	for (int v = 0; v < 7; v++)
		assert_true(seen[v] > 0);
	for (int i = 0; i < 1000; i++)
		assert_true(rnd_uniform(65536) < 65536);
}

/* Several blocks' worth of words: a refill that repeated a block, or handed
 * out zeros, would show as equal neighbours (chance 2^-32 each). */
static void words_differ_across_refills(void **state)
{
	(void)state;
	uint32_t prev = rnd_u32();
	unsigned equal = 0;
	for (int i = 0; i < 1000; i++) {
		uint32_t w = rnd_u32();
		equal += w == prev;
		prev = w;
	}
	assert_int_equal(equal, 0);
}

/* Fill the block, fork: the child's next words must not be the parent's. */
static void child_does_not_repeat_parent(void **state)
{
	(void)state;
	uint32_t parent[4], child[4];
	int fds[2];
	(void)rnd_u32();
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < 4; i++)
			child[i] = rnd_u32();
		ssize_t n = write(fds[1], child, sizeof(child));
		_exit(n == (ssize_t)sizeof(child) ? 0 : 1);
	}
	for (int i = 0; i < 4; i++)
		parent[i] = rnd_u32();
	assert_int_equal(read(fds[0], child, sizeof(child)), sizeof(child));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	close(fds[1]);
	assert_memory_not_equal(parent, child, sizeof(parent));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(uniform_degenerate_bounds_give_zero),
		cmocka_unit_test(uniform_stays_in_range_and_covers_it),
		cmocka_unit_test(words_differ_across_refills),
		cmocka_unit_test(child_does_not_repeat_parent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
