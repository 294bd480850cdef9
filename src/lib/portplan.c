/* Placeholder: replaced by the port plan's implementation. */
#include <stdlib.h>

#include "berth/portplan.h"

void plan_free(struct plan *plan)
{
	free(plan);
}
