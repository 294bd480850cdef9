/*
 * rnd: arc4random output, drawn a block at a time.
 *
 * glibc's arc4random() enters the kernel (getrandom) on every call, and the
 * DNS forwarder draws twice per query (a pool socket and a query ID): at
 * 100k queries per second that is 200k system calls spent on randomness.
 * This module fills a small per-thread block with arc4random_buf() and hands
 * it out word by word, so the bits are still arc4random's and nothing else's;
 * only the number of kernel entries drops.  The block is discarded in a
 * forked child, so parent and child never hand out the same words.
 */
#ifndef BERTH_RND_H
#define BERTH_RND_H

#include <stdint.h>

/* 32 uniformly random bits from arc4random_buf(). */
uint32_t rnd_u32(void);

/*
 * A uniformly random integer in [0, bound), without modulo bias (like
 * arc4random_uniform()).  Returns 0 when bound is 0 or 1.
 */
uint32_t rnd_uniform(uint32_t bound);

#endif
