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
	unsigned long n_fast, n_split, n_slow;
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

unsigned long agent_nft_splits(const struct agent_nft *n)
{
	return n->n_split;
}

void agent_nft_counts(const struct agent_nft *n, unsigned long *fast, unsigned long *slow)
{
	*fast = n->n_fast;
	*slow = n->n_slow + n->n_split;
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

/* libnftables runs cmds as one transaction. */
static int slow(struct agent_nft *n, const json_t *cmds, char *err, size_t errlen)
{
	json_t *resolved = NULL;
	char *text;
	int rc;

	/* libnftables knows rules by handle, the compiler by position */
	if ((rc = agent_nftnl_resolve(n->fast, cmds, &resolved, err, errlen)) != 0)
		return rc;
	text = json_dumps(resolved != NULL ? resolved : cmds, JSON_COMPACT);
	json_decref(resolved);
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

/* "VERB WHAT" of one command, e.g. add set. */
static bool is_cmd(const json_t *cmd, const char *verb, const char *what)
{
	return json_object_get(json_object_get(cmd, verb), what) != NULL;
}

/*
 * A batch the fast path cannot take whole, split so that most of it still avoids libnftables:
 * its new sets (with their elements, often thousands) go first through the fast path, then
 * libnftables runs the rest, then the fast path deletes the sets no longer used. Each part is
 * one transaction; what the kernel's packets see changes only in the middle one, since a new set
 * is referred to by nothing before it and a deleted one by nothing after it. A failure after the
 * first part leaves at worst unused sets, which the caller's full reload after any failure
 * removes with the table. Only batches without table commands are split (a full load deletes
 * and rebuilds the table: it must stay one piece). Returns -ENOTSUP, having run nothing, when
 * splitting does not apply.
 */
static int split(struct agent_nft *n, const json_t *cmds, char *err, size_t errlen)
{
	const json_t *list = json_object_get(cmds, "nftables");
	json_t *first = json_array(), *middle = json_array(), *last = json_array();
	size_t i;
	json_t *cmd;
	int rc = -ENOMEM;

	if (first == NULL || middle == NULL || last == NULL)
		goto out;
	json_array_foreach (list, i, cmd) {
		json_t *to = is_cmd(cmd, "add", "set")      ? first
		             : is_cmd(cmd, "delete", "set") ? last
		                                            : middle;
		if (is_cmd(cmd, "add", "table") || is_cmd(cmd, "delete", "table") ||
		    is_cmd(cmd, "flush", "table")) {
			rc = -ENOTSUP;
			goto out;
		}
		if (json_array_append(to, cmd) != 0)
			goto out;
	}
	if (json_array_size(first) + json_array_size(last) == 0 || json_array_size(middle) == 0) {
		rc = -ENOTSUP;
		goto out;
	}
	json_t *part = json_pack("{s:O}", "nftables", first);
	if (part == NULL)
		goto out;
	rc = json_array_size(first) > 0 ? agent_nftnl_apply(n->fast, part, err, errlen) : 0;
	json_decref(part);
	if (rc != 0)
		goto out; /* -ENOTSUP: nothing ran, the caller runs it all through libnftables */
	if ((part = json_pack("{s:O}", "nftables", middle)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = slow(n, part, err, errlen);
	json_decref(part);
	if (rc != 0 || json_array_size(last) == 0)
		goto out;
	if ((part = json_pack("{s:O}", "nftables", last)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = agent_nftnl_apply(n->fast, part, err, errlen);
	if (rc == -ENOTSUP)
		rc = slow(n, part, err, errlen);
	json_decref(part);
out:
	json_decref(first);
	json_decref(middle);
	json_decref(last);
	return rc;
}

int agent_nft_apply(struct agent_nft *n, const json_t *cmds, char *err, size_t errlen)
{
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
		rc = split(n, cmds, err, errlen);
		if (rc != -ENOTSUP) {
			n->n_split++;
			return rc;
		}
	}
	n->n_slow++;
	return slow(n, cmds, err, errlen);
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

json_t *agent_nft_add_set(json_t *set, json_t *elems)
{
	if (set == NULL || elems == NULL) {
		goto err;
	}
	if (json_array_size(elems) > 0) {
		if (json_object_set_new(set, "elem", elems) != 0) {
			elems = NULL;
			goto err;
		}
	} else {
		json_decref(elems);
	}
	return json_pack("{s:{s:o}}", "add", "set", set);
err:
	json_decref(elems);
	json_decref(set);
	return NULL;
}
