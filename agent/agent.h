/*
 * The tabby agent: one per host. `tabby agent ...` lands here.
 */
#ifndef TABBY_AGENT_AGENT_H
#define TABBY_AGENT_AGENT_H

/* Run the agent until SIGINT/SIGTERM. argv[0] is "agent". Returns the process exit code. */
int agent_main(int argc, char **argv);

#endif
