/* loop_fake: fake backend and clock for tests; see include/berth/loop_fake.h. */
#include "berth/loop_fake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fake_reg {
	bool used;
	unsigned interest;
	uint64_t data;
};

struct loop_fake {
	uint64_t now;
	uint64_t clock_reads;
	bool sleep;
	uint64_t polls;
	int last_timeout;

	struct fake_reg *regs; /* indexed by fd */
	size_t nregs;

	struct loop_event *queue; /* pending events, oldest first */
	size_t nqueue, capqueue;
};

struct loop_fake *loop_fake_new(uint64_t start_ms)
{
	struct loop_fake *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->now = start_ms;
	f->last_timeout = -1;
	return f;
}

void loop_fake_free(struct loop_fake *f)
{
	if (!f)
		return;
	free(f->regs);
	free(f->queue);
	free(f);
}

static uint64_t fake_now(void *arg)
{
	struct loop_fake *f = arg;
	f->clock_reads++;
	return f->now;
}

struct loop_config loop_fake_config(struct loop_fake *f)
{
	return (struct loop_config){
		.backend = &loop_backend_fake,
		.backend_arg = f,
		.clock = { .now_ms = fake_now, .arg = f },
	};
}

void loop_fake_set_time(struct loop_fake *f, uint64_t now_ms)
{
	f->now = now_ms;
}

void loop_fake_advance(struct loop_fake *f, uint64_t ms)
{
	f->now += ms;
}

uint64_t loop_fake_time(const struct loop_fake *f)
{
	return f->now;
}

uint64_t loop_fake_clock_reads(const struct loop_fake *f)
{
	return f->clock_reads;
}

void loop_fake_set_sleep(struct loop_fake *f, bool on)
{
	f->sleep = on;
}

uint64_t loop_fake_polls(const struct loop_fake *f)
{
	return f->polls;
}

int loop_fake_last_timeout(const struct loop_fake *f)
{
	return f->last_timeout;
}

static struct fake_reg *reg_of(const struct loop_fake *f, int fd)
{
	if (fd < 0 || (size_t)fd >= f->nregs || !f->regs[fd].used)
		return NULL;
	return &f->regs[fd];
}

int loop_fake_inject_data(struct loop_fake *f, uint64_t data, unsigned events)
{
	if (f->nqueue == f->capqueue) {
		size_t cap = f->capqueue ? 2 * f->capqueue : 16;
		struct loop_event *grown = realloc(f->queue, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		f->queue = grown;
		f->capqueue = cap;
	}
	f->queue[f->nqueue++] = (struct loop_event){ .data = data, .events = events };
	return 0;
}

int loop_fake_inject(struct loop_fake *f, int fd, unsigned events)
{
	const struct fake_reg *r = reg_of(f, fd);
	if (!r)
		return -ENOENT;
	return loop_fake_inject_data(f, r->data, events);
}

int loop_fake_data(const struct loop_fake *f, int fd, uint64_t *data)
{
	const struct fake_reg *r = reg_of(f, fd);
	if (!r)
		return -ENOENT;
	*data = r->data;
	return 0;
}

int loop_fake_interest(const struct loop_fake *f, int fd)
{
	const struct fake_reg *r = reg_of(f, fd);
	return r ? (int)r->interest : -ENOENT;
}

static int fake_create(void **state, void *arg)
{
	if (!arg)
		return -EINVAL;
	*state = arg;
	return 0;
}

static int fake_add(void *state, int fd, unsigned interest, uint64_t data)
{
	struct loop_fake *f = state;
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= f->nregs) {
		size_t n = (size_t)fd + 16;
		struct fake_reg *grown = realloc(f->regs, n * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		memset(grown + f->nregs, 0, (n - f->nregs) * sizeof(*grown));
		f->regs = grown;
		f->nregs = n;
	}
	if (f->regs[fd].used)
		return -EEXIST;
	f->regs[fd] = (struct fake_reg){ .used = true, .interest = interest, .data = data };
	return 0;
}

static int fake_mod(void *state, int fd, unsigned interest, uint64_t data)
{
	struct fake_reg *r = reg_of(state, fd);
	if (!r)
		return -ENOENT;
	r->interest = interest;
	r->data = data;
	return 0;
}

static int fake_del(void *state, int fd)
{
	struct fake_reg *r = reg_of(state, fd);
	if (!r)
		return -ENOENT;
	r->used = false;
	return 0;
}

static int fake_poll(void *state, struct loop_event *ev, int max, int timeout_ms)
{
	struct loop_fake *f = state;
	f->polls++;
	f->last_timeout = timeout_ms;
	if (f->nqueue == 0) {
		if (f->sleep && timeout_ms > 0)
			f->now += (uint64_t)timeout_ms;
		return 0;
	}
	size_t n = f->nqueue < (size_t)max ? f->nqueue : (size_t)max;
	memcpy(ev, f->queue, n * sizeof(*ev));
	memmove(f->queue, f->queue + n, (f->nqueue - n) * sizeof(*f->queue));
	f->nqueue -= n;
	return (int)n;
}

/* The loop is done with f: forget registrations and queued events. */
static void fake_free(void *state)
{
	struct loop_fake *f = state;
	if (!f)
		return;
	f->nqueue = 0;
	for (size_t i = 0; i < f->nregs; i++)
		f->regs[i].used = false;
}

const struct loop_backend loop_backend_fake = {
	.name = "fake",
	.create = fake_create,
	.add = fake_add,
	.mod = fake_mod,
	.del = fake_del,
	.poll = fake_poll,
	.free = fake_free,
};
