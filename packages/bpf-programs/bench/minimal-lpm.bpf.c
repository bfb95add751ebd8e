// Copied unchanged (apart from this comment) from ../shared/reference/minimal-lpm.bpf.c
// (the reference program of issue 11): the benchmark builds it with clang into a temp dir,
// fills its `lpm` map with the same entries as ours and times it against ours. Never shipped.
// SPDX-License-Identifier: GPL-2.0
// minimal-lpm.bpf.c - the reference cost of an egress allow-list: each program
// does ONE LPM-trie look-up of the destination IPv4 address (prefixlen 32) and
// bumps a per-CPU counter: [0]=allowed, [1]=denied, [2]=not IPv4 or too short.
// Benchmarks fill "lpm" with the same entries as the filter under test and
// time both with BPF_PROG_TEST_RUN, interleaved, to report a ratio.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(max_entries, 200000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 3);
} cnt SEC(".maps");

static __always_inline void bump(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&cnt, &i);
	if (c)
		(*c)++;
}

static __always_inline int allowed(__u32 daddr)
{
	struct lpm_key k = { .prefixlen = 32, .addr = daddr };
	if (bpf_map_lookup_elem(&lpm, &k)) {
		bump(0);
		return 1;
	}
	bump(1);
	return 0;
}

/* TC (clsact) egress, direct-action: L2 frame. */
SEC("tc")
int pf_tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) {
		bump(2);
		return TC_ACT_OK;
	}
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end) {
		bump(2);
		return TC_ACT_OK;
	}
	return allowed(ip->daddr) ? TC_ACT_OK : TC_ACT_SHOT;
}

/* Empty TC program: baseline for "bpftool prog run" (test_run) timings. */
SEC("tc")
int pf_tc_null(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/* cgroup_skb egress: skb->data points at the IP header. 1 = pass, 0 = drop. */
SEC("cgroup_skb/egress")
int pf_cgskb_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data;

	if (skb->protocol != bpf_htons(ETH_P_IP) || (void *)(ip + 1) > end) {
		bump(2);
		return 1;
	}
	return allowed(ip->daddr);
}

/* cgroup/connect4: 1 = allow, 0 = EPERM. */
SEC("cgroup/connect4")
int pf_connect4(struct bpf_sock_addr *ctx)
{
	return allowed(ctx->user_ip4);
}

char LICENSE[] SEC("license") = "GPL";
