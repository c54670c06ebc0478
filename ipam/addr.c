/*
 * Addresses, CIDRs, pool validation and the key layout (internal.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Addresses                                                                                   */

bool ipam_addr_parse(const char *s, struct ipam_addr *out)
{
	memset(out, 0, sizeof *out);
	if (s == NULL) {
		return false;
	}
	if (strchr(s, ':') == NULL) {
		if (inet_pton(AF_INET, s, out->b) != 1) {
			return false;
		}
		out->family = 4;
		return true;
	}
	if (inet_pton(AF_INET6, s, out->b) != 1) {
		return false;
	}
	out->family = 6;
	return true;
}

char *ipam_addr_format(const struct ipam_addr *a, char *buf)
{
	if (a->family == 4) {
		/* inet_ntop formats IPv4 through snprintf, which was most of the cost of rendering
		 * a set of thousands of addresses */
		char *p = buf;
		for (unsigned i = 0; i < 4; i++) {
			unsigned v = a->b[i];
			if (v >= 100)
				*p++ = (char)('0' + v / 100);
			if (v >= 10)
				*p++ = (char)('0' + v / 10 % 10);
			*p++ = (char)('0' + v % 10);
			*p++ = i < 3 ? '.' : '\0';
		}
		return buf;
	}
	if (inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, buf, IPAM_ADDR_STRLEN) == NULL) {
		snprintf(buf, IPAM_ADDR_STRLEN, "?");
	}
	return buf;
}

u128 ipam_addr_value(const struct ipam_addr *a)
{
	u128 v = 0;
	unsigned n = a->family == 4 ? 4 : 16;
	for (unsigned i = 0; i < n; i++) {
		v = (v << 8) | a->b[i];
	}
	return v;
}

void ipam_addr_from_value(uint8_t family, u128 v, struct ipam_addr *out)
{
	unsigned n = family == 4 ? 4 : 16;
	memset(out, 0, sizeof *out);
	out->family = family;
	for (unsigned i = n; i-- > 0;) {
		out->b[i] = (uint8_t)v;
		v >>= 8;
	}
}

void ipam_addr_mask(const struct ipam_addr *a, uint8_t prefix, struct ipam_addr *out)
{
	unsigned bits = ipam_bits(a->family);
	u128 v = ipam_addr_value(a);
	if (prefix < bits) {
		u128 host = bits - prefix >= 128 ? ~(u128)0 : ((u128)1 << (bits - prefix)) - 1;
		v &= ~host;
	}
	ipam_addr_from_value(a->family, v, out);
}

bool ipam_addr_equal(const struct ipam_addr *a, const struct ipam_addr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, 16) == 0;
}

int ipam_addr_cmp(const struct ipam_addr *a, const struct ipam_addr *b)
{
	if (a->family != b->family) {
		return a->family < b->family ? -1 : 1;
	}
	return memcmp(a->b, b->b, 16);
}

void ipam_u128_format(u128 v, char *buf)
{
	char tmp[48];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + (unsigned)(v % 10));
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++) {
		buf[i] = tmp[n - 1 - i];
	}
	buf[n] = '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* CIDRs                                                                                       */

bool ipam_cidr_parse(const char *s, struct ipam_cidr *out, char *err, size_t errlen)
{
	char addr[IPAM_ADDR_STRLEN + 1], net[IPAM_CIDR_STRLEN];
	const char *slash;
	struct ipam_addr a, masked;
	char *end;
	long prefix;

	memset(out, 0, sizeof *out);
	if (s == NULL || (slash = strchr(s, '/')) == NULL) {
		snprintf(err, errlen, "\"%s\" is not a CIDR: expected ADDRESS/PREFIX",
		         s != NULL ? s : "");
		return false;
	}
	if ((size_t)(slash - s) > IPAM_ADDR_STRLEN) {
		snprintf(err, errlen, "\"%s\" is not a CIDR: the address is too long", s);
		return false;
	}
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	if (!ipam_addr_parse(addr, &a)) {
		snprintf(err, errlen, "\"%s\" is not a CIDR: \"%s\" is not an IP address", s, addr);
		return false;
	}
	errno = 0;
	prefix = strtol(slash + 1, &end, 10);
	if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0 || prefix < 0 ||
	    prefix > (long)ipam_bits(a.family)) {
		snprintf(err, errlen, "\"%s\" is not a CIDR: the prefix length must be 0 to %u", s,
		         ipam_bits(a.family));
		return false;
	}
	ipam_addr_mask(&a, (uint8_t)prefix, &masked);
	if (!ipam_addr_equal(&a, &masked)) {
		out->addr = masked;
		out->prefix = (uint8_t)prefix;
		ipam_cidr_format(out, net);
		snprintf(err, errlen,
		         "%s is not a canonical CIDR: host bits are set (the network is %s)", s,
		         net);
		memset(out, 0, sizeof *out);
		return false;
	}
	out->addr = a;
	out->prefix = (uint8_t)prefix;
	return true;
}

