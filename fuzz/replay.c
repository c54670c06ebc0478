/*
 * Replays a fuzz target's seed corpus as unit tests: replay CORPUS_DIR runs the target's
 * LLVMFuzzerTestOneInput once per file of the directory, each file one cmocka test, in the
 * sanitized unit-test build. The fuzzers themselves need clang and run for minutes
 * (scripts/fuzz.sh); this keeps every seed, and every crash once found and saved as a seed,
 * checked by the ordinary test suite with whatever compiler builds it.
 *
 * A target that checks an expectation aborts; the test run then stops there and the runner
 * reports the executable failed, as it does for any sanitizer abort.
 *
 * Env: REPLAY_NEEDS_ROOT=1 skips every case unless run as root (the nftnl target works in a
 * private network namespace).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target: weak, so a target without one links. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static bool skip_all;

static void replay_one(void **state)
{
	const char *path = *state;
	if (skip_all) {
		skip();
	}
	/* libFuzzer hands a target a buffer of exactly the input's size; so does this, so that a
	 * read past its end is caught here too. */
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	size_t len = (size_t)size;
	uint8_t *exact = malloc(len ? len : 1);
	assert_non_null(exact);
	assert_int_equal(fread(exact, 1, len, f), len);
	fclose(f);
	assert_int_equal(LLVMFuzzerTestOneInput(exact, len), 0);
	free(exact);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct CMUnitTest *)a)->name, ((const struct CMUnitTest *)b)->name);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	const char *env = getenv("REPLAY_NEEDS_ROOT");
	skip_all = env != NULL && strcmp(env, "1") == 0 && geteuid() != 0;
	DIR *d = opendir(argv[1]);
	if (d == NULL) {
		fprintf(stderr, "%s: cannot open %s: %s\n", argv[0], argv[1], strerror(errno));
		return 1;
	}
	struct CMUnitTest *tests = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.') {
			continue;
		}
		char *path;
		struct CMUnitTest *grown = realloc(tests, (n + 1) * sizeof *tests);
		if (grown == NULL || asprintf(&path, "%s/%s", argv[1], e->d_name) < 0) {
			fprintf(stderr, "%s: out of memory\n", argv[0]);
			return 1;
		}
		tests = grown;
		tests[n++] = (struct CMUnitTest){.name = path + strlen(argv[1]) + 1,
		                                 .test_func = replay_one,
		                                 .initial_state = path};
	}
	closedir(d);
	if (n == 0) {
		fprintf(stderr, "%s: %s holds no seeds\n", argv[0], argv[1]);
		return 1;
	}
	qsort(tests, n, sizeof *tests, by_name);
	if (!skip_all && LLVMFuzzerInitialize != NULL) {
		LLVMFuzzerInitialize(&argc, &argv);
	}
	int rc = _cmocka_run_group_tests(argv[1], tests, n, NULL, NULL);
	for (size_t i = 0; i < n; i++) {
		free(tests[i].initial_state);
	}
	free(tests);
	return rc;
}
