/*
 * alloc_count: counts the heap allocations of the code under test.  A test
 * executable that includes this header is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup (see
 * CMakeLists.txt), so every call to those from berth's objects and the
 * test's own lands here first.  Calls made inside other libraries (glibc,
 * cmocka) are not seen; berth's code is what the tests are about.
 */
#ifndef BERTH_TEST_ALLOC_COUNT_H
#define BERTH_TEST_ALLOC_COUNT_H

#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);

static unsigned long alloc_calls;

void *__wrap_malloc(size_t size);
void *__wrap_malloc(size_t size)
{
	alloc_calls++;
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
	alloc_calls++;
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size)
{
	alloc_calls++;
	return __real_realloc(p, size);
}

char *__wrap_strdup(const char *s);
char *__wrap_strdup(const char *s)
{
	alloc_calls++;
	return __real_strdup(s);
}

#endif