char *ipam_cidr_format(const struct ipam_cidr *c, char *buf)
{
	char a[IPAM_ADDR_STRLEN];
	snprintf(buf, IPAM_CIDR_STRLEN, "%s/%u", ipam_addr_format(&c->addr, a), c->prefix);
	return buf;
}

bool ipam_cidr_contains(const struct ipam_cidr *c, const struct ipam_addr *a)
{
	struct ipam_addr m;
	if (a->family != c->addr.family) {
		return false;
	}
	ipam_addr_mask(a, c->prefix, &m);
	return ipam_addr_equal(&m, &c->addr);
}

bool ipam_cidr_overlap(const struct ipam_cidr *a, const struct ipam_cidr *b)
{
	return a->addr.family == b->addr.family &&
	       (ipam_cidr_contains(a, &b->addr) || ipam_cidr_contains(b, &a->addr));
}

bool ipam_cidr_equal(const struct ipam_cidr *a, const struct ipam_cidr *b)
{
	return a->prefix == b->prefix && ipam_addr_equal(&a->addr, &b->addr);
}

/* The last offset of a block of 2^k addresses: 2^k - 1, all ones for k = 128. */
static u128 span(unsigned k)
{
	return k >= 128 ? ~(u128)0 : ((u128)1 << k) - 1;
}

unsigned ipam_range_cidrs(const struct ipam_addr *first, const struct ipam_addr *last,
                          struct ipam_cidr *out, unsigned max)
{
	unsigned bits, n = 0;
	u128 lo, hi;

	if (first->family != last->family || (first->family != 4 && first->family != 6)) {
		return 0;
	}
	bits = ipam_bits(first->family);
	lo = ipam_addr_value(first);
	hi = ipam_addr_value(last);
	if (lo > hi) {
		return 0;
	}
	for (;;) {
		/* The largest block that starts at lo (aligned there) and ends by hi. */
		unsigned k = 0;
		while (k < bits && ((lo >> k) & 1) == 0) {
			k++;
		}
		while (span(k) > hi - lo) {
			k--;
		}
		if (n < max) {
			ipam_addr_from_value(first->family, lo, &out[n].addr);
			out[n].prefix = (uint8_t)(bits - k);
		}
		n++;
		if (hi - lo == span(k)) {
			return n;
		}
		lo += span(k) + 1;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Pools                                                                                       */

bool ipam_encap_parse(const char *s, uint8_t *out)
{
	static const struct {
		const char *name;
		uint8_t v;
	} names[] = {
	    {"never", IPAM_ENCAP_NEVER},
	    {"Never", IPAM_ENCAP_NEVER},
	    {"always", IPAM_ENCAP_ALWAYS},
	    {"Always", IPAM_ENCAP_ALWAYS},
	    {"cross-subnet", IPAM_ENCAP_CROSS_SUBNET},
	    {"CrossSubnet", IPAM_ENCAP_CROSS_SUBNET},
	};
	for (size_t i = 0; s != NULL && i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].v;
			return true;
		}
	}
	return false;
}

const char *ipam_encap_name(uint8_t encap)
{
	switch (encap) {
	case IPAM_ENCAP_NEVER:
		return "never";
	case IPAM_ENCAP_ALWAYS:
		return "always";
	case IPAM_ENCAP_CROSS_SUBNET:
		return "cross-subnet";
	default:
		return "?";
	}
}

