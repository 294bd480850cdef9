/* wheel: hierarchical timing wheel; see include/berth/wheel.h. */
#include "berth/wheel.h"

#include <stdlib.h>

#define SLOT_MASK ((uint64_t)WHEEL_SLOTS - 1)
#define SPAN_BITS (WHEEL_LEVELS * WHEEL_LEVEL_BITS)
#define EPOCH_MASK ((UINT64_C(1) << SPAN_BITS) - 1)

/*
 * Where a timer is queued, kept in the timer so that stopping it can clear
 * the slot's pending bit without searching: level * WHEEL_SLOTS + slot for a
 * wheel slot, or one of the lists below.
 */
enum {
	WHERE_SLOTS = WHEEL_LEVELS * WHEEL_SLOTS,
	WHERE_DUE = WHERE_SLOTS, /* deadline reached, waiting for its callback */
	WHERE_OVERFLOW,          /* deadline in a later epoch */
	WHERE_IDLE,              /* not armed */
};

struct wheel {
	/*
	 * The wheel's time.  Invariant: every timer with a deadline at or
	 * before now is on the due list (or has fired), and every non-empty
	 * slot at level L has a higher index than now has at level L and lies
	 * in the same level L+1 block as now.  That is what lets the next
	 * event be found from the lowest pending bit of each level.
	 */
	uint64_t now;
	uint64_t pending[WHEEL_LEVELS]; /* bit s: slot s is non-empty */
	/*
	 * A lower bound on the deadlines on the overflow list, so a jump over
	 * many epochs goes straight to the first one that matters.  Stopping
	 * or touching a timer may leave it too low, which costs one early
	 * re-sort and nothing else.
	 */
	uint64_t overflow_min;
	size_t count;
	struct wheel_link slot[WHEEL_LEVELS][WHEEL_SLOTS];
	struct wheel_link due;
	struct wheel_link overflow;
};

static void list_init(struct wheel_link *head)
{
	head->next = head;
	head->prev = head;
}

static bool list_empty(const struct wheel_link *head)
{
	return head->next == head;
}

static void list_append(struct wheel_link *head, struct wheel_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/* Move every element of from to the (empty) list to, keeping the order. */
static void list_take(struct wheel_link *to, struct wheel_link *from)
{
	if (list_empty(from)) {
		list_init(to);
		return;
	}
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	list_init(from);
}

static struct wheel_link *list_of(struct wheel *w, unsigned where)
{
	if (where < WHERE_SLOTS)
		return &w->slot[where / WHEEL_SLOTS][where % WHEEL_SLOTS];
	return where == WHERE_DUE ? &w->due : &w->overflow;
}

void wheel_timer_init(struct wheel_timer *t, wheel_cb *cb)
{
	*t = (struct wheel_timer){
		.link = { .next = NULL, .prev = NULL },
		.deadline = 0,
		.cb = cb,
		.where = WHERE_IDLE,
	};
}

bool wheel_timer_armed(const struct wheel_timer *t)
{
	return t->where != WHERE_IDLE;
}

uint64_t wheel_timer_deadline(const struct wheel_timer *t)
{
	return t->deadline;
}

struct wheel *wheel_new(uint64_t now)
{
	struct wheel *w = malloc(sizeof(*w));
	if (!w)
		return NULL;
	w->now = now;
	w->count = 0;
	for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
		w->pending[l] = 0;
		for (unsigned s = 0; s < WHEEL_SLOTS; s++)
			list_init(&w->slot[l][s]);
	}
	list_init(&w->due);
	list_init(&w->overflow);
	w->overflow_min = UINT64_MAX;
	return w;
}

/* Mark every timer of a list disarmed; the list itself is abandoned. */
static void disarm_all(struct wheel_link *head)
{
	struct wheel_link *l = head->next;
	while (l != head) {
		struct wheel_timer *t = wheel_container_of(l, struct wheel_timer, link);
		l = l->next;
		t->where = WHERE_IDLE;
		t->link = (struct wheel_link){ .next = NULL, .prev = NULL };
	}
}

void wheel_free(struct wheel *w)
{
	if (!w)
		return;
	for (unsigned where = 0; where < WHERE_IDLE; where++)
		disarm_all(list_of(w, where));
	free(w);
}

/*
 * Queue t by its real deadline relative to the wheel's time.  The level is
 * the one holding the highest bit in which deadline and now differ: the slot
 * is then guaranteed to lie ahead of now within now's block of the level
 * above, so it is reached (and cascaded) before the deadline passes.
 */
static void place(struct wheel *w, struct wheel_timer *t)
{
	unsigned where;
	if (t->deadline <= w->now) {
		where = WHERE_DUE;
	} else {
		uint64_t diff = t->deadline ^ w->now;
		unsigned level = (63u - (unsigned)__builtin_clzll(diff)) / WHEEL_LEVEL_BITS;
		if (level >= WHEEL_LEVELS) {
			where = WHERE_OVERFLOW;
			if (t->deadline < w->overflow_min)
				w->overflow_min = t->deadline;
		} else {
			unsigned s = (unsigned)((t->deadline >> (level * WHEEL_LEVEL_BITS)) & SLOT_MASK);
			w->pending[level] |= UINT64_C(1) << s;
			where = level * WHEEL_SLOTS + s;
		}
	}
	t->where = (uint16_t)where;
	list_append(list_of(w, where), &t->link);
}

