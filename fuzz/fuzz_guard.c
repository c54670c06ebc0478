/*
 * libFuzzer target for the control plane guard's parser of member addresses (agent/guard.c).
 *
 * The addresses come from member records in the replicated state, which every agent reads: a
 * record that crashes the parser would take every host's agent down at once. The input is one
 * address text (cut at the first NUL). What must hold:
 *   - a parsed address formats back to text that parses to the same address and port;
 *   - normalising a list of it twice gives one entry, and the table built from it is a JSON
 *     document with the address in it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL) {
		return 0;
	}
	memcpy(s, data, size);
	s[size] = 0;
	struct guard_port g;
	if (guard_port_parse(s, &g)) {
		char addr[IPAM_ADDR_STRLEN], text[IPAM_ADDR_STRLEN + 16];
		ipam_addr_format(&g.addr, addr);
		snprintf(text, sizeof text, g.addr.family == 4 ? "%s:%u" : "[%s]:%u", addr,
		         (unsigned)g.port);
		struct guard_port h;
		if (!guard_port_parse(text, &h) || h.port != g.port ||
		    h.addr.family != g.addr.family || memcmp(h.addr.b, g.addr.b, 16) != 0) {
			abort();
		}
		struct guard_port v[2] = {g, h};
		if (guard_ports_normalise(v, 2) != 1) {
			abort();
		}
		json_t *doc = guard_commands(v, 1, "cali");
		char *dump = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		if (dump != NULL && strstr(dump, addr) == NULL) {
			abort();
		}
		free(dump);
		json_decref(doc);
	}
	free(s);
	return 0;
}
