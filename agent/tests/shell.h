/*
 * Shell helpers for the kernel tests. They build and inspect test topologies with ip(8),
 * sysctl(8), nft(8) and the like, run as a shell would run them: the code under test does its own
 * netlink and nftables work, and the tests check it with the tools an operator would use.
 */
#ifndef TABBY_AGENT_TESTS_SHELL_H
#define TABBY_AGENT_TESTS_SHELL_H

/* Run the formatted command with sh -c. Returns its exit status (-1 when it did not exit
 * normally); prints a failing command to stderr. A command too long to format fails the test. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The standard output of the formatted command, malloc()ed and NUL-terminated; test_out_all()
 * adds its standard error. Fails the test when the command cannot be started. */
char *test_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *test_out_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
