/*
 * libFuzzer target for the CNI plugin (cni/cni.h): a whole CNI call, cni_parse() over arbitrary
 * configuration bytes and CNI_ARGS, then the formatting of an arbitrary agent answer for the call
 * that was accepted.
 *
 * Input: one flags byte, then CNI_ARGS, a NUL, the network configuration, a NUL, and the agent's
 * answer (JSON). Missing parts are empty. Flags: bit 0 IPAM mode, bits 1-2 the command (ADD, DEL,
 * CHECK, VERSION), bit 3 no CNI_NETNS, bits 5-7 pick the HTTP status of the answer.
 *
 * What must hold (any violation aborts, which libFuzzer reports as a crash): a refusal has a CNI
 * code and a message and can be printed as an error; an accepted call has a version the plugin
 * supports and a request that serializes; a well-formed answer always formats for an accepted ADD;
 * an arbitrary answer formats or is refused with 999; only a DEL may have nothing to do (and
 * then need not name its network); sanitized labels hold only [-_.a-zA-Z0-9],
 * do not start or end with '.' or '-', and sanitizing again changes nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni/cni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GOOD_ANSWER                                                                                \
	"{\"ips\": [\"10.1.0.7/32\", \"fd80::7/128\"], \"interface\": \"cali0123456789a\", "       \
	"\"mac\": \"0a:58:0a:01:00:07\", \"existed\": false}"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "violated: %s\n", what);
		abort();
	}
}

static bool known_code(int code)
{
	static const int codes[] = {CNI_ERR_VERSION, CNI_ERR_ENV,       CNI_ERR_DECODE,
	                            CNI_ERR_CONFIG,  CNI_ERR_TRY_AGAIN, CNI_ERR_ALLOC,
	                            CNI_ERR_WIRE,    CNI_ERR_CHECK,     CNI_ERR_INTERNAL};

	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		if (code == codes[i])
			return true;
	}
	return false;
}

static void check_error(const char *version, const struct cni_error *err)
{
	json_t *e;

	check(known_code(err->code), "an error has a CNI code");
	check(err->msg[0] != '\0', "an error has a message");
	e = cni_format_error(version, err);
	check(e != NULL, "an error formats");
	json_decref(e);
}

static void check_label(const char *text)
{
	char *s = cni_label_sanitize(text), *again;
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s);
	for (size_t i = 0; i < n; i++)
		check(strchr("-_.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
		             s[i]) != NULL,
		      "a sanitized label holds only valid characters");
	check(n == 0 || (s[0] != '.' && s[0] != '-' && s[n - 1] != '.' && s[n - 1] != '-'),
	      "a sanitized label is trimmed");
	again = cni_label_sanitize(s);
	check(again == NULL || strcmp(again, s) == 0, "sanitizing is idempotent");
	free(again);
	free(s);
}

/* Format answer for call: it works or is refused with 999. */
static void check_format(const struct cni_call *call, const json_t *answer, bool must_work)
{
	struct cni_error err;
	json_t *res = NULL;
	char *text;

	if (cni_format_result(call, answer, &res, &err) != 0) {
		check(!must_work, "a well-formed answer formats");
		check(err.code == CNI_ERR_INTERNAL && res == NULL, "a bad answer is error 999");
		return;
	}
	text = json_dumps(res, JSON_COMPACT);
	check(text != NULL, "a result serializes");
	check(json_object_get(res, "dns") != NULL, "a result has dns");
	free(text);
	json_decref(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const commands[] = {"ADD", "DEL", "CHECK", "VERSION"};
	static const int statuses[] = {200, 400, 404, 409, 500, 502, 503, 204};
	const char *args, *config, *answer_text;
	struct cni_env env = {0};
	struct cni_call call;
	struct cni_error err;
	json_t *answer, *good;
	size_t config_len;
	char *buf, *p;
	uint8_t flags;
	char *text;

	if (size == 0)
		return 0;
	flags = data[0];
	/* Own NUL-terminated copy, with two spare NULs so every part exists. */
	buf = calloc(size + 2, 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	/* buf[size - 1], buf[size] and buf[size + 1] are NUL: each search below finds one. */
	args = buf;
	p = memchr(buf, '\0', size + 2);
	config = p + 1;
	p = memchr(config, '\0', (size_t)(buf + size + 2 - config));
	config_len = (size_t)(p - config);
	answer_text = p + 1 < buf + size + 2 ? p + 1 : "";

	env.command = commands[(flags >> 1) & 3];
	env.containerid = "c1";
	env.ifname = "eth0";
	env.netns = flags & 8 ? NULL : "/var/run/netns/c1";
	env.args = args;

	if (cni_parse(flags & 1 ? CNI_MODE_IPAM : CNI_MODE_NET, &env, config, config_len, &call,
	              &err) != 0) {
		check(call.request == NULL && call.routes == NULL, "a refusal leaves nothing");
		check_error(call.version, &err);
	} else if (call.cmd != CNI_CMD_VERSION) {
		text = json_dumps(call.request, JSON_COMPACT);
		check(text != NULL, "a request serializes");
		free(text);
		/* A DEL of something no ADD can have made succeeds without asking the agent. */
		check(call.nothing_to_do[0] == '\0' || call.cmd == CNI_CMD_DEL,
		      "only a DEL can have nothing to do");
		check(call.nothing_to_do[0] != '\0' ||
		          json_is_string(json_object_get(call.request, "network")),
		      "a request names the network");
		if (call.cmd == CNI_CMD_ADD) {
			good = json_loads(GOOD_ANSWER, 0, NULL);
			if (good != NULL)
				check_format(&call, good, true);
			json_decref(good);
			answer = json_loads(answer_text, JSON_DECODE_ANY, NULL);
			check_format(&call, answer, false);
			cni_agent_error(call.cmd, statuses[flags >> 5], answer, &err);
			check_error(call.version, &err);
			json_decref(answer);
		}
	}
	cni_call_free(&call);
	check_label(config);
	free(buf);
	return 0;
}
