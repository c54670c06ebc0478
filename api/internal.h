/*
 * What client.c and address.c share. address.c holds the resolution of "HOST:PORT" (getaddrinfo),
 * apart from the client proper, so that a program that only talks over a unix socket
 * (api_client_open_unix(), the CNI plugin) links no resolver: a statically linked glibc resolver
 * would load the host's NSS modules at run time.
 */
#ifndef TABBY_API_INTERNAL_H
#define TABBY_API_INTERNAL_H

#include <stddef.h>
#include <sys/socket.h>

#include "api/api.h"

/* One TCP address to try, in the order the resolver gave them. */
struct api_endpoint {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Set *errmsg (when not NULL) to a malloc()ed message and return code. */
int api_set_error(char **errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Create a client for the unix socket path, or (path NULL) for the n_eps TCP addresses eps
 * (copied). address names the agent in messages; host is the Host header. Returns API_OK and
 * sets *out, or API_EINVAL (bad path), API_ECONNECT (no address), API_ENOMEM. */
int api_client_new(const char *address, const char *host, const char *path,
                   const struct api_endpoint *eps, size_t n_eps, int timeout_ms,
                   struct api_client **out, char **errmsg);

#endif
