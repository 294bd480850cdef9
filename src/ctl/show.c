/* berthctl show: the dynamic range netsh style, and the reserved ranges with
 * where each one came from. */
#include <string.h>
#include <strings.h>

#include "ctl/ctl.h"

int ctl_show_dynamicport(const struct plan *plan, const char *proto, FILE *out,
			 FILE *err)
{
	/* Linux has one dynamic range for both protocols, as the plan does;
	 * the protocol is asked for only to read like netsh, which takes it
	 * in any letter case (as `who 53/UDP` does). */
	if (!proto || (strcasecmp(proto, "tcp") != 0 && strcasecmp(proto, "udp") != 0)) {
		fprintf(err, "berthctl: show dynamicport: protocol must be tcp or udp, not '%s'\n",
			proto ? proto : "");
		return CTL_ERROR;
	}
	proto = strcasecmp(proto, "tcp") == 0 ? "tcp" : "udp";
	fprintf(out,
		"Protocol %s Dynamic Port Range\n"
		"---------------------------------\n"
		"Start Port      : %u\n"
		"Number of Ports : %u\n",
		proto, plan->dynamic_lo,
		(unsigned)plan->dynamic_hi - plan->dynamic_lo + 1u);
	return CTL_OK;
}

int ctl_show_reserved(const struct plan *plan, FILE *out, FILE *err)
{
	struct portset inside = plan->reserved;
	char origin[160];

	(void)err;
	portset_intersect(&inside, &plan->dynamic);
	fputs("Reserved Port Ranges\n"
	      "\n"
	      "Start Port    End Port    Origin\n"
	      "----------    --------    ------\n",
	      out);
	for (size_t i = 0; i < plan->nres; i++) {
		const struct plan_reservation *r = &plan->res[i];
		plan_origin_describe(r, plan->file, origin, sizeof(origin));
		fprintf(out, "%10u    %8u    %s\n", r->lo, r->hi, origin);
	}
	fprintf(out, "\n%u ports reserved, %u of them inside the dynamic range %u-%u\n",
		portset_count(&plan->reserved), portset_count(&inside),
		plan->dynamic_lo, plan->dynamic_hi);
	return CTL_OK;
}
