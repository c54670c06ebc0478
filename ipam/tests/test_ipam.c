/*
 * IPAM unit tests, all through the real state machine: ipam_apply registered as IPAM_CALL on a
 * real LMDB store, requests applied as KV_OP_CALL commands in batches with a leader time,
 * replies decoded, state read back over read-only views (harness.c).
 *
 * The harness asserts after every command that a refusal changed nothing (state hash and
 * revision), that assignments carry their command's revision as generation and aligned blocks,
 * and that ipam_check() is clean; the tests below state what each command must do.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <cmocka.h>
#include <raft.h>

#include "ipam/internal.h"
#include "ipam/tests/harness.h"

#define IPS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int setup(void **state)
{
	struct h *h = calloc(1, sizeof *h);
	assert_non_null(h);
	h_open(h, NULL, 0);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct h *h = *state;
	h_check_clean(h);
	h_close(h);
	free(h);
	return 0;
}

static void assert_msg_has(const struct ipam_reply *rep, const char *what)
{
	assert_non_null(rep->message);
	if (strstr(rep->message, what) == NULL) {
		fail_msg("message \"%s\" does not mention \"%s\"", rep->message, what);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Addresses and CIDRs                                                                         */

static void test_addr_parse_format(void **state)
{
	struct ipam_addr a;
	const uint8_t v4[16] = {10, 1, 2, 3};
	const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	static const struct {
		const char *in, *out;
	} ok[] = {
	    {"10.1.2.3", "10.1.2.3"},
	    {"0.0.0.0", "0.0.0.0"},
	    {"255.255.255.255", "255.255.255.255"},
	    {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
	    {"::", "::"},
	    {"::1", "::1"},
	    {"fd80:24e2:f998:72d6:0000:0000:0000:0000", "fd80:24e2:f998:72d6::"},
	    {"fe80:0:0:1::", "fe80:0:0:1::"},
	};
	static const char *const bad[] = {"",        "1.2.3",     "1.2.3.256", "10.0.0.1/32",
	                                  "::g",     " 1.2.3.4",  "1.2.3.4 ",  "1:2:3:4:5:6:7:8:9",
	                                  "1::2::3", "localhost", "-1.2.3.4",  "1.2.3.4.5"};
	(void)state;

	/* An IPv4 address leaves the rest of b zero, whatever was there. */
	memset(&a, 0xaa, sizeof a);
	assert_true(ipam_addr_parse("10.1.2.3", &a));
	assert_int_equal(a.family, 4);
	assert_memory_equal(a.b, v4, 16);
	memset(&a, 0xaa, sizeof a);
	assert_true(ipam_addr_parse("2001:db8::1", &a));
	assert_int_equal(a.family, 6);
	assert_memory_equal(a.b, v6, 16);

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char buf[IPAM_ADDR_STRLEN];
		assert_true(ipam_addr_parse(ok[i].in, &a));
		assert_ptr_equal(ipam_addr_format(&a, buf), buf);
		assert_string_equal(buf, ok[i].out);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (ipam_addr_parse(bad[i], &a)) {
			fail_msg("\"%s\" parsed as an address", bad[i]);
		}
	}
	/* IPv4 is formatted by hand: every byte value in every position reads as inet_ntop's. */
	for (unsigned v = 0; v < 256; v++) {
		for (unsigned pos = 0; pos < 4; pos++) {
			char mine[IPAM_ADDR_STRLEN], ref[INET_ADDRSTRLEN];
			a = (struct ipam_addr){.family = 4, .b = {7, 77, 177, 0}};
			a.b[pos] = (uint8_t)v;
			ipam_addr_format(&a, mine);
			assert_non_null(inet_ntop(AF_INET, a.b, ref, sizeof ref));
			assert_string_equal(mine, ref);
		}
	}
}

static void test_cidr_parse_format(void **state)
{
	struct ipam_cidr c;
	char err[256], buf[IPAM_CIDR_STRLEN];
	static const struct {
		const char *in, *out;
		uint8_t family, prefix;
	} ok[] = {
	    {"10.0.0.0/8", "10.0.0.0/8", 4, 8},
	    {"0.0.0.0/0", "0.0.0.0/0", 4, 0},
	    {"10.1.2.3/32", "10.1.2.3/32", 4, 32},
	    {"192.168.0.0/16", "192.168.0.0/16", 4, 16},
	    {"2001:DB8::/32", "2001:db8::/32", 6, 32},
	    {"fd80:24e2:f998:72d6::/64", "fd80:24e2:f998:72d6::/64", 6, 64},
	    {"::/0", "::/0", 6, 0},
	    {"::1/128", "::1/128", 6, 128},
	};
	static const char *const bad[] = {"10.0.0.0/33",   "10.0.0.0/",   "10.0.0.0/x",
	                                  "10.0.0.0",      "/8",          "fd00::/129",
	                                  "10.0.0.0/8/8",  "10.0.0.0/-1", "10.0.0.0/ 8",
	                                  "10.0.0.256/24", "fd00::g/64",  "",
	                                  "10.0.0.0/8 ",   "fd00::/1000", "8000::/0",
	                                  "::1/0",         "0.0.0.1/0"};
	(void)state;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		err[0] = '\0';
		if (!ipam_cidr_parse(ok[i].in, &c, err, sizeof err)) {
			fail_msg("\"%s\" refused: %s", ok[i].in, err);
		}
		assert_int_equal(c.addr.family, ok[i].family);
		assert_int_equal(c.prefix, ok[i].prefix);
		assert_ptr_equal(ipam_cidr_format(&c, buf), buf);
		assert_string_equal(buf, ok[i].out);
	}

	/* Host bits set: refused, and the message names the value and the network it meant. */
	assert_false(ipam_cidr_parse("10.0.0.1/16", &c, err, sizeof err));
	assert_string_equal(err, "10.0.0.1/16 is not a canonical CIDR: host bits are set (the "
	                         "network is 10.0.0.0/16)");
	assert_false(ipam_cidr_parse("fd00::1/64", &c, err, sizeof err));
	assert_non_null(strstr(err, "fd00::1/64"));
	assert_non_null(strstr(err, "not a canonical CIDR"));
	assert_non_null(strstr(err, "fd00::/64"));
	assert_false(ipam_cidr_parse("192.168.1.0/16", &c, err, sizeof err));
	assert_non_null(strstr(err, "192.168.0.0/16"));

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		if (ipam_cidr_parse(bad[i], &c, err, sizeof err)) {
			fail_msg("\"%s\" parsed as a CIDR", bad[i]);
		}
		/* One line that names the value. */
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
		if (bad[i][0] != '\0' && strstr(err, bad[i]) == NULL) {
			fail_msg("message \"%s\" does not name \"%s\"", err, bad[i]);
		}
	}

	/* A short error buffer is truncated, never overrun (ASan watches). */
	{
		char *small = malloc(8);
		assert_non_null(small);
		assert_false(ipam_cidr_parse("10.0.0.1/16", &c, small, 8));
		assert_true(strlen(small) < 8);
		free(small);
	}
}

/* ipam_text_repair leaves whole characters alone, replaces every byte of a broken one, and its
 * output is always text jansson takes as a JSON string; ipam_text_ok takes whole characters only.
 */
static void test_text_repair(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"", ""},
	    {"plain ascii", "plain ascii"},
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88"},
	    {"cut \xc3", "cut ?"},                       /* a cut 2-byte character */
	    {"cut \xe2\x82", "cut ??"},                  /* a cut 3-byte character */
	    {"cut \xf0\x9f\x90", "cut ???"},             /* a cut 4-byte character */
	    {"mid \xc3 x \xc3\xa9", "mid ? x \xc3\xa9"}, /* cut by %.Ns, then more text */
	    {"\x80\xbf", "??"},                          /* stray continuation bytes */
	    {"\xc0\xaf", "??"},                          /* overlong '/' */
	    {"\xe0\x80\xaf", "???"},                     /* overlong, 3 bytes */
	    {"\xed\xa0\x80", "???"},                     /* a surrogate, U+D800 */
	    {"\xf4\x90\x80\x80", "????"},                /* past U+10FFFF */
	    {"\xf5\x80", "??"},
	    {"\xff", "?"},
	};
	char buf[64];
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(buf, sizeof buf, "%s", cases[i].in);
		/* ipam_text_ok takes exactly what needs no repair. */
		assert_int_equal(ipam_text_ok(cases[i].in, strlen(cases[i].in), 0, 64),
		                 strcmp(cases[i].in, cases[i].out) == 0);
		ipam_text_repair(buf);
		assert_string_equal(buf, cases[i].out);
		json_t *j = json_string(buf);
		assert_non_null(j);
		json_decref(j);
	}
	/* A character that runs past len is cut, although the bytes after len complete it. */
	assert_true(ipam_text_ok("\xc3\xa9", 2, 1, 8));
	assert_false(ipam_text_ok("\xc3\xa9", 1, 1, 8));
	assert_false(ipam_text_ok("a\xe2\x82\xac", 3, 1, 8));
	/* Every cut of a long multi-byte text is repaired into a JSON string. */
	const char *text = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x88\xc3\xa9";
	for (int n = 0; n <= (int)strlen(text); n++) {
		snprintf(buf, sizeof buf, "%.*s", n, text);
		ipam_text_repair(buf);
		json_t *j = json_string(buf);
		assert_non_null(j);
		json_decref(j);
	}
}

static void test_cidr_contains(void **state)
{
	struct ipam_cidr net = h_cidr("10.0.0.0/8"), all = h_cidr("0.0.0.0/0");
	struct ipam_cidr one = h_cidr("10.1.2.3/32"), v6 = h_cidr("fd00::/120");
	struct ipam_addr a;
	(void)state;

	a = h_addr("10.255.255.255");
	assert_true(ipam_cidr_contains(&net, &a));
	a = h_addr("10.0.0.0");
	assert_true(ipam_cidr_contains(&net, &a));
	a = h_addr("11.0.0.0");
	assert_false(ipam_cidr_contains(&net, &a));
	a = h_addr("9.255.255.255");
	assert_false(ipam_cidr_contains(&net, &a));
	a = h_addr("200.1.1.1");
	assert_true(ipam_cidr_contains(&all, &a));
	a = h_addr("10.1.2.3");
	assert_true(ipam_cidr_contains(&one, &a));
	a = h_addr("10.1.2.4");
	assert_false(ipam_cidr_contains(&one, &a));
	/* Families never mix: ::a00:1 is not 10.0.0.1. */
	a = h_addr("::a00:1");
	assert_false(ipam_cidr_contains(&net, &a));
	assert_false(ipam_cidr_contains(&all, &a));
	a = h_addr("fd00::ff");
	assert_true(ipam_cidr_contains(&v6, &a));
	{
		struct ipam_cidr all6 = h_cidr("::/0");
		assert_true(ipam_cidr_contains(&all6, &a));
		a = h_addr("::");
		assert_true(ipam_cidr_contains(&all6, &a));
		a = h_addr("ffff::1");
		assert_true(ipam_cidr_contains(&all6, &a));
		a = h_addr("10.0.0.1");
		assert_false(ipam_cidr_contains(&all6, &a));
		a = h_addr("fd00::ff");
	}
	a = h_addr("fd00::100");
	assert_false(ipam_cidr_contains(&v6, &a));
	a = h_addr("10.0.0.1");
	assert_false(ipam_cidr_contains(&v6, &a));
}

/* Expect first..last to split into the CIDRs of want (space-separated, in order). */
static void expect_range(const char *first, const char *last, const char *want)
{
	struct ipam_addr a = h_addr(first), b = h_addr(last);
	struct ipam_cidr out[IPAM_RANGE_CIDRS_MAX];
	char got[4096] = "", c[IPAM_CIDR_STRLEN];
	unsigned n = ipam_range_cidrs(&a, &b, out, 254);

	for (unsigned i = 0; i < n && i < IPAM_RANGE_CIDRS_MAX; i++)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i > 0 ? " " : "",
		         ipam_cidr_format(&out[i], c));
	if (strcmp(got, want) != 0)
		fail_msg("%s - %s:\n got %s\nwant %s", first, last, got, want);
}