static void unlink_timer(struct wheel *w, struct wheel_timer *t)
{
	t->link.prev->next = t->link.next;
	t->link.next->prev = t->link.prev;
	if (t->where < WHERE_SLOTS && list_empty(list_of(w, t->where)))
		w->pending[t->where / WHEEL_SLOTS] &=
			~(UINT64_C(1) << (t->where % WHEEL_SLOTS));
	/* A stale bound must not outlive the list: time may pass its epoch. */
	if (t->where == WHERE_OVERFLOW && list_empty(&w->overflow))
		w->overflow_min = UINT64_MAX;
	t->link = (struct wheel_link){ .next = NULL, .prev = NULL };
	t->where = WHERE_IDLE;
	w->count--;
}

void wheel_start(struct wheel *w, struct wheel_timer *t, uint64_t deadline)
{
	if (t->where != WHERE_IDLE)
		unlink_timer(w, t);
	t->deadline = deadline;
	place(w, t);
	w->count++;
}

void wheel_touch(struct wheel *w, struct wheel_timer *t, uint64_t deadline)
{
	/*
	 * A queued timer is reached no later than its recorded deadline, and
	 * every slot is re-sorted by real deadlines when it comes up, so a
	 * later deadline only has to be written down.  A due timer must move:
	 * the due list fires without looking.
	 */
	bool queued = t->where < WHERE_SLOTS || t->where == WHERE_OVERFLOW;
	if (queued && deadline >= t->deadline) {
		t->deadline = deadline;
		return;
	}
	wheel_start(w, t, deadline);
}

void wheel_stop(struct wheel *w, struct wheel_timer *t)
{
	if (t->where != WHERE_IDLE)
		unlink_timer(w, t);
}

/* Re-queue every timer of head, in order, relative to the wheel's time. */
static void requeue_list(struct wheel *w, struct wheel_link *head)
{
	struct wheel_link batch;
	list_take(&batch, head);
	while (!list_empty(&batch)) {
		struct wheel_link *l = batch.next;
		batch.next = l->next;
		l->next->prev = &batch;
		place(w, wheel_container_of(l, struct wheel_timer, link));
	}
}

/* The first time after now at which a slot or the overflow list is reached. */
static uint64_t next_event(const struct wheel *w)
{
	uint64_t best = UINT64_MAX;
	for (unsigned level = 0; level < WHEEL_LEVELS; level++) {
		if (!w->pending[level])
			continue;
		unsigned shift = level * WHEEL_LEVEL_BITS;
		unsigned s = (unsigned)__builtin_ctzll(w->pending[level]);
		uint64_t block = ~((UINT64_C(1) << (shift + WHEEL_LEVEL_BITS)) - 1);
		uint64_t at = (w->now & block) | ((uint64_t)s << shift);
		if (at < best)
			best = at;
	}
	/*
	 * Overflow timers lie in later epochs than now, so the start of the
	 * epoch holding the earliest of them is ahead of now.
	 */
	if (!list_empty(&w->overflow)) {
		uint64_t epoch = w->overflow_min & ~EPOCH_MASK;
		if (epoch < best)
			best = epoch;
	}
	return best;
}

/*
 * Move the wheel's time to at, an event time from next_event(), and re-sort
 * every slot that time reaches.  A re-sorted timer lands on the due list or
 * in a slot strictly ahead of at, never in a slot this step still has to
 * visit, and a slot keeps its timers in arming order (cascades into a slot
 * happen before any direct arming into it can), so ties stay FIFO.
 */
static void step(struct wheel *w, uint64_t at)
{
	w->now = at;
	if ((at & EPOCH_MASK) == 0 && !list_empty(&w->overflow)) {
		w->overflow_min = UINT64_MAX;
		requeue_list(w, &w->overflow);
	}
	for (unsigned level = WHEEL_LEVELS; level-- > 0;) {
		unsigned s = (unsigned)((at >> (level * WHEEL_LEVEL_BITS)) & SLOT_MASK);
		if (!(w->pending[level] & (UINT64_C(1) << s)))
			continue;
		w->pending[level] &= ~(UINT64_C(1) << s);
		requeue_list(w, &w->slot[level][s]);
	}
}

unsigned wheel_advance(struct wheel *w, uint64_t now, unsigned max_expire,
		       void *ctx)
{
	unsigned fired = 0;
	for (;;) {
		while (fired < max_expire && !list_empty(&w->due)) {
			struct wheel_timer *t =
				wheel_container_of(w->due.next, struct wheel_timer, link);
			unlink_timer(w, t);
			fired++;
			t->cb(t, ctx);
		}
		/*
		 * Stop collecting once the budget is spent, so leftovers are
		 * at most what the next call fires first, and the time only
		 * moves as far as the timers actually handled.
		 */
		if (fired >= max_expire || w->now >= now)
			break;
		uint64_t at = next_event(w);
		if (at > now) {
			w->now = now;
			break;
		}
		step(w, at);
	}
	return fired;
}

uint64_t wheel_next_deadline(const struct wheel *w)
{
	if (!list_empty(&w->due))
		return w->now;
	return next_event(w);
}

uint64_t wheel_now(const struct wheel *w)
{
	return w->now;
}

size_t wheel_count(const struct wheel *w)
{
	return w->count;
}
