/* Placeholder: replaced by the load verb's real implementation. */
#include "ctl/ctl.h"

struct plan *ctl_load_plan(const char *path, FILE *err)
{
	(void)path;
	fputs("berthctl: config loading is not built yet\n", err);
	return NULL;
}
