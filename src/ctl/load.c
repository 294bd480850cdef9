/* Loading the config and its port plan for the offline verbs. */
#include <string.h>

#include "ctl/ctl.h"

int ctl_load(const char *path, struct ctl_setup *setup, FILE *err)
{
	char msg[512];
	int rc = path ? config_load(path, &setup->cfg, msg, sizeof(msg))
		      : config_load_default(&setup->cfg, msg, sizeof(msg));
	if (rc == 0) {
		/* plan_build() refuses a pool too large for the plan, but for
		 * berthctl that is a finding `check` reports (exit 1), not a
		 * config it cannot read: build without the pool, then put the
		 * pool's size back for check to compare. */
		struct plan_spec spec = setup->cfg.ports;
		spec.pool_size = 0;
		setup->plan = plan_build(&spec, NULL, msg, sizeof(msg));
		if (setup->plan) {
			setup->plan->pool_size = setup->cfg.ports.pool_size;
			setup->plan->pool_size_line = setup->cfg.ports.pool_size_line;
			return CTL_OK;
		}
	}
	fprintf(err, "berthctl: %s\n", msg);
	return CTL_ERROR;
}

void ctl_unload(struct ctl_setup *setup)
{
	plan_free(setup->plan);
	config_free(&setup->cfg);
	memset(setup, 0, sizeof(*setup));
}
