/* Placeholder: replaced by the who verb's real implementation. */
#include "ctl/ctl.h"

int ctl_who(const char *arg, const char *proc_root, FILE *out, FILE *err)
{
	(void)arg, (void)proc_root, (void)out;
	fputs("berthctl: who is not built yet\n", err);
	return CTL_ERROR;
}