static void test_range_cidrs(void **state)
{
	struct ipam_addr a, b;
	struct ipam_cidr out[2];
	(void)state;

	expect_range("10.0.0.0", "10.0.0.255", "10.0.0.0/24");
	expect_range("10.0.0.5", "10.0.0.5", "10.0.0.5/32");
	expect_range("10.0.0.1", "10.0.0.6", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32");
	expect_range("10.0.0.0", "10.0.1.127", "10.0.0.0/24 10.0.1.0/25");
	expect_range("10.0.0.64", "10.0.2.255",
	             "10.0.0.64/26 10.0.0.128/25 10.0.1.0/24 10.0.2.0/24");
	expect_range("0.0.0.0", "255.255.255.255", "0.0.0.0/0");
	expect_range("0.0.0.0", "127.255.255.255", "0.0.0.0/1");
	expect_range("128.0.0.0", "255.255.255.255", "128.0.0.0/1");
	expect_range("fd00::", "fd00::1:ff", "fd00::/112 fd00::1:0/120");
	expect_range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0");
	expect_range("::1", "::1", "::1/128");

	/* The most pieces a range can need: 2 * bits - 2. */
	a = h_addr("0.0.0.1");
	b = h_addr("255.255.255.254");
	assert_int_equal(ipam_range_cidrs(&a, &b, out, 2), 62);
	assert_string_equal(ipam_cidr_format(&out[0], (char[IPAM_CIDR_STRLEN]){0}), "0.0.0.1/32");
	assert_string_equal(ipam_cidr_format(&out[1], (char[IPAM_CIDR_STRLEN]){0}), "0.0.0.2/31");
	a = h_addr("::1");
	b = h_addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	assert_int_equal(ipam_range_cidrs(&a, &b, out, 0), IPAM_RANGE_CIDRS_MAX);

	/* No range: the families differ, or the first address is above the last. */
	a = h_addr("10.0.0.2");
	b = h_addr("10.0.0.1");
	assert_int_equal(ipam_range_cidrs(&a, &b, out, 2), 0);
	b = h_addr("fd00::1");
	assert_int_equal(ipam_range_cidrs(&a, &b, out, 2), 0);
}

static void test_encap(void **state)
{
	static const struct {
		const char *in;
		uint8_t v;
	} ok[] = {{"never", IPAM_ENCAP_NEVER},
	          {"always", IPAM_ENCAP_ALWAYS},
	          {"cross-subnet", IPAM_ENCAP_CROSS_SUBNET},
	          {"Never", IPAM_ENCAP_NEVER},
	          {"Always", IPAM_ENCAP_ALWAYS},
	          {"CrossSubnet", IPAM_ENCAP_CROSS_SUBNET}};
	static const char *const bad[] = {"", "sometimes", "cross_subnet", "alwaysx",
	                                  "crosssubnet"};
	uint8_t v;
	(void)state;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		v = 99;
		assert_true(ipam_encap_parse(ok[i].in, &v));
		assert_int_equal(v, ok[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (ipam_encap_parse(bad[i], &v)) {
			fail_msg("\"%s\" accepted as an encapsulation", bad[i]);
		}
	}
	assert_string_equal(ipam_encap_name(IPAM_ENCAP_NEVER), "never");
	assert_string_equal(ipam_encap_name(IPAM_ENCAP_ALWAYS), "always");
	assert_string_equal(ipam_encap_name(IPAM_ENCAP_CROSS_SUBNET), "cross-subnet");
	for (uint8_t e = 0; e <= 2; e++) {
		assert_true(ipam_encap_parse(ipam_encap_name(e), &v));
		assert_int_equal(v, e);
	}
	assert_string_equal(ipam_error_code(IPAM_E_INVALID), "invalid");
	assert_string_equal(ipam_error_code(IPAM_E_NOTFOUND), "not_found");
	assert_string_equal(ipam_error_code(IPAM_E_INUSE), "in_use");
	assert_string_equal(ipam_error_code(IPAM_E_EXHAUSTED), "exhausted");
	assert_string_equal(ipam_error_code(IPAM_E_CONFLICT), "conflict");
}

/* ------------------------------------------------------------------------------------------ */
/* Pool validation                                                                             */

struct vcase {
	const char *cidr; /* parsed without the canonical check when host bits are set */
	uint8_t block_size, ipip, vxlan;
	bool ok;
	const char *says; /* a word the message must contain */
};

static struct ipam_pool vpool(const struct vcase *c)
{
	struct ipam_pool p;
	char text[64];
	char *slash;

	memset(&p, 0, sizeof p);
	snprintf(text, sizeof text, "%s", c->cidr);
	slash = strchr(text, '/');
	assert_non_null(slash);
	*slash = '\0';
	/* Built by hand so that a non-canonical CIDR reaches the validation. */
	p.cidr.addr = h_addr(text);
	p.cidr.prefix = (uint8_t)atoi(slash + 1);
	p.block_size = c->block_size;
	p.ipip = c->ipip;
	p.vxlan = c->vxlan;
	return p;
}

static void test_pool_validate(void **state)
{
	struct h *h = *state;
	static const struct vcase cases[] = {
	    {"10.0.0.0/16", 0, 0, 0, true, NULL},
	    {"10.0.0.0/16", 26, 0, 0, true, NULL},
	    {"10.0.0.0/16", 20, 0, 0, true, NULL},
	    {"10.0.0.0/16", 32, 0, 0, true, NULL},
	    {"10.0.0.0/16", 19, 0, 0, false, "19"},
	    {"10.0.0.0/16", 33, 0, 0, false, "33"},
	    {"10.0.0.0/20", 20, 0, 0, true, NULL},
	    {"10.0.0.0/21", 20, 0, 0, false, "10.0.0.0/21"},
	    {"10.0.0.0/26", 0, 0, 0, true, NULL}, /* exactly one block */
	    {"10.0.0.0/27", 0, 0, 0, true, NULL}, /* block size 0: checked by POOLS_PUT */
	    {"10.0.0.0/27", 27, 0, 0, true, NULL},
	    {"10.0.0.0/27", 26, 0, 0, false, "10.0.0.0/27"},
	    {"10.0.0.7/32", 32, 0, 0, true, NULL},
	    {"10.0.0.1/16", 0, 0, 0, false, "10.0.0.1/16"}, /* not canonical */
	    {"169.254.0.0/16", 0, 0, 0, false, "169.254.0.0/16"},
	    {"169.254.10.0/24", 0, 0, 0, false, "169.254.10.0/24"},
	    {"169.0.0.0/8", 0, 0, 0, false, "169.0.0.0/8"}, /* contains 169.254/16 */
	    {"0.0.0.0/0", 0, 0, 0, false, "0.0.0.0/0"},
	    {"169.255.0.0/16", 0, 0, 0, true, NULL},
	    {"169.253.0.0/16", 0, 0, 0, true, NULL},
	    {"10.0.0.0/16", 0, IPAM_ENCAP_ALWAYS, 0, true, NULL},
	    {"10.0.0.0/16", 0, IPAM_ENCAP_CROSS_SUBNET, IPAM_ENCAP_NEVER, true, NULL},
	    {"10.0.0.0/16", 0, 0, IPAM_ENCAP_CROSS_SUBNET, true, NULL},
	    /* One encapsulation per pool (Calico). */
	    {"10.0.0.0/16", 0, IPAM_ENCAP_ALWAYS, IPAM_ENCAP_ALWAYS, false, "10.0.0.0/16"},
	    {"10.0.0.0/16", 0, IPAM_ENCAP_CROSS_SUBNET, IPAM_ENCAP_ALWAYS, false, "10.0.0.0/16"},
	    {"10.0.0.0/16", 0, 3, 0, false, "10.0.0.0/16"},
	    {"10.0.0.0/16", 0, 0, 3, false, "10.0.0.0/16"},
	    {"10.0.0.0/16", 0, 255, 0, false, "10.0.0.0/16"},
	    {"fd00::/64", 0, 0, 0, true, NULL},
	    {"fd00::/64", 122, 0, 0, true, NULL},
	    {"fd00::/64", 116, 0, 0, true, NULL},
	    {"fd00::/64", 128, 0, 0, true, NULL},
	    {"fd00::/64", 115, 0, 0, false, "115"},
	    {"fd00::/64", 129, 0, 0, false, "129"},
	    {"fd00::/64", 26, 0, 0, false, "26"}, /* an IPv4 block size on IPv6 */
	    {"10.0.0.0/16", 122, 0, 0, false, "122"},
	    {"fd00::/116", 116, 0, 0, true, NULL},
	    {"fd00::/117", 116, 0, 0, false, "fd00::/117"},
	    {"fd00::/122", 0, 0, 0, true, NULL},
	    {"fd00::/123", 0, 0, 0, true, NULL},
	    {"fd00::1/64", 0, 0, 0, false, "fd00::1/64"},
	    {"fe80::/10", 0, 0, 0, false, "fe80::/10"},
	    {"fe80::/64", 0, 0, 0, false, "fe80::/64"},
	    {"febf:ffff::/32", 0, 0, 0, false, "febf:ffff::/32"},
	    {"fe00::/7", 0, 0, 0, false, "fe00::/7"},
	    {"::/0", 0, 0, 0, false, "::/0"}, /* contains fe80::/10 */
	    {"fc00::/6", 0, 0, 0, false, "fc00::/6"},
	    {"fec0::/10", 0, 0, 0, true, NULL},
	    {"fd00::/64", 0, IPAM_ENCAP_ALWAYS, 0, false, "fd00::/64"},
	    {"fd00::/64", 0, IPAM_ENCAP_CROSS_SUBNET, 0, false, "fd00::/64"},
	    {"fd00::/64", 0, 0, IPAM_ENCAP_ALWAYS, true, NULL},
	    {"fd00::/64", 0, 0, IPAM_ENCAP_CROSS_SUBNET, true, NULL},
	    {"fd00::/64", 0, 0, 7, false, "fd00::/64"},
	};
	uint64_t hash0 = h_hash(h);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct vcase *c = &cases[i];
		struct ipam_pool p = vpool(c);
		char err[512] = "";
		bool ok = ipam_pool_validate(&p, err, sizeof err);

		if (ok != c->ok) {
			fail_msg("pool %s block %u ipip %u vxlan %u: validate says %s (%s)",
			         c->cidr, c->block_size, c->ipip, c->vxlan, ok ? "ok" : "bad", err);
		}
		if (!ok) {
			assert_null(strchr(err, '\n'));
			if (strstr(err, c->says) == NULL) {
				fail_msg("message \"%s\" does not mention \"%s\"", err, c->says);
			}
		}
		/* The state machine applies the same rules: an invalid pool is refused. */
		if (!ok) {
			assert_int_equal(h_put_pools(h, &p, 1), IPAM_E_INVALID);
		}
	}
	assert_true(h_hash(h) == hash0);

	/* Block size 0: a new pool gets the family default, so it must hold a /26 (/122). */
	{
		struct ipam_reply rep;
		struct ipam_pool p = h_pool("10.0.0.0/27", 0);
		struct ipam_request req = {.type = IPAM_REQ_POOLS_PUT, .pools = &p, .n_pools = 1};
		assert_int_equal(h_req(h, &req, &rep), IPAM_E_INVALID);
		assert_msg_has(&rep, "10.0.0.0/27");
		ipam_reply_free(&rep);
		p = h_pool("fd00::/123", 0);
		assert_int_equal(h_req(h, &req, &rep), IPAM_E_INVALID);
		assert_msg_has(&rep, "fd00::/123");
		ipam_reply_free(&rep);
		/* An existing pool keeps its own block size, which fits. */
		p = h_pool("10.0.0.0/27", 28);
		assert_int_equal(h_put_pools(h, &p, 1), IPAM_OK);
		p = h_pool("10.0.0.0/27", 0);
		p.nat_outgoing = true;
		assert_int_equal(h_put_pools(h, &p, 1), IPAM_OK);
		assert_int_equal(h_remove_pool(h, "10.0.0.0/27", false, NULL), IPAM_OK);
		hash0 = h_hash(h);
	}

	/* A pool in a request that also carries a valid one: nothing is added. */
	{
		struct vcase vc = {"fe80::/64", 0, 0, 0, false, NULL};
		struct ipam_pool two[2] = {h_pool("10.0.0.0/16", 0), vpool(&vc)};
		struct ipam_pool *pools;
		unsigned n;
		assert_int_equal(h_put_pools(h, two, 2), IPAM_E_INVALID);
		h_pools(h, &pools, &n);
		assert_int_equal(n, 0);
		free(pools);
	}
}

static void test_default_pool(void **state)
{
	struct ipam_pool p;
	char err[256];
	(void)state;

	ipam_default_pool(4, &p);
	assert_string_equal(h_fmtc(&p.cidr).s, "192.168.0.0/16");
	assert_true(ipam_pool_validate(&p, err, sizeof err));
	assert_false(p.disabled);
	assert_int_equal(p.ipip, IPAM_ENCAP_NEVER);
	ipam_default_pool(6, &p);
	assert_string_equal(h_fmtc(&p.cidr).s, "fd80:24e2:f998:72d6::/64");
	assert_true(ipam_pool_validate(&p, err, sizeof err));
}

/* ------------------------------------------------------------------------------------------ */
/* Pools through the state machine                                                            */

static void test_pools_put_list_update(void **state)
{
	struct h *h = *state;
	struct ipam_pool in[3] = {h_pool("fd00::/64", 0), h_pool("192.168.0.0/24", 28),
	                          h_pool("10.0.0.0/16", 0)};
	struct ipam_pool *pools;
	struct ipam_pool_usage *u;
	struct ipam_reply rep;
	struct kv_tx *tx;
	unsigned n;

	in[2].ipip = IPAM_ENCAP_CROSS_SUBNET;
	in[2].vxlan = IPAM_ENCAP_NEVER;
	in[2].nat_outgoing = true;
	snprintf(in[2].node_selector, sizeof in[2].node_selector, "role == 'edge'");
	in[0].vxlan = IPAM_ENCAP_ALWAYS;
	in[1].disabled = true;
	in[1].removing = true; /* ignored in requests */
	assert_int_equal(h_put_pools(h, in, 3), IPAM_OK);

	/* IPv4 first, address order; block sizes defaulted; options as given. */
	h_pools(h, &pools, &n);
	assert_int_equal(n, 3);
	assert_string_equal(h_fmtc(&pools[0].cidr).s, "10.0.0.0/16");
	assert_string_equal(h_fmtc(&pools[1].cidr).s, "192.168.0.0/24");
	assert_string_equal(h_fmtc(&pools[2].cidr).s, "fd00::/64");
	assert_int_equal(pools[0].block_size, 26);
	assert_int_equal(pools[1].block_size, 28);
	assert_int_equal(pools[2].block_size, 122);
	assert_int_equal(pools[0].ipip, IPAM_ENCAP_CROSS_SUBNET);
	assert_true(pools[0].nat_outgoing);
	assert_string_equal(pools[0].node_selector, "role == 'edge'");
	assert_false(pools[0].disabled);
	assert_true(pools[1].disabled);
	assert_false(pools[1].removing);
	assert_int_equal(pools[2].vxlan, IPAM_ENCAP_ALWAYS);
	assert_false(pools[2].nat_outgoing);
	free(pools);

	/* Usage: totals as decimal strings (an IPv6 /64 holds 2^64). */
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_pool_usage(tx, &u, &n), 0);
	kv_view_end(tx);
	assert_int_equal(n, 3);
	assert_string_equal(u[0].total, "65536");
	assert_string_equal(u[1].total, "256");
	assert_string_equal(u[2].total, "18446744073709551616");
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(u[i].in_use, 0);
		assert_int_equal(u[i].blocks, 0);
	}
	free(u);

	/* An identical CIDR updates the pool's options. */
	in[2].nat_outgoing = false;
	in[2].ipip = IPAM_ENCAP_ALWAYS;
	in[2].node_selector[0] = '\0';
	assert_int_equal(h_put_pools(h, &in[2], 1), IPAM_OK);
	in[1].disabled = false;
	assert_int_equal(h_put_pools(h, &in[1], 1), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 3);
	assert_false(pools[0].nat_outgoing);
	assert_int_equal(pools[0].ipip, IPAM_ENCAP_ALWAYS);
	assert_string_equal(pools[0].node_selector, "");
	assert_false(pools[1].disabled);
	free(pools);

	/* Overlap with an existing pool, either way round, refused with a conflict naming it. */
	{
		struct ipam_pool p = h_pool("10.0.1.0/24", 0);
		struct ipam_request req = {.type = IPAM_REQ_POOLS_PUT, .pools = &p, .n_pools = 1};
		assert_int_equal(h_req(h, &req, &rep), IPAM_E_CONFLICT);
		assert_msg_has(&rep, "10.0.1.0/24");
		assert_msg_has(&rep, "10.0.0.0/16");
		ipam_reply_free(&rep);
	}
	assert_int_equal(h_put_pool(h, "10.0.0.0/8", 0), IPAM_E_CONFLICT);
	assert_int_equal(h_put_pool(h, "192.168.0.128/25", 0), IPAM_E_CONFLICT);
	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_E_CONFLICT);
	assert_int_equal(h_put_pool(h, "fd00::/48", 0), IPAM_E_CONFLICT);
	/* Two pools of one request that overlap each other: nothing is added. */
	{
		struct ipam_pool two[2] = {h_pool("172.16.0.0/16", 0), h_pool("172.16.5.0/24", 0)};
		assert_int_equal(h_put_pools(h, two, 2), IPAM_E_CONFLICT);
	}
	/* A new pool next to an existing one (adjacent, not overlapping) is fine. */
	assert_int_equal(h_put_pool(h, "10.1.0.0/16", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "fd00:0:0:1::/64", 0), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 5);
	assert_string_equal(h_fmtc(&pools[1].cidr).s, "10.1.0.0/16");
	assert_string_equal(h_fmtc(&pools[4].cidr).s, "fd00:0:0:1::/64");
	free(pools);
}

