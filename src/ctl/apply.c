/* Placeholder: replaced by the apply verb's real implementation. */
#include "ctl/ctl.h"

int ctl_apply(const struct plan *plan, const char *sysctl_dir, int dry_run,
	      FILE *out, FILE *err)
{
	(void)plan, (void)sysctl_dir, (void)dry_run, (void)out;
	fputs("berthctl: apply is not built yet\n", err);
	return CTL_ERROR;
}