void ipam_default_pool(int family, struct ipam_pool *out)
{
	char err[128];
	memset(out, 0, sizeof *out);
	if (family == 4) {
		(void)ipam_cidr_parse("192.168.0.0/16", &out->cidr, err, sizeof err);
		out->block_size = IPAM_DEFAULT_BLOCK_V4;
	} else {
		(void)ipam_cidr_parse("fd80:24e2:f998:72d6::/64", &out->cidr, err, sizeof err);
		out->block_size = IPAM_DEFAULT_BLOCK_V6;
	}
}

bool ipam_pool_validate(const struct ipam_pool *p, char *err, size_t errlen)
{
	/* The state machine validates every pool it reads, at every command: no string work
	 * unless there is an error to report. */
	static const struct ipam_cidr link_local4 = {{4, {169, 254}}, 16};
	static const struct ipam_cidr link_local6 = {{6, {0xfe, 0x80}}, 10};
	char cidr[IPAM_CIDR_STRLEN];
	const struct ipam_cidr *c = &p->cidr;
	struct ipam_addr masked;
	unsigned bits;
	uint8_t bs, lo, hi;

	if (c->addr.family != 4 && c->addr.family != 6) {
		snprintf(err, errlen, "pool has no valid CIDR");
		return false;
	}
	bits = ipam_bits(c->addr.family);
	ipam_addr_mask(&c->addr, c->prefix, &masked);
	if (c->prefix > bits || !ipam_addr_equal(&masked, &c->addr)) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: not a canonical CIDR: host bits are set", cidr);
		return false;
	}
	lo = c->addr.family == 4 ? 20 : 116;
	hi = (uint8_t)bits;
	/* Size 0 means "the current size of an existing pool, else the default": only the state
	 * machine knows which, so the checks that depend on it wait for it (POOLS_PUT). */
	bs = p->block_size != 0 ? p->block_size : hi;
	if (p->block_size != 0 && (bs < lo || bs > hi)) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: block size %u is out of range (IPv%u: %u to %u)",
		         cidr, bs, c->addr.family, lo, hi);
		return false;
	}
	if (c->prefix > bs) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen,
		         "pool %s is too small: it must hold at least one /%u block (a prefix "
		         "length of %u or lower)",
		         cidr, bs, bs);
		return false;
	}
	if (ipam_cidr_overlap(c, &link_local4) || ipam_cidr_overlap(c, &link_local6)) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s overlaps the link-local range %s", cidr,
		         c->addr.family == 4 ? "169.254.0.0/16" : "fe80::/10");
		return false;
	}
	if (p->ipip > IPAM_ENCAP_CROSS_SUBNET || p->vxlan > IPAM_ENCAP_CROSS_SUBNET) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: unknown encapsulation mode", cidr);
		return false;
	}
	if (c->addr.family == 6 && p->ipip != IPAM_ENCAP_NEVER) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: IP in IP is not supported for IPv6 pools", cidr);
		return false;
	}
	if (p->ipip != IPAM_ENCAP_NEVER && p->vxlan != IPAM_ENCAP_NEVER) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: IP in IP and VXLAN cannot both be enabled", cidr);
		return false;
	}
	if (memchr(p->node_selector, '\0', sizeof p->node_selector) == NULL) {
		ipam_cidr_format(c, cidr);
		snprintf(err, errlen, "pool %s: node selector too long", cidr);
		return false;
	}
	return true;
}

const char *ipam_error_code(uint8_t error)
{
	switch (error) {
	case IPAM_OK:
		return "ok";
	case IPAM_E_INVALID:
		return "invalid";
	case IPAM_E_NOTFOUND:
		return "not_found";
	case IPAM_E_INUSE:
		return "in_use";
	case IPAM_E_EXHAUSTED:
		return "exhausted";
	case IPAM_E_CONFLICT:
		return "conflict";
	default:
		return "internal";
	}
}

/* The length of the well-formed UTF-8 character at s (1-4) within its first avail bytes, or 0 if
 * none starts there. The second byte's range rules out overlong forms, surrogates and code points
 * past U+10FFFF. */
static size_t utf8_char_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;
	if (c < 0x80) {
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n > avail || s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf) {
			return 0; /* also stops at the terminating NUL */
		}
	}
	return n;
}

