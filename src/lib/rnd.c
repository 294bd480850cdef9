/*
 * rnd: arc4random output, drawn a block at a time; see include/berth/rnd.h.
 */
#include "berth/rnd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/* Words per arc4random_buf() call: one kernel entry per 64 draws. */
#define RND_BLOCK_WORDS 64u

static _Thread_local uint32_t block[RND_BLOCK_WORDS];
/* Words of block not yet handed out; they are the last `left` ones. */
static _Thread_local unsigned left;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A child must not repeat the words its parent still holds. */
static void forget_in_child(void)
{
	left = 0;
}

static void install_atfork(void)
{
	pthread_atfork(NULL, NULL, forget_in_child);
}

uint32_t rnd_u32(void)
{
	if (left == 0) {
		pthread_once(&atfork_once, install_atfork);
		arc4random_buf(block, sizeof(block));
		left = RND_BLOCK_WORDS;
	}
	left--;
	uint32_t w = block[left];
	/* A word handed out is not left lying in memory for later. */
	block[left] = 0;
	return w;
}

uint32_t rnd_uniform(uint32_t bound)
{
	if (bound < 2)
		return 0;
	/* Words below 2^32 mod bound would make the low values more likely:
	 * draw again until the word falls in the part of the range that is a
	 * whole number of copies of [0, bound). */
	uint32_t min = (uint32_t)-bound % bound;
	for (;;) {
		uint32_t r = rnd_u32();
		if (r >= min)
			return r % bound;
	}
}
