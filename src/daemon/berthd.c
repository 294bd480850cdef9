/* berthd: the berth daemon.  Placeholder until the config loader lands. */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "berthd: not built yet\n");
	return 1;
}
