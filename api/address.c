/*
 * api_client_open(): an agent address as operators write it, a unix socket path or HOST:PORT,
 * resolved once when the client is made (see internal.h for why this is a file of its own).
 */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/internal.h"

/* Resolve host and port into a fresh array of endpoints (*eps, *n). */
static int resolve(const char *address, const char *host, const char *port,
                   struct api_endpoint **eps, size_t *n, char **errmsg)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	size_t k = 0;
	int rv = getaddrinfo(host, port, &hints, &res);

	if (rv != 0)
		return api_set_error(errmsg, rv == EAI_MEMORY ? API_ENOMEM : API_ECONNECT,
		                     "cannot resolve %s: %s", address, gai_strerror(rv));
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_addrlen <= sizeof((*eps)->sa))
			k++;
	*eps = calloc(k ? k : 1, sizeof(**eps));
	if (*eps == NULL) {
		freeaddrinfo(res);
		return api_set_error(errmsg, API_ENOMEM, "out of memory");
	}
	*n = 0;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof((*eps)->sa))
			continue;
		memcpy(&(*eps)[*n].sa, ai->ai_addr, ai->ai_addrlen);
		(*eps)[(*n)++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return API_OK;
}

int api_client_open(const char *address, int timeout_ms, struct api_client **out, char **errmsg)
{
	struct api_endpoint *eps = NULL;
	size_t n = 0;
	char *host = NULL;
	const char *port;
	int rv;

	if (address == NULL || address[0] == '\0')
		return api_set_error(errmsg, API_EINVAL, "empty agent address");
	/* "unix:PATH", or anything with a slash: a socket path. */
	const char *path = strncmp(address, "unix:", 5) == 0 ? address + 5
	                   : strchr(address, '/') != NULL    ? address
	                                                     : NULL;
	if (path != NULL)
		return api_client_new(address, "localhost", path, NULL, 0, timeout_ms, out, errmsg);

	/* HOST:PORT, with an IPv6 literal in brackets so that its colons are not the separator. */
	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (end == NULL || end[1] != ':')
			return api_set_error(errmsg, API_EINVAL,
			                     "bad address '%s' (want [IPv6]:PORT)", address);
		host = strndup(address + 1, (size_t)(end - address - 1));
		port = end + 2;
	} else {
		const char *colon = strchr(address, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return api_set_error(
			    errmsg, API_EINVAL,
			    "bad address '%s' (want IP:PORT, [IPv6]:PORT or a socket path)",
			    address);
		host = strndup(address, (size_t)(colon - address));
		port = colon + 1;
	}
	if (host == NULL)
		return api_set_error(errmsg, API_ENOMEM, "out of memory");
	if (host[0] == '\0' || port[0] == '\0') {
		rv = api_set_error(errmsg, API_EINVAL, "bad address '%s' (want IP:PORT)", address);
		goto out;
	}
	if ((rv = resolve(address, host, port, &eps, &n, errmsg)) != API_OK)
		goto out;
	rv = api_client_new(address, address, NULL, eps, n, timeout_ms, out, errmsg);
out:
	free(eps);
	free(host);
	return rv;
}
