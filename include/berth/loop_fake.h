/*
 * loop_fake: a fake backend and a fake clock for the event loop, so that
 * tests replay readiness and timing scenarios deterministically: the test
 * injects events, sets the time and counts how often the loop read it.
 * Nothing here touches the kernel.
 *
 * Typical use:
 *     struct loop_fake *f = loop_fake_new(1000);
 *     struct loop_config cfg = loop_fake_config(f);
 *     struct loop *l = loop_new(&cfg);
 *     ... loop_fake_inject(f, fd, LOOP_READ); loop_run_once(l); ...
 *     loop_free(l);
 *     loop_fake_free(f);
 */
#ifndef BERTH_LOOP_FAKE_H
#define BERTH_LOOP_FAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "berth/loop.h"

struct loop_fake;

/* The backend; its create() takes the struct loop_fake * as arg. */
extern const struct loop_backend loop_backend_fake;

/*
 * A fake backend state and clock starting at start_ms.  Returns NULL when
 * out of memory.  The caller owns it and frees it with loop_fake_free()
 * after the loop using it is freed.
 */
struct loop_fake *loop_fake_new(uint64_t start_ms);

/* Free f; accepts NULL. */
void loop_fake_free(struct loop_fake *f);

/* A loop configuration using f as backend and clock (f stays the caller's). */
struct loop_config loop_fake_config(struct loop_fake *f);

/* Set the clock, or move it forward by ms. */
void loop_fake_set_time(struct loop_fake *f, uint64_t now_ms);
void loop_fake_advance(struct loop_fake *f, uint64_t ms);

/* The clock's current value, without counting a read. */
uint64_t loop_fake_time(const struct loop_fake *f);

/* How many times the loop has read the clock. */
uint64_t loop_fake_clock_reads(const struct loop_fake *f);

/*
 * When on, a poll that finds no queued event moves the clock forward by its
 * timeout, as if it had slept that long, so loop_run() walks from timer to
 * timer.  A poll with no events and no timeout (-1) then stops the loop's
 * wait by returning no events without moving the clock.  Off by default.
 */
void loop_fake_set_sleep(struct loop_fake *f, bool on);

/*
 * Queue readiness events (LOOP_READ | LOOP_WRITE | LOOP_HUP) for the fd's
 * current registration; the next poll returns them in queue order.  Returns
 * 0, -ENOENT when fd is not registered, or -ENOMEM.
 */
int loop_fake_inject(struct loop_fake *f, int fd, unsigned events);

/*
 * Queue an event carrying an arbitrary data word, e.g. one saved from an
 * earlier registration to play a stale event.  Returns 0 or -ENOMEM.
 */
int loop_fake_inject_data(struct loop_fake *f, uint64_t data, unsigned events);

/*
 * The data word of fd's current registration in *data.  Returns 0 or -ENOENT
 * when fd is not registered.
 */
int loop_fake_data(const struct loop_fake *f, int fd, uint64_t *data);

/* fd's registered interest (LOOP_READ | LOOP_WRITE), or -ENOENT. */
int loop_fake_interest(const struct loop_fake *f, int fd);

/* Number of polls so far, and the timeout the last one was given. */
uint64_t loop_fake_polls(const struct loop_fake *f);
int loop_fake_last_timeout(const struct loop_fake *f);

#endif