/* A pool's block size may change only while it has no blocks: existing blocks are never
 * re-sliced (Calico: "immutable in practice"). 0 in an update keeps the current size. */
static void test_pool_block_size_update(void **state)
{
	struct h *h = *state;
	struct ipam_pool *pools;
	struct ipam_reply rep;
	unsigned n;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 28), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, &rep), IPAM_OK);
	assert_int_equal(rep.addrs[0].block.prefix, 28);
	ipam_reply_free(&rep);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 26), IPAM_E_CONFLICT);
	/* Other options still change; the same block size (or the pool's own) is fine. */
	{
		struct ipam_pool p = h_pool("10.0.0.0/24", 28);
		p.nat_outgoing = true;
		assert_int_equal(h_put_pools(h, &p, 1), IPAM_OK);
	}
	h_pools(h, &pools, &n);
	assert_int_equal(n, 1);
	assert_int_equal(pools[0].block_size, 28);
	assert_true(pools[0].nat_outgoing);
	free(pools);
	/* Block size 0 in an update keeps the pool's own. */
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(pools[0].block_size, 28);
	free(pools);
	/* Once its blocks are gone, it may change. */
	assert_int_equal(h_remove_node(h, "n1", NULL), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 26), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, &rep), IPAM_OK);
	assert_int_equal(rep.addrs[0].block.prefix, 26);
	ipam_reply_free(&rep);
}

static void test_init_defaults(void **state)
{
	struct h *h = *state;
	struct ipam_request init = {.type = IPAM_REQ_INIT_DEFAULTS, .num4 = 1, .num6 = 1};
	struct ipam_pool *pools;
	unsigned n;
	uint64_t hash;
	struct ipam_reply rep;

	/* The reply counts the pools made, so the agent says so only when some were. */
	assert_int_equal(h_req(h, &init, &rep), IPAM_OK);
	assert_int_equal(rep.count, 2);
	ipam_reply_free(&rep);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 2);
	assert_string_equal(h_fmtc(&pools[0].cidr).s, "192.168.0.0/16");
	assert_int_equal(pools[0].block_size, 26);
	assert_string_equal(h_fmtc(&pools[1].cidr).s, "fd80:24e2:f998:72d6::/64");
	assert_int_equal(pools[1].block_size, 122);
	for (unsigned i = 0; i < 2; i++) {
		assert_false(pools[i].disabled);
		assert_int_equal(pools[i].ipip, IPAM_ENCAP_NEVER);
		assert_int_equal(pools[i].vxlan, IPAM_ENCAP_NEVER);
	}
	free(pools);

	/* A second call changes nothing, even after the default pool is gone. */
	hash = h_hash(h);
	assert_int_equal(h_req(h, &init, &rep), IPAM_OK);
	assert_int_equal(rep.count, 0);
	ipam_reply_free(&rep);
	assert_true(h_hash(h) == hash);
	assert_int_equal(h_remove_pool(h, "192.168.0.0/16", false, NULL), IPAM_OK);
	hash = h_hash(h);
	assert_int_equal(h_req0(h, &init), IPAM_OK);
	assert_true(h_hash(h) == hash);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 1);
	free(pools);

	/* Another cluster: a family that already has a pool gets no default; num6 = 0: no IPv6. */
	{
		struct h h2, h3;
		h_open(&h2, NULL, 0);
		assert_int_equal(h_put_pool(&h2, "10.0.0.0/16", 0), IPAM_OK);
		assert_int_equal(h_req0(&h2, &init), IPAM_OK);
		h_pools(&h2, &pools, &n);
		assert_int_equal(n, 2);
		assert_string_equal(h_fmtc(&pools[0].cidr).s, "10.0.0.0/16");
		assert_string_equal(h_fmtc(&pools[1].cidr).s, "fd80:24e2:f998:72d6::/64");
		free(pools);
		h_close(&h2);

		h_open(&h3, NULL, 0);
		init.num6 = 0;
		assert_int_equal(h_req0(&h3, &init), IPAM_OK);
		h_pools(&h3, &pools, &n);
		assert_int_equal(n, 1);
		assert_string_equal(h_fmtc(&pools[0].cidr).s, "192.168.0.0/16");
		free(pools);
		h_close(&h3);
	}
}

static void test_config(void **state)
{
	struct h *h = *state;

	assert_false(h_config_get(h));
	assert_int_equal(h_config(h, true), IPAM_OK);
	assert_true(h_config_get(h));
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, NULL), IPAM_OK);
	/* Allowed while blocks exist (unlike v1's SetIPAMConfig). */
	assert_int_equal(h_config(h, false), IPAM_OK);
	assert_false(h_config_get(h));
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks                                                                                      */

/* An assignment from a fresh pool: the host's first block starts at ordinal 0, is aligned and of
 * the pool's block size. */
static void check_first_block(struct h *h, const char *pool, uint8_t block_size, const char *node,
                              uint32_t num, uint32_t size)
{
	struct ipam_reply rep;
	struct ipam_cidr pc = h_cidr(pool);
	struct ipam_block_info bi;
	uint32_t fam4 = pc.addr.family == 4;

	assert_int_equal(h_put_pool(h, pool, block_size), IPAM_OK);
	assert_int_equal(h_assign(h, node, node, fam4 ? num : 0, fam4 ? 0 : num, IPS(pool), &rep),
	                 IPAM_OK);
	assert_int_equal(rep.n_addrs, num);
	for (unsigned i = 0; i < num; i++) {
		struct ipam_assigned *a = &rep.addrs[i];
		assert_int_equal(a->block.prefix, block_size != 0 ? block_size : (fam4 ? 26 : 122));
		assert_true(ipam_cidr_contains(&pc, &a->addr));
		assert_true(h_block_of(h, &a->addr, &bi));
		assert_true(h_cidr_eq(&bi.cidr, &a->block));
		assert_true(h_cidr_eq(&bi.pool, &pc));
		assert_int_equal(bi.size, size);
		assert_string_equal(bi.affinity, node);
	}
	if (size > 1) {
		/* One block, filled from its first address on. */
		for (unsigned i = 0; i < num; i++) {
			assert_true(h_cidr_eq(&rep.addrs[i].block, &rep.addrs[0].block));
			struct ipam_addr want = h_addr_add(rep.addrs[0].block.addr, i);
			bool found = false;
			for (unsigned j = 0; j < num; j++) {
				found |= memcmp(&rep.addrs[j].addr, &want, sizeof want) == 0;
			}
			assert_true(found);
		}
		assert_true(h_block_of(h, &rep.addrs[0].addr, &bi));
		assert_int_equal(bi.used, num);
	} else {
		/* Single-address blocks: one block per address. */
		struct ipam_block_info *b;
		unsigned n, in_pool = 0;
		h_blocks(h, &b, &n);
		for (unsigned i = 0; i < n; i++) {
			in_pool += h_cidr_eq(&b[i].pool, &pc);
		}
		free(b);
		assert_int_equal(in_pool, num);
	}
	ipam_reply_free(&rep);
}

static void test_blocks_v4(void **state)
{
	struct h *h = *state;

	check_first_block(h, "10.0.0.0/24", 0, "n1", 3, 64);
	check_first_block(h, "10.1.0.0/20", 20, "n2", 5, 4096);
	check_first_block(h, "10.2.0.0/16", 24, "n3", 2, 256);
	check_first_block(h, "10.3.0.0/24", 30, "n4", 4, 4);
	check_first_block(h, "10.4.0.0/24", 32, "n5", 3, 1);
	check_first_block(h, "10.5.0.0/26", 0, "n6", 64, 64); /* a pool of exactly one block */
	check_first_block(h, "10.6.0.7/32", 32, "n7", 1, 1);
}

static void test_blocks_v6(void **state)
{
	struct h *h = *state;

	check_first_block(h, "fd00::/120", 0, "n1", 3, 64);
	check_first_block(h, "fd00:1::/116", 116, "n2", 2, 4096);
	check_first_block(h, "fd00:2::/120", 124, "n3", 16, 16);
	check_first_block(h, "fd00:3::/124", 128, "n4", 3, 1);
	check_first_block(h, "fd00:4::/122", 0, "n5", 64, 64);
}

/* A pool of exactly one block serves exactly its addresses; asking for more than remain assigns
 * none (all or nothing), and IPv4 + IPv6 together are all or nothing too. */
