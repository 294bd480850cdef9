/*
 * wheel: a hierarchical timing wheel with 1 ms resolution.
 *
 * Every session deadline in berth lives here, so a session is never closed
 * before its timeout and is closed within a loop iteration after it: there is
 * no periodic sweep.  Time is a uint64_t count of milliseconds taken from the
 * loop clock; the wheel never reads a clock itself.
 *
 * Layout: WHEEL_LEVELS levels of 2^WHEEL_LEVEL_BITS slots.  A timer sits at
 * the level of the highest bit in which its deadline differs from the wheel's
 * current time, so level 0 holds exact milliseconds and every higher level
 * holds blocks that are cascaded into lower levels when the time enters them.
 * The levels span 2^36 ms (about 795 days).  A deadline in a later 2^36 ms
 * epoch than the wheel's current time waits on an overflow list that is
 * re-sorted each time the time crosses into a new epoch, so every uint64_t
 * deadline is exact, however far away.
 *
 * Guarantees:
 * - a timer never fires before its deadline;
 * - advanced one millisecond at a time (or woken at wheel_next_deadline()),
 *   a timer fires at exactly its deadline;
 * - timers with equal deadlines armed with wheel_start() fire in the order
 *   they were armed (FIFO), across cascades and bounded advances;
 * - start, stop, touch and the expiry of one timer are O(1); a timer is
 *   cascaded at most WHEEL_LEVELS - 1 times (plus once per epoch crossing).
 *
 * Timers are intrusive: the owner embeds a struct wheel_timer and gets back to
 * itself with wheel_container_of().  The wheel never allocates per timer and
 * never owns a timer.
 */
#ifndef BERTH_WHEEL_H
#define BERTH_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHEEL_LEVEL_BITS 6
#define WHEEL_LEVELS 6
#define WHEEL_SLOTS (1u << WHEEL_LEVEL_BITS)

/* The owner of an embedded member: wheel_container_of(t, struct sess, idle). */
#define wheel_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct wheel;
struct wheel_timer;

/*
 * Called when a timer expires.  The timer is already disarmed, so the
 * callback may re-arm it, stop or start any other timer of the same wheel,
 * or let the owner be freed after the callback returns.  ctx is the pointer
 * given to wheel_advance() (the loop passes itself).  A callback must not call
 * wheel_advance() or wheel_free() on its own wheel.
 */
typedef void wheel_cb(struct wheel_timer *t, void *ctx);

/* A link of a circular doubly-linked slot list; private to wheel.c. */
struct wheel_link {
	struct wheel_link *next, *prev;
};

/*
 * A timer, embedded in its owner.  The struct is public only so that owners
 * can embed it (no allocation per timer); every field is private to wheel.c.
 */
struct wheel_timer {
	struct wheel_link link; /* private: position in a slot list */
	uint64_t deadline;      /* private: the real deadline, ms */
	wheel_cb *cb;           /* private: called on expiry */
	uint16_t where;         /* private: which list holds the timer */
};

/*
 * Prepare t (owned by the caller) as a disarmed timer that calls cb on
 * expiry.  Call once before the first wheel_start(); never on an armed timer.
 */
void wheel_timer_init(struct wheel_timer *t, wheel_cb *cb);

/* True while t is armed (queued and not yet fired or stopped). */
bool wheel_timer_armed(const struct wheel_timer *t);

/* The deadline t was last armed or touched with, in ms. */
uint64_t wheel_timer_deadline(const struct wheel_timer *t);

/*
 * A new, empty wheel whose current time is now (ms).  Returns NULL when out of
 * memory.  The caller owns the wheel and frees it with wheel_free().
 */
struct wheel *wheel_new(uint64_t now);

/*
 * Free w.  Timers still armed are disarmed (not fired); their memory stays
 * the caller's.  Accepts NULL.
 */
void wheel_free(struct wheel *w);

/*
 * Arm t (caller-owned, initialised) to fire at the absolute time deadline
 * (ms).  An armed t is moved.  A deadline at or before the wheel's current
 * time fires at the next wheel_advance(), after the timers already due.
 * Equal deadlines fire in the order of their wheel_start() calls.
 */
void wheel_start(struct wheel *w, struct wheel_timer *t, uint64_t deadline);

/*
 * Move t's deadline the cheap way, for activity that keeps extending a
 * deadline (an idle timeout touched on every request).  When t is queued and
 * the new deadline is not earlier, only the deadline is recorded: when t's
 * slot comes up, the wheel sees the later deadline and re-queues t instead of
 * firing it.  Otherwise this is wheel_start().  Among equal deadlines, a
 * lazily moved timer takes its FIFO place when the wheel re-queues it, not at
 * the call.
 */
void wheel_touch(struct wheel *w, struct wheel_timer *t, uint64_t deadline);

/* Disarm t if armed; t will not fire.  Safe on a disarmed timer. */
void wheel_stop(struct wheel *w, struct wheel_timer *t);

/*
 * Bring the wheel to time now (ms) and fire, in deadline order (ties FIFO),
 * the timers due at or before now, but at most max_expire of them per call:
 * the rest stay due and fire first on the next call.  Callbacks get ctx.
 * A now earlier than the wheel's time only fires timers already due.
 * Returns the number of callbacks made.
 */
unsigned wheel_advance(struct wheel *w, uint64_t now, unsigned max_expire,
		       void *ctx);

/*
 * The earliest time at which wheel_advance() may have work to do: a lower
 * bound on the next expiry (it may be an internal cascade point, which is an
 * early wake-up, never a late one).  It is the wheel's current time when
 * timers are already due, and UINT64_MAX when no timer is armed.  O(levels).
 */
uint64_t wheel_next_deadline(const struct wheel *w);

/* The wheel's current time: the latest time it has been advanced to. */
uint64_t wheel_now(const struct wheel *w);

/* Number of armed timers. */
size_t wheel_count(const struct wheel *w);

#endif
