/*
 * cni_noop: a CNI plugin that does nothing, as fast as a process can: it reads its config, and
 * answers ADD with a fixed address and everything else with nothing. bench/cni.sh times it
 * through cnitool beside the real plugins, so the report can say how much of each figure is the
 * harness itself (cnitool, one fork and exec) and how much the plugin's own work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	char buf[4096];
	while (fread(buf, 1, sizeof buf, stdin) > 0) {
	}
	const char *cmd = getenv("CNI_COMMAND");
	if (cmd != NULL && strcmp(cmd, "ADD") == 0) {
		fputs("{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.255.0.1/32\"}]}\n",
		      stdout);
	} else if (cmd != NULL && strcmp(cmd, "VERSION") == 0) {
		fputs("{\"cniVersion\": \"1.0.0\", \"supportedVersions\": [\"1.0.0\"]}\n", stdout);
	}
	return 0;
}