static void test_exhaustion(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;

	assert_int_equal(h_put_pool(h, "10.0.0.0/26", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 62, 0, NULL, &rep), IPAM_OK);
	for (unsigned i = 0; i < 62; i++) {
		struct ipam_addr a = rep.addrs[i].addr;
		assert_int_equal(a.family, 4);
		assert_true(a.b[3] < 62);
	}
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n1", "b", 3, 0, NULL, &rep), IPAM_E_EXHAUSTED);
	assert_int_equal(rep.n_addrs, 0);
	ipam_reply_free(&rep);
	assert_int_equal(h_handle_count(h, "b"), 0);
	assert_int_equal(h_alloc_count(h), 62);
	/* No IPv6 pool: the IPv4 part that would fit is not assigned either. */
	assert_int_equal(h_assign(h, "n1", "b", 1, 1, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_alloc_count(h), 62);
	assert_int_equal(h_put_pool(h, "fd00::/122", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "b", 3, 1, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_assign(h, "n1", "b", 1, 65, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_alloc_count(h), 62);
	assert_int_equal(h_assign(h, "n1", "b", 2, 64, NULL, &rep), IPAM_OK);
	assert_int_equal(rep.n_addrs, 66);
	ipam_reply_free(&rep);
	assert_true(h_lookup(h, "10.0.0.62", NULL));
	assert_true(h_lookup(h, "10.0.0.63", NULL));
	assert_int_equal(h_assign(h, "n1", "c", 1, 0, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_assign(h, "n2", "c", 1, 0, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_assign(h, "n2", "c", 0, 1, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_alloc_count(h), 128);
}

/* A host fills its affine block before it claims another; two hosts get different blocks; the
 * same host starts its walk at the same block every time. */
static void test_affinity_order(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_cidr b1, b2, b3;
	struct ipam_block_info bi;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a1", 1, 0, NULL, &rep), IPAM_OK);
	b1 = rep.addrs[0].block;
	assert_memory_equal(&rep.addrs[0].addr, &b1.addr, sizeof b1.addr);
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n2", "b1", 1, 0, NULL, &rep), IPAM_OK);
	b2 = rep.addrs[0].block;
	assert_false(h_cidr_eq(&b1, &b2));
	ipam_reply_free(&rep);
	assert_true(h_block(h, h_fmtc(&b1).s, &bi));
	assert_string_equal(bi.affinity, "n1");
	assert_true(h_block(h, h_fmtc(&b2).s, &bi));
	assert_string_equal(bi.affinity, "n2");

	/* n1 fills its block... */
	assert_int_equal(h_assign(h, "n1", "a2", 63, 0, NULL, &rep), IPAM_OK);
	for (unsigned i = 0; i < 63; i++) {
		assert_true(h_cidr_eq(&rep.addrs[i].block, &b1));
	}
	ipam_reply_free(&rep);
	assert_true(h_block(h, h_fmtc(&b1).s, &bi));
	assert_int_equal(bi.used, 64);
	/* ...then claims a new one rather than borrow from n2's. */
	assert_int_equal(h_assign(h, "n1", "a3", 1, 0, NULL, &rep), IPAM_OK);
	b3 = rep.addrs[0].block;
	assert_false(h_cidr_eq(&b3, &b1));
	assert_false(h_cidr_eq(&b3, &b2));
	ipam_reply_free(&rep);
	assert_true(h_block(h, h_fmtc(&b3).s, &bi));
	assert_string_equal(bi.affinity, "n1");
	assert_int_equal(h_assign(h, "n1", "a4", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &b3));
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n2", "b2", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &b2));
	ipam_reply_free(&rep);

	/* One request larger than a block claims as many blocks as it needs, all affine. */
	assert_int_equal(h_put_pool(h, "10.1.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n3", "c1", 70, 0, IPS("10.1.0.0/24"), &rep), IPAM_OK);
	{
		struct ipam_cidr first = rep.addrs[0].block;
		unsigned in_first = 0;
		for (unsigned i = 0; i < 70; i++) {
			assert_true(h_block_of(h, &rep.addrs[i].addr, &bi));
			assert_string_equal(bi.affinity, "n3");
			in_first += h_cidr_eq(&rep.addrs[i].block, &first);
		}
		assert_true(in_first == 64 || in_first == 6);
	}
	ipam_reply_free(&rep);

	/* The same host starts at the same block: after n1 is removed (its blocks, empty, are
	 * deleted) its first block is b1 again, and on another store too. */
	assert_int_equal(h_remove_node(h, "n1", &rep), IPAM_OK);
	assert_int_equal(rep.count, 66);
	ipam_reply_free(&rep);
	assert_false(h_block(h, h_fmtc(&b1).s, NULL));
	assert_false(h_block(h, h_fmtc(&b3).s, NULL));
	assert_int_equal(h_assign(h, "n1", "a5", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &b1));
	ipam_reply_free(&rep);
	{
		struct h h2;
		h_open(&h2, NULL, 0);
		assert_int_equal(h_put_pool(&h2, "10.0.0.0/24", 0), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n1", "x", 1, 0, NULL, &rep), IPAM_OK);
		assert_true(h_cidr_eq(&rep.addrs[0].block, &b1));
		ipam_reply_free(&rep);
		h_close(&h2);
	}
}

/* Hosts spread out: in a pool of 16 blocks, 16 hosts each get a block of their own. */
static void test_hosts_get_own_blocks(void **state)
{
	struct h *h = *state;
	struct ipam_block_info *b;
	unsigned n;
	char node[16];

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 28), IPAM_OK);
	for (unsigned i = 0; i < 16; i++) {
		snprintf(node, sizeof node, "host-%u", i);
		assert_int_equal(h_assign(h, node, node, 1, 0, NULL, NULL), IPAM_OK);
	}
	h_blocks(h, &b, &n);
	assert_int_equal(n, 16);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(b[i].used, 1);
		assert_true(b[i].affinity[0] != '\0');
		for (unsigned j = 0; j < i; j++) {
			assert_string_not_equal(b[i].affinity, b[j].affinity);
		}
	}
	free(b);
	/* A 17th host borrows (the address goes to a block of another host). */
	assert_int_equal(h_assign(h, "late", "late", 1, 0, NULL, NULL), IPAM_OK);
	h_blocks(h, &b, &n);
	assert_int_equal(n, 16);
	free(b);
}

/* With no free block left a host borrows from other hosts' blocks, which keep their affinity;
 * with strict affinity it does not. */
static void test_borrowing(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_alloc al;
	struct ipam_block_info *b;
	unsigned n;

	assert_int_equal(h_put_pool(h, "10.0.0.0/25", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, NULL), IPAM_OK);
	assert_int_equal(h_assign(h, "n2", "b", 1, 0, NULL, NULL), IPAM_OK);
	assert_int_equal(h_assign(h, "n3", "c", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_lookup(h, h_fmt(&rep.addrs[0].addr).s, &al));
	assert_string_equal(al.node, "n3");
	assert_string_equal(al.handle, "c");
	assert_true(strcmp(al.affinity, "n1") == 0 || strcmp(al.affinity, "n2") == 0);
	ipam_alloc_free(&al);
	ipam_reply_free(&rep);
	h_blocks(h, &b, &n);
	assert_int_equal(n, 2);
	assert_true(strcmp(b[0].affinity, "n1") == 0 || strcmp(b[0].affinity, "n2") == 0);
	assert_true(strcmp(b[1].affinity, "n1") == 0 || strcmp(b[1].affinity, "n2") == 0);
	assert_string_not_equal(b[0].affinity, b[1].affinity);
	free(b);

	/* 125 addresses are left in the two blocks, all of which n3 may borrow. */
	assert_int_equal(h_assign(h, "n3", "c", 126, 0, NULL, NULL), IPAM_E_EXHAUSTED);
	assert_int_equal(h_assign(h, "n3", "c", 125, 0, NULL, NULL), IPAM_OK);
	assert_int_equal(h_handle_count(h, "c"), 126);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, NULL), IPAM_E_EXHAUSTED);

	/* Strict affinity: another store, same start. */
	{
		struct h h2;
		h_open(&h2, NULL, 0);
		assert_int_equal(h_put_pool(&h2, "10.0.0.0/25", 0), IPAM_OK);
		assert_int_equal(h_config(&h2, true), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n1", "a", 1, 0, NULL, NULL), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n2", "b", 1, 0, NULL, NULL), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n3", "c", 1, 0, NULL, &rep), IPAM_E_EXHAUSTED);
		ipam_reply_free(&rep);
		/* Its own block still serves n1, to the last address. */
		assert_int_equal(h_assign(&h2, "n1", "a", 63, 0, NULL, NULL), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n1", "a", 1, 0, NULL, NULL), IPAM_E_EXHAUSTED);
		/* Turning it off lets n3 borrow from n2's block. */
		assert_int_equal(h_config(&h2, false), IPAM_OK);
		assert_int_equal(h_assign(&h2, "n3", "c", 63, 0, NULL, NULL), IPAM_OK);
		h_check_clean(&h2);
		h_close(&h2);
	}
}

/* Explicit addresses. */
static void test_explicit(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_alloc al;
	struct ipam_block_info bi;
	struct ipam_addr base, x, free_block = {0};
	char xs[IPAM_ADDR_STRLEN];
	uint8_t e;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, &rep), IPAM_OK);
	base = rep.addrs[0].block.addr;
	ipam_reply_free(&rep);

	/* In another host's block: borrowed, the block keeps its affinity. */
	x = h_addr_add(base, 5);
	ipam_addr_format(&x, xs);
	assert_int_equal(h_assign_ip(h, "n2", "b", xs, &rep), IPAM_OK);
	assert_int_equal(rep.n_addrs, 1);
	assert_memory_equal(&rep.addrs[0].addr, &x, sizeof x);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &(struct ipam_cidr){base, 26}));
	ipam_reply_free(&rep);
	assert_true(h_lookup(h, xs, &al));
	assert_string_equal(al.node, "n2");
	assert_string_equal(al.handle, "b");
	assert_string_equal(al.affinity, "n1");
	ipam_alloc_free(&al);

	/* Already assigned: in use, whoever asks; the message names the address. */
	assert_int_equal(h_assign_ip(h, "n2", "b", xs, &rep), IPAM_E_INUSE);
	assert_msg_has(&rep, xs);
	ipam_reply_free(&rep);
	assert_int_equal(h_assign_ip(h, "n1", "z", xs, NULL), IPAM_E_INUSE);
	/* All or nothing: the free address of the pair is not taken either. */
	{
		struct ipam_addr y = h_addr_add(base, 6);
		char ys[IPAM_ADDR_STRLEN];
		ipam_addr_format(&y, ys);
		assert_int_equal(h_assign_ips(h, "n2", "b", IPS(ys, xs), NULL), IPAM_E_INUSE);
		assert_false(h_lookup(h, ys, NULL));
		/* The same address twice in one request is refused too. */
		e = h_assign_ips(h, "n2", "b", IPS(ys, ys), NULL);
		assert_true(e == IPAM_E_INUSE || e == IPAM_E_INVALID);
		assert_false(h_lookup(h, ys, NULL));
	}

	/* Outside every pool. */
	e = h_assign_ip(h, "n1", "a", "10.9.9.9", &rep);
	assert_true(e == IPAM_E_NOTFOUND || e == IPAM_E_INVALID);
	assert_msg_has(&rep, "10.9.9.9");
	ipam_reply_free(&rep);
	e = h_assign_ip(h, "n1", "a", "fd00::100", NULL);
	assert_true(e == IPAM_E_NOTFOUND || e == IPAM_E_INVALID);

	/* In a block that does not exist yet: the block is claimed for the host. */
	for (unsigned k = 0; k < 4; k++) {
		struct ipam_addr cand = h_addr_add(h_addr("10.0.0.0"), 64 * k);
		if (!h_block_of(h, &cand, NULL)) {
			free_block = cand;
			break;
		}
	}
	assert_int_equal(free_block.family, 4);
	x = h_addr_add(free_block, 7);
	ipam_addr_format(&x, xs);
	assert_int_equal(h_assign_ip(h, "n3", "c", xs, NULL), IPAM_OK);
	assert_true(h_block_of(h, &x, &bi));
	assert_true(h_cidr_eq(&bi.cidr, &(struct ipam_cidr){free_block, 26}));
	assert_string_equal(bi.affinity, "n3");
	assert_int_equal(bi.used, 1);
	/* The explicit ordinal left the free list: automatic ones skip it. */
	assert_int_equal(h_assign(h, "n3", "c", 8, 0, NULL, &rep), IPAM_OK);
	for (unsigned i = 0; i < 8; i++) {
		struct ipam_addr want = h_addr_add(free_block, i < 7 ? i : 8);
		bool found = false;
		for (unsigned j = 0; j < 8; j++) {
			found |= memcmp(&rep.addrs[j].addr, &want, sizeof want) == 0;
		}
		assert_true(found);
	}
	ipam_reply_free(&rep);

	/* IPv6, and both families in one request. */
	assert_int_equal(h_assign_ips(h, "n1", "d", IPS("fd00::10", "10.0.0.200"), &rep), IPAM_OK);
	assert_true(h_reply_is(&rep, IPS("fd00::10", "10.0.0.200")));
	ipam_reply_free(&rep);
	assert_true(h_block(h, "fd00::/122", &bi));
	assert_string_equal(bi.affinity, "n1");

	/* A disabled pool is refused, explicitly or by name, and nothing is written. */
	{
		struct ipam_pool p = h_pool("10.1.0.0/24", 0);
		p.disabled = true;
		assert_int_equal(h_put_pools(h, &p, 1), IPAM_OK);
		assert_true(h_assign_ip(h, "n1", "e", "10.1.0.1", NULL) != IPAM_OK);
		assert_true(h_assign(h, "n1", "e", 1, 0, IPS("10.1.0.0/24"), NULL) != IPAM_OK);
		assert_false(h_lookup(h, "10.1.0.1", NULL));
		assert_false(h_block_of(h, &(struct ipam_addr){4, {10, 1, 0, 1}}, NULL));
	}

	/* Strict affinity: another host's block is refused, the host's own is fine. */
	assert_int_equal(h_config(h, true), IPAM_OK);
	x = h_addr_add(base, 9);
	ipam_addr_format(&x, xs);
	assert_int_equal(h_assign_ip(h, "n2", "b", xs, &rep), IPAM_E_CONFLICT);
	assert_msg_has(&rep, xs);
	ipam_reply_free(&rep);
	assert_int_equal(h_assign_ip(h, "n1", "a", xs, NULL), IPAM_OK);
}

