// SPDX-License-Identifier: GPL-2.0
/*
 * Bench only (never shipped): the two map layouts issue 11 chose between, each in a program of
 * the same shape as the reference (minimal-lpm.bpf.c: Ethernet + IPv4, one rules look-up of the
 * destination, a per-CPU counter), so the benchmark times the layouts and nothing else.
 *
 *   lay_mm_tc  map of maps (what the netfence programs do): mm_outer[slot] is the attachment's
 *              own LPM trie (key {prefixlen, addr}), then one look-up in it.
 *   lay_hw_tc  one host-wide LPM trie whose key starts with the attachment's slot (big-endian,
 *              so the slot is the top bits): key {prefixlen = 32 + prefix, slot, addr}.
 *
 * Both judge for slot LAY_SLOT (1), the attachment the benchmark measures; the other slots hold
 * the other attachments' entries. Values are 16 bytes like netfence's rule entries.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LAY_SLOT 1
#define LAY_SLOTS 4097

struct lay_rule {
	__u64 a;
	__u64 b;
};

struct lay_key_v4 {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct lay_hw_key {
	__u32 prefixlen; /* 32 (the slot) + the rule's prefix length */
	__u32 slot;      /* network byte order */
	__u32 addr;      /* network byte order */
};

struct lay_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__uint(key_size, sizeof(struct lay_key_v4));
	__uint(value_size, sizeof(struct lay_rule));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, LAY_SLOTS);
	__type(key, __u32);
	__array(values, struct lay_inner);
} mm_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct lay_hw_key);
	__type(value, struct lay_rule);
} hw_rules SEC(".maps");

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

/* The reference's parse: the IPv4 destination of an Ethernet frame, or 0 when there is none. */
static __always_inline int daddr_of(struct __sk_buff *skb, __u32 *daddr)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return 0;
	*daddr = ip->daddr;
	return 1;
}

static __always_inline int verdict(void *rule)
{
	if (rule) {
		bump(0);
		return TC_ACT_OK;
	}
	bump(1);
	return TC_ACT_SHOT;
}

SEC("tc")
int lay_mm_tc(struct __sk_buff *skb)
{
	__u32 daddr, slot = LAY_SLOT;
	if (!daddr_of(skb, &daddr)) {
		bump(2);
		return TC_ACT_OK;
	}
	void *trie = bpf_map_lookup_elem(&mm_outer, &slot);
	if (!trie)
		return verdict(NULL);
	struct lay_key_v4 k = { .prefixlen = 32, .addr = daddr };
	return verdict(bpf_map_lookup_elem(trie, &k));
}

SEC("tc")
int lay_hw_tc(struct __sk_buff *skb)
{
	__u32 daddr;
	if (!daddr_of(skb, &daddr)) {
		bump(2);
		return TC_ACT_OK;
	}
	struct lay_hw_key k = { .prefixlen = 64, .slot = bpf_htonl(LAY_SLOT), .addr = daddr };
	return verdict(bpf_map_lookup_elem(&hw_rules, &k));
}

char LICENSE[] SEC("license") = "GPL";
