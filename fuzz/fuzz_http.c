/*
 * libFuzzer target for the agent's HTTP request parsing: the server's parser settings, limits and
 * request decoding (target, percent-decoding, headers, query) applied to arbitrary bytes.
 * Sanitizers catch memory errors and leaks; the checks below catch answers the server must never
 * give.
 */
#include "agent/http.h"

#include <stdlib.h>

#define FUZZ_MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int status = -1;
	int n = http_parse_for_test(data, size, FUZZ_MAX_BODY, &status);

	/* A rejected request is always answered with one of the client-error statuses. */
	if (n < 0 && status != 400 && status != 413 && status != 414 && status != 431) {
		abort();
	}
	if (n >= 0 && status != 0) {
		abort();
	}
	/* The shortest request the server accepts is "GET / HTTP/1.1\n\n". */
	if (n > 0 && (size_t)n > size / 16) {
		abort();
	}
	return 0;
}