/* Released addresses are reused first in, first out: the one released longest ago first. */
static void test_fifo_reuse(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;

	assert_int_equal(h_put_pool(h, "10.0.0.0/26", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 64, 0, NULL, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.10", 0, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.3", 0, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.40", 0, NULL), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "b", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_reply_is(&rep, IPS("10.0.0.10")));
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n2", "b", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_reply_is(&rep, IPS("10.0.0.3")));
	ipam_reply_free(&rep);
	/* An explicit assignment takes its address from the middle of the list. */
	assert_int_equal(h_release_ip(h, "10.0.0.7", 0, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.8", 0, NULL), IPAM_OK);
	assert_int_equal(h_assign_ip(h, "n1", "c", "10.0.0.8", NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.63", 0, NULL), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "d", 2, 0, NULL, &rep), IPAM_OK);
	assert_true(h_reply_is(&rep, IPS("10.0.0.40", "10.0.0.7")));
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n1", "d", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_reply_is(&rep, IPS("10.0.0.63")));
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n1", "d", 1, 0, NULL, NULL), IPAM_E_EXHAUSTED);
}

/* Release by handle and by address. */
static void test_release(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_assigned a[3];
	char s[3][IPAM_ADDR_STRLEN], d[IPAM_ADDR_STRLEN];
	struct ipam_block_info bi;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "h1", 3, 0, NULL, &rep), IPAM_OK);
	memcpy(a, rep.addrs, sizeof a);
	ipam_reply_free(&rep);
	for (unsigned i = 0; i < 3; i++) {
		ipam_addr_format(&a[i].addr, s[i]);
	}
	assert_int_equal(h_assign(h, "n1", "h2", 1, 0, NULL, &rep), IPAM_OK);
	ipam_addr_format(&rep.addrs[0].addr, d);
	ipam_reply_free(&rep);
	assert_int_equal(h_handle_count(h, "h1"), 3);

	assert_int_equal(h_release_handle(h, "h1", &rep), IPAM_OK);
	assert_int_equal(rep.count, 3);
	assert_true(h_reply_is(&rep, IPS(s[0], s[1], s[2])));
	for (unsigned i = 0; i < rep.n_addrs; i++) {
		assert_int_equal(rep.addrs[i].gen, a[0].gen);
		assert_true(h_cidr_eq(&rep.addrs[i].block, &a[0].block));
	}
	ipam_reply_free(&rep);
	assert_int_equal(h_handle_count(h, "h1"), 0);
	assert_false(h_lookup(h, s[1], NULL));
	assert_true(h_lookup(h, d, NULL));
	assert_int_equal(h_release_handle(h, "h1", &rep), IPAM_E_NOTFOUND);
	assert_msg_has(&rep, "h1");
	ipam_reply_free(&rep);
	/* The host keeps its (affine) block, now with one address. */
	assert_true(h_block_of(h, &a[0].addr, &bi));
	assert_string_equal(bi.affinity, "n1");
	assert_int_equal(bi.used, 1);

	assert_int_equal(h_release_ip(h, d, 0, &rep), IPAM_OK);
	assert_int_equal(rep.count, 1);
	assert_true(h_reply_is(&rep, IPS(d)));
	ipam_reply_free(&rep);
	assert_false(h_lookup(h, d, NULL));
	assert_int_equal(h_handle_count(h, "h2"), 0);
	assert_int_equal(h_release_ip(h, d, 0, &rep), IPAM_E_NOTFOUND);
	assert_msg_has(&rep, d);
	ipam_reply_free(&rep);
	assert_int_equal(h_release_ip(h, "10.9.9.9", 0, NULL), IPAM_E_NOTFOUND);
	assert_int_equal(h_release_ip(h, "fd00::1", 0, NULL), IPAM_E_NOTFOUND);
	assert_true(h_block_of(h, &a[0].addr, &bi));
	assert_int_equal(bi.used, 0);
	assert_string_equal(bi.affinity, "n1");

	/* Several items: all or nothing. */
	assert_int_equal(h_assign(h, "n1", "h3", 2, 0, NULL, &rep), IPAM_OK);
	{
		struct ipam_release_item items[3] = {
		    {rep.addrs[0].addr, 0}, {h_addr(d), 0}, {rep.addrs[1].addr, rep.addrs[1].gen}};
		struct ipam_request req = {.type = IPAM_REQ_RELEASE, .items = items, .n_items = 3};
		struct ipam_reply r2;
		assert_int_equal(h_req(h, &req, &r2), IPAM_E_NOTFOUND);
		assert_msg_has(&r2, d);
		ipam_reply_free(&r2);
		assert_int_equal(h_handle_count(h, "h3"), 2);
		items[1] = items[2];
		req.n_items = 2;
		assert_int_equal(h_req(h, &req, &r2), IPAM_OK);
		assert_int_equal(r2.count, 2);
		ipam_reply_free(&r2);
		assert_int_equal(h_handle_count(h, "h3"), 0);
	}
	ipam_reply_free(&rep);

	/* A handle over several blocks and both families. */
	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n2", "big", 100, 3, NULL, NULL), IPAM_OK);
	assert_int_equal(h_handle_count(h, "big"), 103);
	assert_int_equal(h_release_handle(h, "big", &rep), IPAM_OK);
	assert_int_equal(rep.count, 103);
	ipam_reply_free(&rep);
	assert_int_equal(h_alloc_count(h), 0);
}

/* Generations: each assignment carries its command's revision; a release naming an old
 * generation after the address was assigned again is refused and frees nothing. */
static void test_generations(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_alloc al;
	int64_t g1, g2, gb;
	char as[IPAM_ADDR_STRLEN];
	struct ipam_addr a, b;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "h1", 1, 0, NULL, &rep), IPAM_OK);
	a = rep.addrs[0].addr;
	g1 = rep.addrs[0].gen;
	assert_int_equal(g1, h->last_rev);
	ipam_reply_free(&rep);
	ipam_addr_format(&a, as);
	assert_true(h_lookup(h, as, &al));
	assert_int_equal(al.gen, g1);
	assert_int_equal(al.time_ms, h->last_time);
	ipam_alloc_free(&al);

	assert_int_equal(h_release_ip(h, as, g1, &rep), IPAM_OK);
	assert_int_equal(rep.addrs[0].gen, g1);
	ipam_reply_free(&rep);
	/* A refused command takes no revision: the next one is the previous revision + 1. */
	assert_true(h_assign_ip(h, "n1", "h2", "10.9.9.9", NULL) != IPAM_OK);
	{
		int64_t before = kv_revision(h->kv);
		assert_int_equal(h_assign_ip(h, "n1", "h2", as, &rep), IPAM_OK);
		g2 = rep.addrs[0].gen;
		assert_int_equal(g2, before + 1);
		ipam_reply_free(&rep);
	}
	assert_true(g2 > g1);

	assert_int_equal(h_assign(h, "n1", "h3", 1, 0, NULL, &rep), IPAM_OK);
	b = rep.addrs[0].addr;
	gb = rep.addrs[0].gen;
	assert_true(gb > g2);
	ipam_reply_free(&rep);

	/* The stale generation: refused, the message names the address, nothing freed. */
	assert_int_equal(h_release_ip(h, as, g1, &rep), IPAM_E_CONFLICT);
	assert_msg_has(&rep, as);
	ipam_reply_free(&rep);
	assert_true(h_lookup(h, as, &al));
	assert_int_equal(al.gen, g2);
	assert_string_equal(al.handle, "h2");
	ipam_alloc_free(&al);
	{
		struct ipam_release_item items[2] = {{b, gb}, {a, g1}};
		struct ipam_request req = {.type = IPAM_REQ_RELEASE, .items = items, .n_items = 2};
		assert_int_equal(h_req0(h, &req), IPAM_E_CONFLICT);
		assert_int_equal(h_alloc_count(h), 2);
		items[1].gen = g2;
		assert_int_equal(h_req(h, &req, &rep), IPAM_OK);
		assert_int_equal(rep.count, 2);
		for (unsigned i = 0; i < 2; i++) {
			bool is_a = memcmp(&rep.addrs[i].addr, &a, sizeof a) == 0;
			assert_int_equal(rep.addrs[i].gen, is_a ? g2 : gb);
		}
		ipam_reply_free(&rep);
	}
	assert_int_equal(h_release_ip(h, as, g2 + 1000, NULL), IPAM_E_NOTFOUND);
	assert_int_equal(h_assign_ip(h, "n1", "h2", as, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, as, g2 + 1000, NULL), IPAM_E_CONFLICT);

	/* Commands of one batch: one leader time, increasing generations, one per command. */
	{
		struct ipam_request reqs[4] = {
		    {.type = IPAM_REQ_ASSIGN, .node = "n1", .handle = "b1", .num4 = 2},
		    {.type = IPAM_REQ_ASSIGN, .node = "n2", .handle = "b2", .num4 = 1},
		    {.type = IPAM_REQ_RELEASE_HANDLE, .handle = "nobody"},
		    {.type = IPAM_REQ_ASSIGN, .node = "n1", .handle = "b3", .num4 = 1},
		};
		struct ipam_reply reps[4];
		int64_t revs[4];
		int64_t rev0 = kv_revision(h->kv);
		h_batch(h, reqs, NULL, 4, reps, revs, NULL);
		assert_int_equal(reps[0].error, IPAM_OK);
		assert_int_equal(reps[1].error, IPAM_OK);
		assert_int_equal(reps[2].error, IPAM_E_NOTFOUND);
		assert_int_equal(reps[3].error, IPAM_OK);
		assert_int_equal(revs[0], rev0 + 1);
		assert_int_equal(revs[1], rev0 + 2);
		assert_int_equal(revs[2], rev0 + 2);
		assert_int_equal(revs[3], rev0 + 3);
		assert_int_equal(reps[0].addrs[0].gen, reps[0].addrs[1].gen);
		assert_int_equal(reps[3].addrs[0].gen, rev0 + 3);
		assert_true(h_lookup(h, h_fmt(&reps[1].addrs[0].addr).s, &al));
		assert_int_equal(al.time_ms, h->last_time);
		assert_int_equal(al.gen, rev0 + 2);
		ipam_alloc_free(&al);
		for (unsigned i = 0; i < 4; i++) {
			ipam_reply_free(&reps[i]);
		}
	}
}

/* A request id makes an assignment happen once: the retry gets the first reply. */
static void test_dedup(void **state)
{
	struct h *h = *state;
	struct ipam_request req = {.type = IPAM_REQ_ASSIGN, .node = "n1", .handle = "a", .num4 = 2};
	struct kv_reqid id = {.client = 77, .seq = 1};
	struct ipam_reply r1, r2;
	bool dup;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	h_batch(h, &req, &id, 1, &r1, NULL, &dup);
	assert_false(dup);
	h_batch(h, &req, &id, 1, &r2, NULL, &dup);
	assert_true(dup);
	assert_int_equal(r2.error, IPAM_OK);
	assert_int_equal(r2.n_addrs, 2);
	assert_memory_equal(r1.addrs, r2.addrs, 2 * sizeof *r1.addrs);
	assert_int_equal(h_alloc_count(h), 2);
	ipam_reply_free(&r1);
	ipam_reply_free(&r2);
}

/* Pool removal. */
static void test_pool_remove(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_pool *pools;
	struct ipam_block_info bi, *blocks;
	struct ipam_assigned a[3];
	struct ipam_cidr empty_block;
	unsigned n;
	uint8_t e;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.1.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 3, 0, IPS("10.0.0.0/24"), &rep), IPAM_OK);
	memcpy(a, rep.addrs, sizeof a);
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n2", "b", 1, 0, IPS("10.0.0.0/24"), &rep), IPAM_OK);
	empty_block = rep.addrs[0].block;
	ipam_reply_free(&rep);
	assert_int_equal(h_release_handle(h, "b", NULL), IPAM_OK);
	assert_true(h_block(h, h_fmtc(&empty_block).s, NULL)); /* affine: kept */

	/* In use: refused with the count. */
	assert_int_equal(h_remove_pool(h, "10.0.0.0/24", false, &rep), IPAM_E_INUSE);
	assert_int_equal(rep.count, 3);
	assert_msg_has(&rep, "10.0.0.0/24");
	assert_msg_has(&rep, "3");
	ipam_reply_free(&rep);
	{
		struct ipam_cidr two[2] = {h_cidr("10.1.0.0/24"), h_cidr("10.0.0.0/24")};
		struct ipam_request req = {
		    .type = IPAM_REQ_POOLS_REMOVE, .cidrs = two, .n_cidrs = 2};
		assert_int_equal(h_req0(h, &req), IPAM_E_INUSE);
		h_pools(h, &pools, &n);
		assert_int_equal(n, 2);
		free(pools);
	}
	/* Not a pool. */
	assert_int_equal(h_remove_pool(h, "10.2.0.0/24", false, &rep), IPAM_E_NOTFOUND);
	assert_msg_has(&rep, "10.2.0.0/24");
	ipam_reply_free(&rep);
	assert_int_equal(h_remove_pool(h, "10.0.0.0/25", true, NULL), IPAM_E_NOTFOUND);

	/* Forced: the pool stays, disabled and removing, until its last address goes; the empty
	 * block is deleted, the other loses its affinity. */
	assert_int_equal(h_remove_pool(h, "10.0.0.0/24", true, NULL), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 2);
	assert_string_equal(h_fmtc(&pools[0].cidr).s, "10.0.0.0/24");
	assert_true(pools[0].disabled);
	assert_true(pools[0].removing);
	assert_false(pools[1].removing);
	free(pools);
	assert_false(h_block(h, h_fmtc(&empty_block).s, NULL));
	assert_true(h_block(h, h_fmtc(&a[0].block).s, &bi));
	assert_string_equal(bi.affinity, "");
	assert_int_equal(bi.used, 3);

	/* Nothing is assigned from it any more. */
	e = h_assign(h, "n1", "c", 1, 0, IPS("10.0.0.0/24"), NULL);
	assert_true(e != IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "c", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(
	    ipam_cidr_contains(&(struct ipam_cidr){h_addr("10.1.0.0"), 24}, &rep.addrs[0].addr));
	ipam_reply_free(&rep);
	assert_int_equal(h_release_handle(h, "c", NULL), IPAM_OK);
	{
		struct ipam_addr x = h_addr_add(a[0].block.addr, 50);
		assert_true(h_assign_ip(h, "n1", "c", h_fmt(&x).s, NULL) != IPAM_OK);
		x = h_addr_add(empty_block.addr, 1);
		assert_true(h_assign_ip(h, "n1", "c", h_fmt(&x).s, NULL) != IPAM_OK);
	}
	/* It still occupies its range. */
	assert_int_equal(h_put_pool(h, "10.0.0.0/25", 0), IPAM_E_CONFLICT);
	/* Removing it again without force is still refused with the count; forced is fine. */
	assert_int_equal(h_remove_pool(h, "10.0.0.0/24", false, &rep), IPAM_E_INUSE);
	assert_int_equal(rep.count, 3);
	ipam_reply_free(&rep);

	/* The last release takes the pool and its block away. */
	assert_int_equal(h_release_ip(h, h_fmt(&a[0].addr).s, a[0].gen, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, h_fmt(&a[1].addr).s, 0, NULL), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 2);
	free(pools);
	assert_int_equal(h_release_handle(h, "a", NULL), IPAM_OK);
	h_pools(h, &pools, &n);
	assert_int_equal(n, 1);
	assert_string_equal(h_fmtc(&pools[0].cidr).s, "10.1.0.0/24");
	free(pools);
	h_blocks(h, &blocks, &n);
	for (unsigned i = 0; i < n; i++) {
		assert_true(ipam_cidr_contains(&(struct ipam_cidr){h_addr("10.1.0.0"), 24},
		                               &blocks[i].cidr.addr));
	}
	free(blocks);
	assert_int_equal(h_put_pool(h, "10.0.0.0/25", 0), IPAM_OK);

	/* An unused pool with an affine (empty) block: removed with its blocks. */
	assert_int_equal(h_remove_pool(h, "10.1.0.0/24", false, NULL), IPAM_OK);
	h_blocks(h, &blocks, &n);
	assert_int_equal(n, 0);
	free(blocks);
	/* Several at once. */
	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_OK);
	{
		struct ipam_cidr two[2] = {h_cidr("fd00::/120"), h_cidr("10.0.0.0/25")};
		struct ipam_request req = {
		    .type = IPAM_REQ_POOLS_REMOVE, .cidrs = two, .n_cidrs = 2};
		assert_int_equal(h_req0(h, &req), IPAM_OK);
	}
	h_pools(h, &pools, &n);
	assert_int_equal(n, 0);
	free(pools);
}

