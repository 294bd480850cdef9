/* berthctl: berth's operator tool.  Placeholder until the verbs land. */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "berthctl: not built yet\n");
	return 1;
}
