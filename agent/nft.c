/*
 * The nftables applier (agent/nft.h): libnftables JSON in, one transaction, errors as text.
 *
 * libnftables 1.0.6 has no input flags: it reads a buffer as JSON only when the context's output
 * is JSON (later versions also have NFT_CTX_INPUT_JSON, which that flag still implies), so the
 * context is put in JSON output mode. Output and errors are buffered in memory; each run drains
 * both buffers so that one run's text never shows up as the next run's error.
 */
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/nft.h"

struct agent_nft {
	struct nft_ctx *ctx;
	struct agent_nftnl *fast; /* NULL: off */
	bool use_fast;
	unsigned long n_fast, n_slow;
};

int agent_nft_new(struct agent_nft **out)
{
	struct agent_nft *n = calloc(1, sizeof(*n));

	*out = NULL;
	if (!n)
		return -ENOMEM;
	n->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!n->ctx)
		goto err;
	nft_ctx_output_set_flags(n->ctx, NFT_CTX_OUTPUT_JSON);
	if (nft_ctx_buffer_output(n->ctx) != 0 || nft_ctx_buffer_error(n->ctx) != 0)
		goto err;
	/* Without its socket the fast path is simply off: libnftables does everything. */
	if (agent_nftnl_new(&n->fast) != 0)
		n->fast = NULL;
	n->use_fast = true;
	*out = n;
	return 0;
err:
	agent_nft_free(n);
	return -ENOMEM;
}

void agent_nft_free(struct agent_nft *n)
{
	if (!n)
		return;
	if (n->ctx)
		nft_ctx_free(n->ctx);
	agent_nftnl_free(n->fast);
	free(n);
}

void agent_nft_use_fast_path(struct agent_nft *n, bool on)
{
	n->use_fast = on;
}

void agent_nft_counts(const struct agent_nft *n, unsigned long *fast, unsigned long *slow)
{
	*fast = n->n_fast;
	*slow = n->n_slow;
}

/* libnftables's error text as one line: each run of newlines becomes "; ". */
static void error_line(const char *text, char *err, size_t errlen)
{
	size_t o = 0;
	bool sep = false;

	if (!errlen)
		return;
	for (const char *p = text ? text : ""; *p && o + 1 < errlen; p++) {
		if (*p == '\n') {
			sep = o > 0;
			continue;
		}
		if (sep) {
			if (o + 3 >= errlen)
				break;
			err[o++] = ';';
			err[o++] = ' ';
			sep = false;
		}
		err[o++] = *p;
	}
	err[o] = '\0';
	if (!o)
		snprintf(err, errlen, "libnftables refused the commands without saying why");
}

int agent_nft_apply(struct agent_nft *n, const json_t *cmds, char *err, size_t errlen)
{
	char *text;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (!json_is_object(cmds)) {
		snprintf(err, errlen,
		         "nftables commands must be a JSON object {\"nftables\": [...]}");
		return -EINVAL;
	}
	if (n->fast != NULL && n->use_fast) {
		rc = agent_nftnl_apply(n->fast, cmds, err, errlen);
		if (rc != -ENOTSUP) {
			n->n_fast++;
			return rc;
		}
	}
	n->n_slow++;
	text = json_dumps(cmds, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	rc = nft_run_cmd_from_buffer(n->ctx, text);
	/* Whatever libnftables ran may have replaced sets the fast path remembers. */
	agent_nftnl_forget(n->fast);
	free(text);
	/* Reading a buffer rewinds it: read both each time, keep the error text on failure. */
	(void)nft_ctx_get_output_buffer(n->ctx);
	const char *etext = nft_ctx_get_error_buffer(n->ctx);
	if (rc != 0) {
		error_line(etext, err, errlen);
		return -EIO;
	}
	return 0;
}

int agent_nft_delete_table(struct agent_nft *n, const char *table, char *err, size_t errlen)
{
	/* "add" of an existing table is a no-op, so adding and then deleting in one transaction
	 * removes the table whether or not it was there, without reading error texts. */
	json_t *cmds;
	int rc;

	if (!table || !*table) {
		snprintf(err, errlen, "no table name");
		return -EINVAL;
	}
	cmds = json_pack("{s:[{s:{s:{s:s,s:s}}},{s:{s:{s:s,s:s}}}]}", "nftables", "add", "table",
	                 "family", "inet", "name", table, "delete", "table", "family", "inet",
	                 "name", table);
	if (!cmds)
		return -ENOMEM;
	rc = agent_nft_apply(n, cmds, err, errlen);
	json_decref(cmds);
	return rc;
}