/* A node leaves: its addresses are released, its empty blocks deleted, its other blocks keep the
 * addresses of other hosts and lose their affinity. */
static void test_remove_node(void **state)
{
	struct h *h = *state;
	struct ipam_reply rep;
	struct ipam_cidr b1, b2;
	struct ipam_block_info bi;
	struct ipam_addr x, y, n1a;
	struct ipam_alloc al;

	assert_int_equal(h_put_pool(h, "10.0.0.0/25", 0), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 1, 0, NULL, &rep), IPAM_OK);
	b1 = rep.addrs[0].block;
	n1a = rep.addrs[0].addr;
	ipam_reply_free(&rep);
	assert_int_equal(h_assign(h, "n2", "b", 1, 0, NULL, &rep), IPAM_OK);
	b2 = rep.addrs[0].block;
	ipam_reply_free(&rep);
	/* n1 borrows in b2, n2 borrows in b1. */
	x = h_addr_add(b2.addr, 10);
	y = h_addr_add(b1.addr, 10);
	assert_int_equal(h_assign_ip(h, "n1", "a2", h_fmt(&x).s, NULL), IPAM_OK);
	assert_int_equal(h_assign_ip(h, "n2", "b2", h_fmt(&y).s, NULL), IPAM_OK);

	assert_int_equal(h_remove_node(h, "n1", &rep), IPAM_OK);
	assert_int_equal(rep.count, 2);
	assert_true(h_reply_is(&rep, IPS(h_fmt(&n1a).s, h_fmt(&x).s)));
	ipam_reply_free(&rep);
	assert_true(h_block(h, h_fmtc(&b1).s, &bi));
	assert_string_equal(bi.affinity, "");
	assert_int_equal(bi.used, 1);
	assert_true(h_block(h, h_fmtc(&b2).s, &bi));
	assert_string_equal(bi.affinity, "n2");
	assert_int_equal(bi.used, 1);
	assert_true(h_lookup(h, h_fmt(&y).s, &al));
	assert_string_equal(al.affinity, "");
	ipam_alloc_free(&al);
	assert_int_equal(h_handle_count(h, "a"), 0);
	assert_int_equal(h_handle_count(h, "a2"), 0);

	/* The unaffine block is not claimed by a host, only borrowed from. */
	assert_int_equal(h_assign(h, "n3", "c", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &b1) || h_cidr_eq(&rep.addrs[0].block, &b2));
	ipam_reply_free(&rep);
	assert_int_equal(h_release_handle(h, "c", NULL), IPAM_OK);
	assert_true(h_block(h, h_fmtc(&b1).s, &bi));
	assert_string_equal(bi.affinity, "");

	/* Its last address released, the unaffine block is deleted; a free block is claimable. */
	assert_int_equal(h_release_handle(h, "b2", NULL), IPAM_OK);
	assert_false(h_block(h, h_fmtc(&b1).s, NULL));
	assert_int_equal(h_assign(h, "n3", "c", 1, 0, NULL, &rep), IPAM_OK);
	assert_true(h_cidr_eq(&rep.addrs[0].block, &b1));
	ipam_reply_free(&rep);
	assert_true(h_block(h, h_fmtc(&b1).s, &bi));
	assert_string_equal(bi.affinity, "n3");

	/* A node with nothing: nothing to do. */
	assert_int_equal(h_remove_node(h, "n9", &rep), IPAM_OK);
	assert_int_equal(rep.count, 0);
	ipam_reply_free(&rep);
	/* An empty affine block goes with its node. */
	assert_int_equal(h_release_handle(h, "b", NULL), IPAM_OK);
	assert_true(h_block(h, h_fmtc(&b2).s, NULL));
	assert_int_equal(h_remove_node(h, "n2", &rep), IPAM_OK);
	assert_int_equal(rep.count, 0);
	ipam_reply_free(&rep);
	assert_false(h_block(h, h_fmtc(&b2).s, NULL));
}

/* Attributes and the read side. */
static void test_attrs_and_queries(void **state)
{
	struct h *h = *state;
	struct ipam_attr attrs[3] = {
	    {"container", "c0ffee"}, {"netns", "/var/run/netns/x"}, {"note", ""}};
	struct ipam_request req = {.type = IPAM_REQ_ASSIGN,
	                           .node = "agent-1",
	                           .handle = "net.c0ffee",
	                           .attrs = attrs,
	                           .n_attrs = 3,
	                           .num4 = 1,
	                           .num6 = 1};
	struct ipam_reply rep;
	struct ipam_alloc al;
	struct ipam_assigned *ha;
	struct kv_tx *tx;
	unsigned n;

	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_req(h, &req, &rep), IPAM_OK);
	assert_int_equal(rep.n_addrs, 2);
	assert_true(h_lookup(h, h_fmt(&rep.addrs[0].addr).s, &al));
	assert_string_equal(al.handle, "net.c0ffee");
	assert_string_equal(al.node, "agent-1");
	assert_string_equal(al.affinity, "agent-1");
	assert_int_equal(al.gen, rep.addrs[0].gen);
	assert_true(h_cidr_eq(&al.block, &rep.addrs[0].block));
	assert_int_equal(al.time_ms, h->last_time);
	assert_int_equal(al.n_attrs, 3);
	for (unsigned i = 0; i < 3; i++) {
		bool found = false;
		for (unsigned j = 0; j < al.n_attrs; j++) {
			if (strcmp(al.attrs[j].key, attrs[i].key) == 0) {
				assert_string_equal(al.attrs[j].value, attrs[i].value);
				found = true;
			}
		}
		assert_true(found);
	}
	ipam_alloc_free(&al);

	/* The handle's addresses, with their generation and block. */
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_handle_addrs(tx, "net.c0ffee", &ha, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ha[0].addr.family + ha[1].addr.family, 10);
	for (unsigned i = 0; i < 2; i++) {
		unsigned j =
		    memcmp(&ha[i].addr, &rep.addrs[0].addr, sizeof ha[i].addr) == 0 ? 0 : 1;
		assert_memory_equal(&ha[i].addr, &rep.addrs[j].addr, sizeof ha[i].addr);
		assert_int_equal(ha[i].gen, rep.addrs[j].gen);
		assert_true(h_cidr_eq(&ha[i].block, &rep.addrs[j].block));
	}
	free(ha);
	ha = NULL;
	assert_int_equal(ipam_handle_addrs(tx, "nobody", &ha, &n), 0);
	assert_int_equal(n, 0);
	free(ha);
	kv_view_end(tx);
	ipam_reply_free(&rep);
	assert_false(h_lookup(h, "10.0.0.200", NULL));
	assert_false(h_lookup(h, "1.1.1.1", NULL));
}

struct collect {
	struct ipam_addr addrs[64];
	unsigned n;
	unsigned stop_after;
	int stop_with;
};

static int collect_cb(void *arg, const struct ipam_alloc *a)
{
	struct collect *c = arg;
	if (c->n == c->stop_after) {
		return c->stop_with;
	}
	assert_true(c->n < 64);
	c->addrs[c->n++] = a->addr;
	return 0;
}

/* foreach walks every allocation in address order, IPv4 first, and stops when told. */
static void test_foreach_order(void **state)
{
	struct h *h = *state;
	struct collect c = {.stop_after = 1000};
	struct kv_tx *tx;
	int rv42, rv1;

	assert_int_equal(h_put_pool(h, "fd00::/120", 0), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 28), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "a", 5, 3, NULL, NULL), IPAM_OK);
	assert_int_equal(h_assign(h, "n2", "b", 20, 2, NULL, NULL), IPAM_OK);
	assert_int_equal(h_assign_ips(h, "n3", "c", IPS("10.0.0.255", "fd00::ff"), NULL), IPAM_OK);
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_foreach_alloc(tx, collect_cb, &c), 0);
	assert_int_equal(c.n, 32);
	for (unsigned i = 1; i < c.n; i++) {
		assert_true(c.addrs[i - 1].family <= c.addrs[i].family);
		if (c.addrs[i - 1].family == c.addrs[i].family) {
			assert_true(memcmp(c.addrs[i - 1].b, c.addrs[i].b, 16) < 0);
		}
	}
	c.n = 0;
	c.stop_after = 3;
	c.stop_with = 42;
	rv42 = ipam_foreach_alloc(tx, collect_cb, &c);
	c.n = 0;
	c.stop_with = 1;
	rv1 = ipam_foreach_alloc(tx, collect_cb, &c);
	kv_view_end(tx);
	/* The callback's own value comes back, whatever it is. */
	assert_int_equal(rv42, 42);
	assert_int_equal(rv1, 1);
	assert_int_equal(c.n, 3);
}

struct changes {
	unsigned ip, block, handle, other;
	bool saw_borrowed;
};

/* Every stored key read back as a watcher gets it: a put (the value) and a deletion (none). */
static int change_cb(void *arg, struct kv_bytes key, struct kv_bytes value)
{
	struct changes *c = arg;
	struct ipam_change ch, del;
	assert_int_equal(ipam_change_decode(key.data, key.len, value.data, value.len, &ch), 0);
	assert_int_equal(ipam_change_decode(key.data, key.len, NULL, 0, &del), 0);
	assert_int_equal(del.kind, ch.kind);
	assert_false(del.has_record);
	switch (ch.kind) {
	case IPAM_CHANGE_IP:
		c->ip++;
		assert_true(ch.has_record);
		assert_true(ipam_cidr_contains(&ch.block, &ch.addr));
		assert_true(ch.block.prefix == 28 || ch.block.prefix == 122);
		assert_true(strcmp(ch.name, "n1") == 0 || strcmp(ch.name, "n2") == 0);
		c->saw_borrowed |= strcmp(ch.name, "n2") == 0;
		assert_true(ipam_addr_equal(&del.addr, &ch.addr));
		break;
	case IPAM_CHANGE_BLOCK:
		c->block++;
		assert_true(ch.has_record);
		assert_true(ipam_cidr_contains(&ch.block, &ch.addr));
		assert_string_equal(ch.name, "n1");
		assert_true(ipam_addr_equal(&del.addr, &ch.addr));
		break;
	case IPAM_CHANGE_HANDLE:
		c->handle++;
		assert_true(strcmp(ch.name, "ctr-a") == 0 || strcmp(ch.name, "ctr-b") == 0);
		assert_string_equal(del.name, ch.name);
		break;
	default:
		c->other++;
		break;
	}
	return 0;
}

/* ipam_change_decode tells the agent's route sync what each changed key is: an address with its
 * block and node, a block with its affinity, a handle, or something else; it refuses what is
 * malformed. */
