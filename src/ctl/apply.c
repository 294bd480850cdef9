/* berthctl apply: add the plan's reserved ports to the kernel's
 * ip_local_reserved_ports, so no other program's ephemeral bind takes them. */
#include "ctl/ctl.h"

int ctl_apply(const struct plan *plan, const char *sysctl_dir, int dry_run,
	      FILE *out, FILE *err)
{
	struct portset added;
	char msg[2048];
	uint32_t cursor = 0;
	uint16_t lo, hi;

	int rc = plan_kernel_apply(plan, sysctl_dir, dry_run != 0, &added, msg,
				   sizeof(msg));
	if (rc < 0) {
		fprintf(err, "berthctl: apply: %s\n", msg);
		return CTL_ERROR;
	}
	if (portset_count(&added) == 0)
		fputs("nothing to add: the kernel already reserves every planned port\n",
		      out);
	while (portset_next_range(&added, &cursor, &lo, &hi)) {
		if (lo == hi)
			fprintf(out, "reserve %u\n", lo);
		else
			fprintf(out, "reserve %u-%u\n", lo, hi);
	}
	if (dry_run)
		fputs("(dry run: nothing written)\n", out);
	else if (portset_count(&added) > 0)
		fprintf(out, "%u ports added to %s/ip_local_reserved_ports\n",
			portset_count(&added),
			sysctl_dir ? sysctl_dir : "/proc/sys/net/ipv4");
	return CTL_OK;
}
