/* The compiler's hash tables of pointers (policy/ptrtab.h): random adds, deletes and lookups in
 * both kinds of table, checked after every step against a plain array of what should be there,
 * with enough deletions that the deleted-slot markers force rebuilds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ptrtab.h"

#define N 600

struct item {
	uint8_t key[17]; /* shaped like struct ipam_addr, as the compiler's address tables are */
	int id;
};

/* Every item in t is one of those marked in, and every marked one is found under its key. */
static void check(const struct ptrtab *t, struct item *items, const bool *in, bool by_key)
{
	unsigned live = 0, marked = 0;

	for (unsigned i = 0; i < t->cap; i++) {
		if (!ptrtab_live(t->slot[i]))
			continue;
		const struct item *it = t->slot[i];
		assert_true(in[it->id]);
		live++;
	}
	for (unsigned i = 0; i < N; i++) {
		const void *key = by_key ? (const void *)items[i].key : (const void *)&items[i];
		void *got = ptrtab_get(t, key);
		if (in[i]) {
			assert_ptr_equal(got, &items[i]);
			marked++;
		} else {
			assert_null(got);
		}
	}
	assert_int_equal(live, marked);
	assert_int_equal(t->n, marked);
	assert_true(t->used * 4 <= t->cap * 3); /* an empty slot always ends a probe */
}

static void run(bool by_key)
{
	static struct item items[N];
	bool in[N] = {false};
	struct ptrtab t;
	unsigned seed = by_key ? 7 : 11, rebuilds = 0;

	for (unsigned i = 0; i < N; i++) {
		memset(&items[i], 0, sizeof(items[i]));
		items[i].key[0] = 4;
		/* keys that differ in one byte only, in every position */
		items[i].key[1 + i % 16] = (uint8_t)(1 + i / 16);
		items[i].id = (int)i;
	}
	ptrtab_init(&t, by_key ? sizeof(items[0].key) : 0);
	assert_null(ptrtab_get(&t, &items[0]));
	assert_null(ptrtab_del(&t, &items[0]));
	for (unsigned step = 0; step < 20000; step++) {
		unsigned i = (unsigned)rand_r(&seed) % N;
		const void *key = by_key ? (const void *)items[i].key : (const void *)&items[i];
		void **before = t.slot;
		if (in[i]) {
			assert_ptr_equal(ptrtab_del(&t, key), &items[i]);
			in[i] = false;
		} else {
			assert_int_equal(ptrtab_add(&t, &items[i]), 0);
			in[i] = true;
		}
		rebuilds += t.slot != before;
		if (step % 97 == 0)
			check(&t, items, in, by_key);
	}
	check(&t, items, in, by_key);
	assert_true(rebuilds > 3);
	ptrtab_free(&t);
	assert_int_equal(t.n, 0);
	assert_null(ptrtab_get(&t, items[0].key));
	/* emptied, it works again */
	assert_int_equal(ptrtab_add(&t, &items[1]), 0);
	assert_ptr_equal(ptrtab_get(&t, by_key ? (const void *)items[1].key : &items[1]),
	                 &items[1]);
	ptrtab_free(&t);
}

static void test_by_address(void **state)
{
	(void)state;
	run(false);
}

static void test_by_key(void **state)
{
	(void)state;
	run(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_by_address),
	                                   cmocka_unit_test(test_by_key)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