static void test_change_decode(void **state)
{
	struct h *h = *state;
	struct changes c = {0};
	struct kv_tx *tx;
	struct ipam_change ch;
	uint8_t junk[3] = {1, 2, 3};
	struct ipam_block_info b;

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 28), IPAM_OK);
	assert_int_equal(h_put_pool(h, "fd00::/120", 122), IPAM_OK);
	assert_int_equal(h_assign(h, "n1", "ctr-a", 3, 2, NULL, NULL), IPAM_OK);
	/* n2 takes a free address of n1's IPv4 block: the record names n2, the block stays n1's. */
	struct ipam_block_info *blocks;
	unsigned nb;
	struct ipam_addr free_ip = {0};
	h_blocks(h, &blocks, &nb);
	for (unsigned i = 0; i < nb; i++) {
		assert_string_equal(blocks[i].affinity, "n1");
		if (blocks[i].cidr.addr.family == 4) {
			b = blocks[i];
		}
	}
	free(blocks);
	for (uint32_t k = 0; k < 16 && free_ip.family == 0; k++) {
		struct ipam_alloc al;
		struct ipam_addr cand = h_addr_add(b.cidr.addr, k);
		if (h_lookup(h, h_fmt(&cand).s, &al)) {
			ipam_alloc_free(&al);
		} else {
			free_ip = cand;
		}
	}
	assert_int_equal(free_ip.family, 4);
	assert_int_equal(h_assign_ip(h, "n2", "ctr-b", h_fmt(&free_ip).s, NULL), IPAM_OK);
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	struct kv_bytes all = {(const uint8_t *)"ipam/", 5}, from = {NULL, 0};
	assert_int_equal(kv_tx_scan(tx, KV_SPACE_DOMAIN, all, from, change_cb, &c), KV_OK);
	kv_view_end(tx);
	assert_int_equal(c.ip, 6);
	assert_int_equal(c.block, 2);
	assert_int_equal(c.handle, 2);
	assert_true(c.other >= 2); /* the pools, at least */
	assert_true(c.saw_borrowed);

	/* A key under "ipam/ip/" or "ipam/block/" without an address, or a record that does not
	 * decode, is malformed; a key of another kind is not looked into. */
	static const char ip_short[] = "ipam/ip/x", block_short[] = "ipam/block/x";
	assert_int_equal(
	    ipam_change_decode((const uint8_t *)ip_short, strlen(ip_short), NULL, 0, &ch),
	    -EBADMSG);
	assert_int_equal(
	    ipam_change_decode((const uint8_t *)block_short, strlen(block_short), NULL, 0, &ch),
	    -EBADMSG);
	uint8_t k[IPAM_KEY_MAX];
	size_t n = ipam_key_ip(k, &free_ip);
	assert_int_equal(ipam_change_decode(k, n, junk, sizeof junk, &ch), -EBADMSG);
	n = ipam_key_block(k, &b.cidr.addr);
	assert_int_equal(ipam_change_decode(k, n, junk, sizeof junk, &ch), -EBADMSG);
	static const char cfg[] = IPAM_KEY_CONFIG;
	assert_int_equal(ipam_change_decode((const uint8_t *)cfg, strlen(cfg), junk, 3, &ch), 0);
	assert_int_equal(ch.kind, IPAM_CHANGE_OTHER);
}

