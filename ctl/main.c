/* The tabby binary: `tabby agent ...` runs the daemon, every other command is the operator CLI. */
#include <string.h>

#include "agent/agent.h"
#include "ctl/ctl.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "agent") == 0)
		return agent_main(argc - 1, argv + 1);
	return ctl_main(argc, argv);
}
