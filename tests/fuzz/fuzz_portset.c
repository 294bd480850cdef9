/*
 * libFuzzer harness for portset_parse (port lists from the config, the
 * kernel and the Windows registry forms).  Beyond "no crash": a list that
 * parses formats back to text that parses to the same set, and the rank
 * index agrees with the scan for a few members.
 */
#include <stdlib.h>
#include <string.h>

#include "berth/portset.h"

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[8192];
	static char back[400000];
	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	struct portset s, again;
	char err[160];
	portset_clear(&s);
	if (portset_parse(&s, text, err, sizeof(err)) < 0) {
		CHECK(err[0] != '\0');
		return 0;
	}
	size_t need = portset_format(&s, back, sizeof(back), ",");
	CHECK(need < sizeof(back));
	portset_clear(&again);
	CHECK(portset_parse(&again, back, err, sizeof(err)) == 0);
	CHECK(memcmp(&s, &again, sizeof(s)) == 0);

	struct portset_rank rank;
	portset_rank_build(&rank, &s);
	uint32_t n = portset_count(&s);
	CHECK(portset_rank_count(&rank) == n);
	for (uint32_t k = 0; k < n; k += 1 + n / 7)
		CHECK(portset_rank_nth(&rank, &s, k) == portset_nth(&s, k));
	CHECK(portset_rank_nth(&rank, &s, n) == -1);
	return 0;
}