bool ipam_text_ok(const char *s, size_t len, size_t min, size_t max)
{
	if (s == NULL || len < min || len > max || strnlen(s, len) != len) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			return false;
		}
		/* U+0080..U+009F, the C1 controls, are 0xc2 0x80..0x9f in UTF-8. */
		if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
		    (unsigned char)s[i + 1] <= 0x9f) {
			return false;
		}
		/* Whole characters only: what IPAM stores travels in JSON. */
		size_t n = utf8_char_len((const unsigned char *)s + i, len - i);
		if (n == 0) {
			return false;
		}
		i += n - 1;
	}
	return true;
}

void ipam_text_repair(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p != '\0') {
		size_t n = utf8_char_len(p, SIZE_MAX); /* NUL-terminated: stops at the NUL */
		if (n == 0) {
			*p++ = '?';
		} else {
			p += n;
		}
	}
}

bool ipam_name_ok(const char *s, size_t max, bool allow_empty)
{
	if (s == NULL) {
		return allow_empty;
	}
	return ipam_text_ok(s, strnlen(s, max + 1), allow_empty ? 0 : 1, max);
}

/* ------------------------------------------------------------------------------------------ */
/* Keys                                                                                        */

static size_t put_str(uint8_t *k, size_t off, const char *s)
{
	size_t n = strlen(s);
	memcpy(k + off, s, n);
	return off + n;
}

static size_t put_addr(uint8_t *k, size_t off, const struct ipam_addr *a)
{
	k[off] = a->family;
	memcpy(k + off + 1, a->b, 16);
	return off + 17;
}

size_t ipam_key_pool(uint8_t *k, const struct ipam_addr *a)
{
	return put_addr(k, put_str(k, 0, "ipam/pool/"), a);
}

size_t ipam_key_block(uint8_t *k, const struct ipam_addr *a)
{
	return put_addr(k, put_str(k, 0, "ipam/block/"), a);
}

static size_t host_key(uint8_t *k, const char *base, const char *host, const struct ipam_addr *a)
{
	size_t off = put_str(k, put_str(k, 0, base), host);
	k[off++] = '\0';
	return put_addr(k, off, a);
}

size_t ipam_key_aff(uint8_t *k, const char *host, const struct ipam_addr *a)
{
	return host_key(k, "ipam/aff/", host, a);
}

size_t ipam_key_open(uint8_t *k, const char *host, const struct ipam_addr *a)
{
	return host_key(k, "ipam/open/", host, a);
}

size_t ipam_key_handle(uint8_t *k, const char *handle)
{
	return put_str(k, put_str(k, 0, "ipam/handle/"), handle);
}

size_t ipam_key_ip(uint8_t *k, const struct ipam_addr *a)
{
	return put_addr(k, put_str(k, 0, "ipam/ip/"), a);
}

size_t ipam_prefix_ips(uint8_t *k)
{
	return put_str(k, 0, "ipam/ip/");
}

size_t ipam_prefix_pools(uint8_t *k)
{
	return put_str(k, 0, "ipam/pool/");
}

size_t ipam_prefix_blocks(uint8_t *k, uint8_t fam)
{
	size_t off = put_str(k, 0, "ipam/block/");
	if (fam != 0) {
		k[off++] = fam;
	}
	return off;
}

static size_t host_prefix(uint8_t *k, const char *base, const char *host, uint8_t fam)
{
	size_t off = put_str(k, 0, base);
	if (host == NULL) {
		return off;
	}
	off = put_str(k, off, host);
	k[off++] = '\0';
	if (fam != 0) {
		k[off++] = fam;
	}
	return off;
}

size_t ipam_prefix_aff(uint8_t *k, const char *host, uint8_t fam)
{
	return host_prefix(k, "ipam/aff/", host, fam);
}

size_t ipam_prefix_open(uint8_t *k, const char *host, uint8_t fam)
{
	return host_prefix(k, "ipam/open/", host, fam);
}

size_t ipam_prefix_handles(uint8_t *k)
{
	return put_str(k, 0, "ipam/handle/");
}

bool ipam_key_tail_addr(const uint8_t *k, size_t len, struct ipam_addr *out)
{
	if (len < 17) {
		return false;
	}
	memset(out, 0, sizeof *out);
	out->family = k[len - 17];
	memcpy(out->b, k + len - 16, 16);
	if (out->family == 4) {
		for (int i = 4; i < 16; i++) {
			if (out->b[i] != 0) {
				return false;
			}
		}
		return true;
	}
	return out->family == 6;
}
