/* Placeholder: replaced by the show verb's real implementation. */
#include "ctl/ctl.h"

int ctl_show_dynamicport(const struct plan *plan, const char *proto, FILE *out,
			 FILE *err)
{
	(void)plan, (void)proto, (void)out;
	fputs("berthctl: show is not built yet\n", err);
	return CTL_ERROR;
}

int ctl_show_reserved(const struct plan *plan, FILE *out, FILE *err)
{
	(void)plan, (void)out;
	fputs("berthctl: show is not built yet\n", err);
	return CTL_ERROR;
}
