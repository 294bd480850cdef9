/*
 * libFuzzer harness for the config loader and the port plan built from it:
 * any text either loads (and then plan_build either succeeds or reports an
 * error) or is rejected with a message; nothing crashes or leaks.  The
 * kernel and catalog paths point at the source tree's data so runs are
 * deterministic.
 */
#include <stdlib.h>
#include <string.h>

#include "berth/portplan.h"
#include "daemon/config.h"

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct berth_config cfg = { 0 };
	char err[512] = "";
	if (config_load_text("fuzz.conf", (const char *)data, size, &cfg, err,
			     sizeof(err)) < 0) {
		CHECK(strncmp(err, "fuzz.conf", 9) == 0);
		config_free(&cfg);
		return 0;
	}
	static const char *const dirs[] = { BERTH_SOURCE_DATADIR "/catalog", NULL };
	const struct plan_env env = { .sysctl_dir = "/nonexistent",
				      .catalog_dirs = dirs };
	struct plan *plan = plan_build(&cfg.ports, &env, err, sizeof(err));
	if (plan) {
		CHECK(plan->dynamic_lo <= plan->dynamic_hi);
		CHECK(portset_count(&plan->allowed) <= portset_count(&plan->dynamic));
		CHECK(!portset_overlaps(&plan->allowed, &plan->reserved));
	} else {
		CHECK(err[0] != '\0');
	}
	plan_free(plan);
	config_free(&cfg);
	return 0;
}
