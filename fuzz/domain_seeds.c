/*
 * domain_seeds DIR: writes the seed corpus of fuzz_domain (see the input format there) into DIR.
 * The IPAM payloads are binary, so they are made with IPAM's own encoder rather than by hand.
 * The starting state the seeds build on (fuzz_domain.c) has pools 10.1.0.0/16, 10.2.0.0/24 (nodes
 * with rack=a) and fd00:1::/112, node h1 labelled rack=a, profile db, policy fe and container c0's
 * eth0 on network net1, wired on h1 with handle net1.c0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam/ipam.h"

enum { IPAM = 0, RES = 1, CNI = 2, UNKNOWN = 3, SAME_BATCH = 4, RAW = 3 | 8 };

struct seed {
	unsigned char buf[8192];
	size_t len;
};

static void add(struct seed *s, unsigned sel, const void *payload, size_t len)
{
	if (s->len + 3 + len > sizeof s->buf) {
		fprintf(stderr, "domain_seeds: seed too long\n");
		exit(1);
	}
	s->buf[s->len++] = (unsigned char)sel;
	s->buf[s->len++] = (unsigned char)(len & 0xff);
	s->buf[s->len++] = (unsigned char)(len >> 8);
	memcpy(s->buf + s->len, payload, len);
	s->len += len;
}

static void text(struct seed *s, unsigned sel, const char *t)
{
	add(s, sel, t, strlen(t));
}

/* A raw record: "KEY\0VALUE" */
static void raw(struct seed *s, const char *key, const char *value)
{
	char buf[1024];
	size_t k = strlen(key), v = strlen(value);
	memcpy(buf, key, k + 1);
	memcpy(buf + k + 1, value, v);
	add(s, RAW, buf, k + 1 + v);
}

static void ipam(struct seed *s, unsigned sel, const struct ipam_request *req)
{
	uint8_t *buf;
	size_t len;
	if (ipam_encode_request(req, &buf, &len) != 0) {
		fprintf(stderr, "domain_seeds: cannot encode IPAM request type %u\n", req->type);
		exit(1);
	}
	add(s, sel, buf, len);
	free(buf);
}

static void save(const char *dir, const char *name, const struct seed *s)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static struct ipam_addr addr(const char *t)
{
	struct ipam_addr a;
	if (!ipam_addr_parse(t, &a)) {
		fprintf(stderr, "domain_seeds: bad address %s\n", t);
		exit(1);
	}
	return a;
}

static struct ipam_cidr cidr(const char *t)
{
	struct ipam_cidr c;
	char err[128];
	if (!ipam_cidr_parse(t, &c, err, sizeof err)) {
		fprintf(stderr, "domain_seeds: %s\n", err);
		exit(1);
	}
	return c;
}

#define ADD_C1                                                                                     \
	"{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c1\",\"ifname\":"    \
	"\"eth0\",\"netns\":\"/var/run/netns/c1\",\"labels\":{\"role\":\"db\"}}"