/* Requests that make no sense are refused as invalid (or by the encoder). */
static void test_invalid_requests(void **state)
{
	struct h *h = *state;
	char long_name[300];
	struct ipam_attr attrs[IPAM_ATTRS_MAX + 1];
	struct ipam_addr ip = h_addr("10.0.0.5");
	uint8_t *buf;
	size_t len;
	static const char *const bad_names[] = {"", "a\nb", "tab\there", "nul\x01"};

	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 0), IPAM_OK);
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		assert_int_equal(h_assign(h, "n1", bad_names[i], 1, 0, NULL, NULL), IPAM_E_INVALID);
		assert_int_equal(h_assign(h, bad_names[i], "h", 1, 0, NULL, NULL), IPAM_E_INVALID);
	}
	memset(long_name, 'x', sizeof long_name);
	long_name[IPAM_NAME_MAX] = '\0';
	assert_int_equal(h_assign(h, "n1", long_name, 1, 0, NULL, NULL), IPAM_OK);
	long_name[IPAM_NAME_MAX] = 'x';
	long_name[IPAM_NAME_MAX + 1] = '\0';
	{
		struct ipam_request req = {
		    .type = IPAM_REQ_ASSIGN, .node = "n1", .handle = long_name, .num4 = 1};
		int rv = ipam_encode_request(&req, &buf, &len);
		if (rv == 0) {
			free(buf);
			assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
		} else {
			assert_int_equal(rv, -EINVAL);
		}
	}
	/* Nothing asked for; both explicit and automatic. */
	assert_int_equal(h_assign(h, "n1", "h", 0, 0, NULL, NULL), IPAM_E_INVALID);
	{
		struct ipam_request req = {.type = IPAM_REQ_ASSIGN,
		                           .node = "n1",
		                           .handle = "h",
		                           .ips = &ip,
		                           .n_ips = 1,
		                           .num4 = 1};
		assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
	}
	/* Attributes: an empty key is invalid, an empty value fine, at most IPAM_ATTRS_MAX. */
	for (unsigned i = 0; i <= IPAM_ATTRS_MAX; i++) {
		static const char *const keys[] = {"k0",  "k1",  "k2",  "k3",  "k4",  "k5",
		                                   "k6",  "k7",  "k8",  "k9",  "k10", "k11",
		                                   "k12", "k13", "k14", "k15", "k16"};
		attrs[i].key = keys[i];
		attrs[i].value = "";
	}
	{
		struct ipam_request req = {.type = IPAM_REQ_ASSIGN,
		                           .node = "n1",
		                           .handle = "h",
		                           .attrs = attrs,
		                           .n_attrs = IPAM_ATTRS_MAX,
		                           .num4 = 1};
		int rv;
		assert_int_equal(h_req0(h, &req), IPAM_OK);
		req.n_attrs = IPAM_ATTRS_MAX + 1;
		rv = ipam_encode_request(&req, &buf, &len);
		if (rv == 0) {
			free(buf);
			assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
		} else {
			assert_int_equal(rv, -EINVAL);
		}
		attrs[0].key = "";
		req.n_attrs = 1;
		assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
		/* A key with a control character. */
		attrs[0].key = "k\n";
		assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
	}
	/* More than IPAM_ASSIGN_MAX addresses. */
	{
		struct ipam_request req = {.type = IPAM_REQ_ASSIGN,
		                           .node = "n1",
		                           .handle = "h",
		                           .num4 = IPAM_ASSIGN_MAX + 1};
		int rv = ipam_encode_request(&req, &buf, &len);
		if (rv == 0) {
			free(buf);
			assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
		} else {
			assert_int_equal(rv, -EINVAL);
		}
	}
	/* An unknown request type. */
	{
		struct ipam_request req = {.type = 99};
		int rv = ipam_encode_request(&req, &buf, &len);
		if (rv == 0) {
			free(buf);
			assert_int_equal(h_req0(h, &req), IPAM_E_INVALID);
		} else {
			assert_int_equal(rv, -EINVAL);
		}
	}
	/* A payload that is not a request at all: refused with a reply, nothing changed. */
	{
		static const uint8_t junk[][8] = {{0}, {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}};
		for (unsigned i = 0; i < 2; i++) {
			for (size_t l = 0; l <= 8; l++) {
				struct kv_cmd cmd = {.op = {.type = KV_OP_CALL,
				                            .call = IPAM_CALL,
				                            .value = {junk[i], l}}};
				struct kv_apply_out out;
				struct ipam_reply rep;
				uint64_t hash = h_hash(h);
				void *batch;
				size_t blen;
				assert_int_equal(
				    kv_encode_batch(&cmd, 1, h->time_ms, &batch, &blen), KV_OK);
				assert_int_equal(kv_apply(h->kv, batch, blen, &out), KV_OK);
				raft_free(batch);
				assert_int_equal(out.results[0].status, KV_R_REFUSED);
				assert_int_equal(ipam_decode_reply(out.results[0].reply,
				                                   out.results[0].reply_len, &rep),
				                 0);
				assert_int_equal(rep.error, IPAM_E_INVALID);
				ipam_reply_free(&rep);
				kv_apply_out_free(&out);
				assert_true(h_hash(h) == hash);
			}
		}
	}
	/* A reply decoder fed junk says so. */
	{
		struct ipam_reply rep;
		static const uint8_t junk[] = {0xff, 0xff, 0xff};
		assert_int_equal(ipam_decode_reply(junk, sizeof junk, &rep), -EINVAL);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Determinism and the check                                                                   */

/* A fixed scenario that touches every command. */
static void scenario(struct h *h)
{
	struct ipam_request init = {.type = IPAM_REQ_INIT_DEFAULTS, .num4 = 1, .num6 = 1};
	char node[16], handle[16];

	assert_int_equal(h_req0(h, &init), IPAM_OK);
	assert_int_equal(h_put_pool(h, "10.0.0.0/24", 28), IPAM_OK);
	assert_int_equal(h_assign_ip(h, "n9", "x", "10.0.0.77", NULL), IPAM_OK);
	for (unsigned i = 0; i < 40; i++) {
		snprintf(node, sizeof node, "n%u", i % 5);
		snprintf(handle, sizeof handle, "h%u", i);
		assert_int_equal(h_assign(h, node, handle, 1 + i % 3, i % 2,
		                          i % 4 == 0 ? IPS("10.0.0.0/24") : NULL, NULL),
		                 IPAM_OK);
		if (i % 3 == 2) {
			snprintf(handle, sizeof handle, "h%u", i - 1);
			assert_int_equal(h_release_handle(h, handle, NULL), IPAM_OK);
		}
	}
	assert_int_equal(h_config(h, true), IPAM_OK);
	assert_int_equal(h_remove_node(h, "n2", NULL), IPAM_OK);
	assert_int_equal(h_remove_pool(h, "10.0.0.0/24", true, NULL), IPAM_OK);
	assert_int_equal(h_release_ip(h, "10.0.0.77", 0, NULL), IPAM_OK);
}

static int hash_alloc_cb(void *arg, const struct ipam_alloc *a)
{
	uint64_t *hv = arg;
	const uint8_t *p = (const uint8_t *)a;
	/* Only the plain fields: FNV-1a over address, generation and the strings. */
	for (size_t i = 0; i < sizeof a->addr; i++) {
		*hv = (*hv ^ p[i]) * 1099511628211ULL;
	}
	*hv = (*hv ^ (uint64_t)a->gen) * 1099511628211ULL;
	for (const char *s = a->handle; *s; s++) {
		*hv = (*hv ^ (uint8_t)*s) * 1099511628211ULL;
	}
	for (const char *s = a->node; *s; s++) {
		*hv = (*hv ^ (uint8_t)*s) * 1099511628211ULL;
	}
	return 0;
}

static void test_determinism(void **state)
{
	struct h *h = *state, h2;
	uint64_t a1 = 14695981039346656037ULL, a2 = a1;
	struct kv_tx *tx;

	h_open(&h2, NULL, 0);
	scenario(h);
	scenario(&h2);
	assert_true(h_hash(h) == h_hash(&h2));
	assert_int_equal(kv_revision(h->kv), kv_revision(h2.kv));
	assert_int_equal(kv_view_begin(h->kv, &tx), KV_OK);
	assert_int_equal(ipam_foreach_alloc(tx, hash_alloc_cb, &a1), 0);
	kv_view_end(tx);
	assert_int_equal(kv_view_begin(h2.kv, &tx), KV_OK);
	assert_int_equal(ipam_foreach_alloc(tx, hash_alloc_cb, &a2), 0);
	kv_view_end(tx);
	assert_true(a1 == a2);
	assert_true(h_alloc_count(h) > 20);
	h_close(&h2);
}

/* The injector: a second domain handler that writes whatever records the payload names, so a
 * test can break an IPAM invariant the way a bug would. Payload: a sequence of
 *   op (1 byte: 'p' put, 'd' del) | key length (u16) | key | value length (u32) | value. */
#define INJECT_CALL 99

static int inject_apply(void *data, struct kv_tx *tx, struct kv_bytes payload,
                        struct kv_call_out *out)
{
	const uint8_t *p = payload.data, *end = payload.data + payload.len;
	(void)data;
	(void)out;
	while (p < end) {
		uint8_t op = p[0];
		uint16_t kl = (uint16_t)(p[1] | p[2] << 8);
		struct kv_bytes key = {p + 3, kl}, value;
		uint32_t vl;
		p += 3 + kl;
		memcpy(&vl, p, 4);
		value.data = p + 4;
		value.len = vl;
		p += 4 + vl;
		if (op == 'p') {
			assert_int_equal(kv_tx_put(tx, KV_SPACE_DOMAIN, key, value), KV_OK);
		} else {
			assert_int_equal(kv_tx_del(tx, KV_SPACE_DOMAIN, key), KV_OK);
		}
	}
	return KV_OK;
}

struct inject {
	uint8_t *buf;
	size_t len;
};

static void inject_add(struct inject *in, uint8_t op, const void *key, size_t kl, const void *v,
                       size_t vl)
{
	uint32_t vl32 = (uint32_t)vl;
	in->buf = realloc(in->buf, in->len + 7 + kl + vl);
	assert_non_null(in->buf);
	in->buf[in->len] = op;
	in->buf[in->len + 1] = (uint8_t)kl;
	in->buf[in->len + 2] = (uint8_t)(kl >> 8);
	memcpy(in->buf + in->len + 3, key, kl);
	memcpy(in->buf + in->len + 3 + kl, &vl32, 4);
	if (vl > 0) {
		memcpy(in->buf + in->len + 7 + kl, v, vl);
	}
	in->len += 7 + kl + vl;
}

static void inject_run(struct h *h, struct inject *in)
{
	struct kv_cmd cmd = {
	    .op = {.type = KV_OP_CALL, .call = INJECT_CALL, .value = {in->buf, in->len}}};
	struct kv_apply_out out;
	void *batch;
	size_t blen;

	assert_int_equal(kv_encode_batch(&cmd, 1, h->time_ms, &batch, &blen), KV_OK);
	assert_int_equal(kv_apply(h->kv, batch, blen, &out), KV_OK);
	raft_free(batch);
	assert_int_equal(out.results[0].status, KV_R_OK);
	kv_apply_out_free(&out);
	free(in->buf);
	in->buf = NULL;
	in->len = 0;
}

/* A copy of the DOMAIN records. */
struct dump {
	struct kv_kv *kvs;
	unsigned n;
};

static void dump_take(struct h *h, struct dump *d)
{
	bool more;
	int64_t rev;
	assert_int_equal(kv_range(h->kv, KV_SPACE_DOMAIN, (struct kv_bytes){(const uint8_t *)"", 0},
	                          true, 0, &d->kvs, &d->n, &more, &rev),
	                 KV_OK);
}

static struct kv_kv *dump_find(struct dump *d, const struct kv_kv *k)
{
	for (unsigned i = 0; i < d->n; i++) {
		if (d->kvs[i].key_len == k->key_len &&
		    memcmp(d->kvs[i].key, k->key, k->key_len) == 0) {
			return &d->kvs[i];
		}
	}
	return NULL;
}

/* Snapshot and restore around each injection, so each starts from the same clean state. */
struct saved {
	void *buf;
	size_t len;
};

static void save(struct h *h, struct saved *s)
{
	struct kv_snapshot *snap;
	assert_int_equal(kv_snapshot_begin(h->kv, &snap), KV_OK);
	assert_int_equal(kv_snapshot_write(snap, &s->buf, &s->len), KV_OK);
	kv_snapshot_end(snap);
}

static void restore(struct h *h, struct saved *s)
{
	assert_int_equal(kv_restore(h->kv, s->buf, s->len), KV_OK);
	h_check_clean(h);
}

static void expect_problems(struct h *h, const char *what)
{
	unsigned n = h_check(h, false);
	if (n == 0) {
		fail_msg("ipam_check found nothing after: %s", what);
	}
}

static void test_check_detects(void **state)
{
	struct h h;
	struct kv_handler inj = {.call = INJECT_CALL, .fn = inject_apply, .data = NULL};
	struct inject in = {NULL, 0};
	struct dump before, after;
	struct saved clean;
	struct ipam_reply rep;
	struct ipam_addr x;
	uint8_t key[IPAM_KEY_MAX];
	size_t kl;
	(void)state;

	h_open(&h, &inj, 1);
	assert_int_equal(h_put_pool(&h, "10.0.0.0/24", 0), IPAM_OK);
	assert_int_equal(h_assign(&h, "n1", "h1", 2, 0, NULL, NULL), IPAM_OK);
	assert_int_equal(h_assign(&h, "n1", "h2", 1, 0, NULL, &rep), IPAM_OK);
	x = rep.addrs[0].addr;
	ipam_reply_free(&rep);
	dump_take(&h, &before);
	assert_int_equal(h_release_handle(&h, "h2", NULL), IPAM_OK);
	dump_take(&h, &after);
	save(&h, &clean);

	/* 1. Stale records: every record that the release changed (not deleted) gets its old value
	 * back. The block says h2 holds x again, while the handle record of h2 is gone. */
	for (unsigned i = 0; i < after.n; i++) {
		struct kv_kv *old = dump_find(&before, &after.kvs[i]);
		if (old != NULL && (old->value_len != after.kvs[i].value_len ||
		                    memcmp(old->value, after.kvs[i].value, old->value_len) != 0)) {
			inject_add(&in, 'p', old->key, old->key_len, old->value, old->value_len);
		}
	}
	assert_true(in.len > 0);
	inject_run(&h, &in);
	expect_problems(&h, "the release's block written back with its old value");
	restore(&h, &clean);

	/* 2. The handle record of a live handle deleted. */
	kl = ipam_key_handle(key, "h1");
	inject_add(&in, 'd', key, kl, NULL, 0);
	inject_run(&h, &in);
	expect_problems(&h, "handle record deleted");
	restore(&h, &clean);

	/* 3. The handle record of a gone handle brought back. */
	{
		struct kv_kv probe = {.key = key, .key_len = ipam_key_handle(key, "h2")};
		struct kv_kv *old = dump_find(&before, &probe);
		assert_non_null(old);
		inject_add(&in, 'p', old->key, old->key_len, old->value, old->value_len);
		inject_run(&h, &in);
		expect_problems(&h, "handle record of a released handle brought back");
		restore(&h, &clean);
	}

	/* 4. An affinity index entry for a block that is not the host's. */
	{
		struct ipam_block_info bi;
		assert_true(h_block_of(&h, &x, &bi));
		kl = ipam_key_aff(key, "n7", &bi.cidr.addr);
		inject_add(&in, 'p', key, kl, "", 0);
		inject_run(&h, &in);
		expect_problems(&h, "affinity index for another host");
		restore(&h, &clean);

		/* 5. The host's affinity index entry deleted. */
		kl = ipam_key_aff(key, "n1", &bi.cidr.addr);
		inject_add(&in, 'd', key, kl, NULL, 0);
		inject_run(&h, &in);
		expect_problems(&h, "affinity index entry deleted");
		restore(&h, &clean);

		/* 6. The block record deleted. */
		kl = ipam_key_block(key, &bi.cidr.addr);
		inject_add(&in, 'd', key, kl, NULL, 0);
		inject_run(&h, &in);
		expect_problems(&h, "block record deleted");
		restore(&h, &clean);

		/* 7. The pool record deleted: its blocks are outside every pool. */
		kl = ipam_key_pool(key, &bi.pool.addr);
		inject_add(&in, 'd', key, kl, NULL, 0);
		inject_run(&h, &in);
		expect_problems(&h, "pool record deleted");
		restore(&h, &clean);
	}

	/* 8. A record that does not decode. */
	{
		struct kv_kv probe = {.key = key, .key_len = ipam_key_handle(key, "h1")};
		struct kv_kv *cur = dump_find(&after, &probe);
		assert_non_null(cur);
		assert_true(cur->value_len > 1);
		inject_add(&in, 'p', cur->key, cur->key_len, cur->value, cur->value_len - 1);
		inject_run(&h, &in);
		expect_problems(&h, "truncated handle record");
		/* A command that needs the record is refused, changing nothing; it must not stop
		 * the replica (kv.h: only a host failure may), or every member would stop on this
		 * entry at each replay of the log. Commands that do not need it go on. */
		uint64_t hash0 = h_hash(&h);
		h.check_each = false;
		assert_int_equal(h_release_handle(&h, "h1", NULL), IPAM_E_CORRUPT);
		assert_int_equal(h_assign(&h, "n1", "h1", 1, 0, NULL, NULL), IPAM_E_CORRUPT);
		assert_true(h_hash(&h) == hash0);
		assert_int_equal(h_assign(&h, "n1", "h3", 1, 0, NULL, NULL), IPAM_OK);
		h.check_each = true;
		restore(&h, &clean);

		/* An address record that does not decode: releasing the address is refused too
		 * (it freed the address and left the record, and the handle could never be released
		 * again). */
		{
			struct ipam_assigned *ha = NULL;
			unsigned nh = 0;
			struct kv_tx *tx;
			char as[IPAM_ADDR_STRLEN];
			assert_int_equal(kv_view_begin(h.kv, &tx), KV_OK);
			assert_int_equal(ipam_handle_addrs(tx, "h1", &ha, &nh), 0);
			kv_view_end(tx);
			assert_true(nh > 0);
			struct kv_kv iprobe = {.key = key,
			                       .key_len = ipam_key_ip(key, &ha[0].addr)};
			ipam_addr_format(&ha[0].addr, as);
			free(ha);
			cur = dump_find(&after, &iprobe);
			assert_non_null(cur);
			inject_add(&in, 'p', cur->key, cur->key_len, cur->value,
			           cur->value_len - 1);
			inject_run(&h, &in);
			expect_problems(&h, "truncated address record");
			hash0 = h_hash(&h);
			h.check_each = false;
			assert_int_equal(h_release_ip(&h, as, 0, NULL), IPAM_E_CORRUPT);
			assert_int_equal(h_release_handle(&h, "h1", NULL), IPAM_E_CORRUPT);
			assert_true(h_hash(&h) == hash0);
			h.check_each = true;
			restore(&h, &clean);
		}

		/* A pool record that does not decode: every request reads the pools. */
		struct ipam_block_info bi;
		assert_true(h_block_of(&h, &x, &bi));
		struct kv_kv pprobe = {.key = key, .key_len = ipam_key_pool(key, &bi.pool.addr)};
		cur = dump_find(&after, &pprobe);
		assert_non_null(cur);
		inject_add(&in, 'p', cur->key, cur->key_len, "x", 1);
		inject_run(&h, &in);
		expect_problems(&h, "pool record that does not decode");
		hash0 = h_hash(&h);
		h.check_each = false;
		struct ipam_reply rep2;
		assert_int_equal(h_assign(&h, "n2", "h4", 1, 0, NULL, &rep2), IPAM_E_CORRUPT);
		assert_non_null(strstr(rep2.message, "tabby ipam check"));
		assert_string_equal(ipam_error_code(rep2.error), "internal");
		ipam_reply_free(&rep2);
		assert_true(h_hash(&h) == hash0);
		h.check_each = true;
		restore(&h, &clean);
	}

	/* 9. A block record of another size than its pool's blocks, under the right key: callers
	 * index it by their pool's block size, so it is refused as corrupt, never read out of
	 * bounds (a /28 where the pool makes /26 blocks). */
	{
		struct ipam_block_info bi;
		struct ipam_cidr small;
		struct ipam_buf b = {0};
		assert_true(h_block_of(&h, &x, &bi));
		small = bi.cidr;
		small.prefix = bi.cidr.prefix + 2;
		struct ipam_block *blk = ipam_block_new(&small, "n1");
		assert_non_null(blk);
		ipam_block_encode(&b, blk);
		ipam_block_free(blk);
		assert_false(b.oom);
		kl = ipam_key_block(key, &bi.cidr.addr);
		inject_add(&in, 'p', key, kl, b.data, b.len);
		free(b.data);
		inject_run(&h, &in);
		expect_problems(&h, "a block of another size than its pool's");
		uint64_t hash0 = h_hash(&h);
		char far[IPAM_ADDR_STRLEN];
		struct ipam_addr a = bi.cidr.addr;
		a.b[3] += 50; /* inside the /26, beyond the /28 */
		ipam_addr_format(&a, far);
		h.check_each = false;
		assert_int_equal(h_assign_ip(&h, "n1", "h9", far, NULL), IPAM_E_CORRUPT);
		assert_int_equal(h_release_ip(&h, far, 0, NULL), IPAM_E_CORRUPT);
		assert_true(h_hash(&h) == hash0);
		h.check_each = true;
		restore(&h, &clean);
	}

	/* 10. The per-address record of an assigned address deleted, and that of the released
	 * address x brought back. */
	{
		struct ipam_assigned *ha = NULL;
		unsigned nh = 0;
		struct kv_tx *tx;
		struct kv_kv probe = {.key = key, .key_len = ipam_key_ip(key, &x)};
		struct kv_kv *old = dump_find(&before, &probe);

		assert_int_equal(kv_view_begin(h.kv, &tx), KV_OK);
		assert_int_equal(ipam_handle_addrs(tx, "h1", &ha, &nh), 0);
		kv_view_end(tx);
		assert_int_equal(nh, 2);
		kl = ipam_key_ip(key, &ha[0].addr);
		free(ha);
		inject_add(&in, 'd', key, kl, NULL, 0);
		inject_run(&h, &in);
		expect_problems(&h, "ip record of an assigned address deleted");
		restore(&h, &clean);

		assert_non_null(old);
		inject_add(&in, 'p', old->key, old->key_len, old->value, old->value_len);
		inject_run(&h, &in);
		expect_problems(&h, "ip record of a released address brought back");
		restore(&h, &clean);
	}

	/* 11. A block outside every pool: the block record of another store copied in. */
	{
		struct h other;
		struct dump od;
		h_open(&other, NULL, 0);
		assert_int_equal(h_put_pool(&other, "10.9.0.0/24", 0), IPAM_OK);
		assert_int_equal(h_assign(&other, "n1", "z", 1, 0, NULL, NULL), IPAM_OK);
		assert_int_equal(h_remove_pool(&other, "10.9.0.0/24", true, NULL), IPAM_OK);
		dump_take(&other, &od);
		for (unsigned i = 0; i < od.n; i++) {
			if (od.kvs[i].key_len > 11 &&
			    memcmp(od.kvs[i].key, "ipam/block/", 11) == 0) {
				inject_add(&in, 'p', od.kvs[i].key, od.kvs[i].key_len,
				           od.kvs[i].value, od.kvs[i].value_len);
			}
		}
		assert_true(in.len > 0);
		inject_run(&h, &in);
		expect_problems(&h, "a block outside every pool");
		restore(&h, &clean);
		kv_kvs_free(od.kvs, od.n);
		h_close(&other);
	}

	kv_kvs_free(before.kvs, before.n);
	kv_kvs_free(after.kvs, after.n);
	free(clean.buf);
	h_check_clean(&h);
	h_close(&h);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_addr_parse_format),
	    T(test_cidr_parse_format),
	    T(test_cidr_contains),
	    T(test_range_cidrs),
	    T(test_text_repair),
	    T(test_encap),
	    T(test_pool_validate),
	    T(test_default_pool),
	    T(test_pools_put_list_update),
	    T(test_pool_block_size_update),
	    T(test_init_defaults),
	    T(test_config),
	    T(test_blocks_v4),
	    T(test_blocks_v6),
	    T(test_exhaustion),
	    T(test_affinity_order),
	    T(test_hosts_get_own_blocks),
	    T(test_borrowing),
	    T(test_explicit),
	    T(test_fifo_reuse),
	    T(test_release),
	    T(test_generations),
	    T(test_dedup),
	    T(test_pool_remove),
	    T(test_remove_node),
	    T(test_attrs_and_queries),
	    T(test_foreach_order),
	    T(test_change_decode),
	    T(test_invalid_requests),
	    T(test_determinism),
	    T(test_check_detects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
