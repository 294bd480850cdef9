/* Loading the config and its port plan for the offline verbs. */
#include <string.h>

#include "ctl/ctl.h"

int ctl_load(const char *path, struct ctl_setup *setup, FILE *err)
{
	char msg[512];
	int rc = path ? config_load(path, &setup->cfg, msg, sizeof(msg))
		      : config_load_default(&setup->cfg, msg, sizeof(msg));
	if (rc == 0) {
		setup->plan = plan_build(&setup->cfg.ports, NULL, msg, sizeof(msg));
		if (setup->plan)
			return CTL_OK;
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