#define DEL_C0                                                                                     \
	"{\"op\":\"del\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c0\",\"ifname\":"    \
	"\"eth0\"}"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: domain_seeds DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	struct seed s;

	/* IPAM, each request type */
	struct ipam_pool pool = {.cidr = cidr("10.9.0.0/20"), .block_size = 28};
	memset(&s, 0, sizeof s);
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_POOLS_PUT, .pools = &pool, .n_pools = 1});
	struct ipam_cidr from = cidr("10.9.0.0/20");
	struct ipam_attr attrs[] = {{"namespace", "default"}, {"pod", "web-1"}};
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_ASSIGN,
	                            .cidrs = &from,
	                            .n_cidrs = 1,
	                            .node = "h2",
	                            .handle = "k8s-pod-network.abc",
	                            .attrs = attrs,
	                            .n_attrs = 2,
	                            .num4 = 3});
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_POOLS_REMOVE, .cidrs = &from, .n_cidrs = 1});
	ipam(&s, IPAM,
	     &(struct ipam_request){
	         .type = IPAM_REQ_POOLS_REMOVE, .cidrs = &from, .n_cidrs = 1, .force = true});
	save(dir, "ipam-pool-assign-remove", &s);

	memset(&s, 0, sizeof s);
	struct ipam_addr ips[] = {addr("10.1.0.200"), addr("fd00:1::20")};
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_ASSIGN,
	                            .node = "h1",
	                            .handle = "by-hand",
	                            .ips = ips,
	                            .n_ips = 2});
	struct ipam_release_item items[] = {{addr("10.1.0.200"), 0}, {addr("fd00:1::20"), 7}};
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_RELEASE, .items = items, .n_items = 2});
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_RELEASE, .items = items, .n_items = 1});
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_RELEASE_HANDLE, .handle = "by-hand"});
	save(dir, "ipam-explicit-release", &s);

	memset(&s, 0, sizeof s);
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_CONFIG, .config = {.strict_affinity = true}});
	ipam(&s, IPAM,
	     &(struct ipam_request){
	         .type = IPAM_REQ_ASSIGN, .node = "h3", .handle = "h", .num4 = 2, .num6 = 2});
	ipam(&s, IPAM | SAME_BATCH,
	     &(struct ipam_request){.type = IPAM_REQ_REMOVE_NODE, .node = "h3"});
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_INIT_DEFAULTS, .num4 = 1, .num6 = 1});
	save(dir, "ipam-config-node", &s);

	/* IPAM under the CNI path: the container's handle released by hand, then its DEL */
	memset(&s, 0, sizeof s);
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_RELEASE_HANDLE, .handle = "net1.c0"});
	text(&s, CNI, DEL_C0);
	text(&s, CNI, DEL_C0);
	save(dir, "ipam-under-cni", &s);

	/* resources */
	memset(&s, 0, sizeof s);
	text(&s, RES,
	     "{\"op\":\"create\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"policy\","
	     "\"metadata\":{\"name\":\"db\"},\"spec\":{\"order\":20,\"selector\":\"role == 'db'\","
	     "\"ingress\":[{\"action\":\"allow\",\"protocol\":\"tcp\",\"source\":{\"selector\":"
	     "\"role == "
	     "'frontend'\"},\"destination\":{\"ports\":[6379]}},{\"action\":\"deny\"}]}}]}");
	text(&s, RES,
	     "{\"op\":\"replace\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"node\","
	     "\"metadata\":"
	     "{\"name\":\"h1\",\"labels\":{\"rack\":\"b\"}},\"spec\":{}}]}");
	text(&s, RES,
	     "{\"op\":\"delete\",\"resources\":[{\"kind\":\"profile\",\"key\":\"db\"},"
	     "{\"kind\":\"policy\",\"key\":\"nope\"}]}");
	text(&s, RES,
	     "{\"op\":\"apply\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"ipPool\","
	     "\"metadata\":"
	     "{\"cidr\":\"10.2.0.0/24\"},\"spec\":{\"disabled\":true}}],\"expect\":[null]}");
	text(&s, RES,
	     "{\"op\":\"delete\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"ipPool\","
	     "\"metadata\":{\"cidr\":\"10.1.0.0/16\"}}]}");
	save(dir, "resources", &s);

	memset(&s, 0, sizeof s);
	text(
	    &s, RES,
	    "{\"op\":\"apply\",\"resources\":[{\"apiVersion\":\"v1\",\"kind\":\"workloadEndpoint\","
	    "\"metadata\":{\"node\":\"h1\",\"orchestrator\":\"cni\",\"workload\":\"c0\",\"name\":"
	    "\"eth0\",\"labels\":{\"role\":\"db\"}},\"spec\":{\"interfaceName\":\"calic0\","
	    "\"ipNetworks\":[\"10.1.0.1/32\"],\"profiles\":[\"net1\"]}}]}");
	text(&s, RES, "{\"op\":\"create\",\"resources\":[{\"kind\":\"policy\"}]}");
	text(&s, RES, "{\"op\":\"teleport\",\"resources\":[]}");
	text(&s, RES, "[1,2,3]");
	save(dir, "resources-endpoint-bad", &s);

	/* CNI */
	memset(&s, 0, sizeof s);
	text(&s, CNI, ADD_C1);
	text(&s, CNI, ADD_C1);
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net2\",\"container\":\"c1\",\"ifname\":"
	     "\"eth0\",\"netns\":\"/var/run/netns/c1\"}");
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c1\",\"ifname\":"
	     "\"eth1\",\"netns\":\"/var/run/netns/c1\",\"ipv4\":true,\"ipv6\":true}");
	text(&s, CNI,
	     "{\"op\":\"del\",\"node\":\"h1\",\"network\":\"net2\",\"container\":\"c1\",\"ifname\":"
	     "\"eth0\"}");
	text(&s, CNI,
	     "{\"op\":\"del\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c1\",\"ifname\":"
	     "\"eth0\"}");
	save(dir, "cni-add-networks-del", &s);

	memset(&s, 0, sizeof s);
	text(
	    &s, CNI,
	    "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c0abcdefghij-2\","
	    "\"ifname\":\"eth0\",\"pools\":[\"10.2.0.0/24\"],\"orchestrator\":\"mesos\","
	    "\"workload\":\"app.1\"}");
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h2\",\"network\":\"net1\",\"container\":\"c2\",\"ifname\":"
	     "\"eth0\",\"pools\":[\"10.2.0.0/24\"]}");
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h2\",\"network\":\"net1\",\"container\":\"c3\",\"ifname\":"
	     "\"eth0\",\"ips\":[\"10.1.7.7\"],\"wire\":false,\"profile\":false}");
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c0\",\"ifname\":"
	     "\"eth0\",\"netns\":\"/var/run/netns/other\"}");
	save(dir, "cni-pools-ips-conflict", &s);

	memset(&s, 0, sizeof s);
	text(&s, CNI, ADD_C1);
	text(&s, CNI | SAME_BATCH, DEL_C0);
	text(&s, CNI,
	     "{\"op\":\"reap\",\"node\":\"h1\",\"handle\":\"net1.c1\",\"items\":[{\"ip\":"
	     "\"10.1.0.1\",\"gen\":4}]}");
	text(&s, CNI, "{\"op\":\"remove_node\",\"node\":\"h1\"}");
	text(&s, CNI, "{\"op\":\"add\"}");
	text(&s, CNI, "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"n e t\"}");
	text(&s, UNKNOWN, "{}");
	save(dir, "cni-reap-remove-bad", &s);

	/* records the handlers did not write */
	memset(&s, 0, sizeof s);
	raw(&s, "cni/h1/c0/eth0", "{\"networks\":5,\"handle\":[],\"ips\":{}}");
	text(&s, CNI, DEL_C0);
	text(&s, CNI,
	     "{\"op\":\"add\",\"node\":\"h1\",\"network\":\"net1\",\"container\":\"c0\",\"ifname\":"
	     "\"eth0\",\"netns\":\"/var/run/netns/c0\"}");
	text(&s, CNI, "{\"op\":\"remove_node\",\"node\":\"h1\"}");
	save(dir, "raw-cni-record", &s);

	memset(&s, 0, sizeof s);
	raw(&s, "cni-if/h1/calic1", "[]");
	raw(&s, "res/profiles/net1", "{");
	text(&s, CNI, ADD_C1);
	raw(&s, "ipam/handle/net1.c0", "\x01\x02");
	text(&s, CNI, DEL_C0);
	ipam(&s, IPAM,
	     &(struct ipam_request){.type = IPAM_REQ_RELEASE_HANDLE, .handle = "net1.c0"});
	raw(&s, "ipam/config", "x");
	ipam(&s, IPAM,
	     &(struct ipam_request){
	         .type = IPAM_REQ_ASSIGN, .node = "h1", .handle = "h", .num4 = 1});
	save(dir, "raw-other-records", &s);
	return 0;
}
