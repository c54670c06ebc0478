/*
 * libFuzzer target for the policy applier's fast path (agent/nftnl.c): arbitrary libnftables
 * JSON through agent_nftnl_apply(), against a real kernel in a private network namespace that
 * holds a small table (sets of each key type, a verdict map, two chains) for the commands to
 * name. Needs root (the namespace); the kernel's state is rebuilt every RESET_EVERY runs, so what
 * earlier inputs added cannot pile up.
 *
 * What must hold (a violation aborts): the answer is 0, -ENOTSUP (nothing was sent), -EIO or
 * -EINVAL (a rule position that names no rule) with a non-empty error text, or -ENOMEM; the
 * same for agent_nftnl_resolve(), which turns rule positions into handles for libnftables and
 * never answers -ENOTSUP; and neither touches memory it does not own (AddressSanitizer),
 * whatever the JSON.
 */
#include <errno.h>
#include <jansson.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/nft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define RESET_EVERY 2000

static struct agent_nftnl *fast;
static struct nft_ctx *nft;
static unsigned runs;

static const char table[] =
    "delete table inet t; add table inet t; "
    "add set inet t s4 { type ipv4_addr; }; add set inet t s6 { type ipv6_addr; }; "
    "add set inet t ifs { type ifname; }; add set inet t iv { type ipv4_addr; flags interval; }; "
    "add chain inet t c1; add chain inet t c2; "
    "add map inet t m { type ifname : verdict; }";

static void reset(void)
{
	/* the first delete fails (no table yet): create it first */
	(void)nft_run_cmd_from_buffer(nft, "add table inet t");
	if (nft_run_cmd_from_buffer(nft, table) != 0) {
		fprintf(stderr, "fuzz_nftnl: cannot build the table: %s\n",
		        nft_ctx_get_error_buffer(nft));
		abort();
	}
	agent_nftnl_forget(fast);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (unshare(CLONE_NEWNET) != 0) {
		perror("fuzz_nftnl: unshare(CLONE_NEWNET) (run as root)");
		abort();
	}
	nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (nft == NULL || nft_ctx_buffer_output(nft) != 0 || nft_ctx_buffer_error(nft) != 0 ||
	    agent_nftnl_new(&fast) != 0)
		abort();
	reset();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

	if (j == NULL)
		return 0;
	if (++runs % RESET_EVERY == 0)
		reset();
	json_t *resolved = NULL;
	memset(err, 0, sizeof(err));
	int rc = agent_nftnl_resolve(fast, j, &resolved, err, sizeof(err));
	json_decref(resolved);
	if (rc != 0 && rc != -ENOMEM && !((rc == -EIO || rc == -EINVAL) && err[0] != '\0')) {
		fprintf(stderr, "fuzz_nftnl: resolve answered %d, error text \"%s\"\n", rc, err);
		abort();
	}
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	memset(err, 0, sizeof(err));
	rc = agent_nftnl_apply(fast, j, err, sizeof(err));
	json_decref(j);
	if (rc != 0 && rc != -ENOTSUP && rc != -ENOMEM &&
	    !((rc == -EIO || rc == -EINVAL) && err[0] != '\0')) {
		fprintf(stderr, "fuzz_nftnl: answer %d, error text \"%s\"\n", rc, err);
		abort();
	}
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	return 0;
}
