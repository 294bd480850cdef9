/* Placeholder: replaced by the check verb's real implementation. */
#include "ctl/ctl.h"

int ctl_check(const struct plan *plan, const char *proc_root, FILE *out,
	      FILE *err)
{
	(void)plan, (void)proc_root, (void)out;
	fputs("berthctl: check is not built yet\n", err);
	return CTL_ERROR;
}
