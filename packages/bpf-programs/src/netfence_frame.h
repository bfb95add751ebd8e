/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The link layer of a frame (TC, XDP): Ethernet with up to two VLAN tags (802.1Q / 802.1ad),
 * or, with NF_FLAG_L3_DEVICE, a bare IP packet (tun), then the IP parsers of
 * netfence_common.h. Read through NF_LOAD_BYTES, so the same code serves an skb and an xdp_md.
 */
#ifndef NETFENCE_FRAME_H
#define NETFENCE_FRAME_H

#include "netfence_common.h"

/* The protocol an L3 device's packet claims: skb->protocol on an skb (which the version
 * nibble must agree with); XDP has no such field and goes by the nibble alone. */
#ifndef NF_FRAME_L3_PROTO
#define NF_FRAME_L3_PROTO(ctx, first) bpf_ntohs((__u16)(ctx)->protocol)
#endif

#define NF_PARSE_ARP 2

/*
 * Which attachment a device program (TC ingress, TC egress, XDP) judges for, by the device it
 * runs on. Devices with an ifindex below NF_DEV_SLOTS_MAX are found in dev_slots, an array
 * indexed by ifindex (an inlined look-up: a hash look-up cost ~8 ns a packet, 6% of the whole
 * program at 100,000 rules); the rest in tc_slots, a hash keyed {ifindex, direction}. A device
 * in neither, or slot 0, drops.
 */
#define NF_DEV_SLOTS_MAX 65536

struct nf_dev_slots {
	__u32 slot[3]; /* by NF_DIR_INGRESS, NF_DIR_EGRESS, NF_DIR_XDP; 0 = none */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_DEV_SLOTS_MAX);
	__type(key, __u32);
	__type(value, struct nf_dev_slots);
} dev_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, struct nf_tc_key);
	__type(value, __u32);
} tc_slots SEC(".maps");

NF_ASSERT_SIZE(nf_dev_slots, 12);

/* The slot of the device program running on `ifindex` in direction `dir`; 0 when none. */
static __always_inline __u32 nf_dev_slot(__u32 ifindex, __u32 dir)
{
	if (ifindex < NF_DEV_SLOTS_MAX) {
		struct nf_dev_slots *d = bpf_map_lookup_elem(&dev_slots, &ifindex);
		return d && dir < 3 ? d->slot[dir] : 0;
	}
	struct nf_tc_key key = { .ifindex = ifindex, .dir = dir };
	__u32 *slotp = bpf_map_lookup_elem(&tc_slots, &key);
	return slotp ? *slotp : 0;
}

static __always_inline int nf_parse_frame(NF_PKT_CTX *skb, const struct nf_config *cfg, struct nf_flow *f)
{
	__u32 off = 0;
	__u16 proto;

	if (cfg->flags & NF_FLAG_L3_DEVICE) {
		/* no link-layer header: the version nibble must agree with skb->protocol */
		__u8 first;
		if (NF_LOAD_BYTES(skb, 0, &first, 1))
			return NF_PARSE_FAIL;
		proto = NF_FRAME_L3_PROTO(skb, first);
		if (!((proto == NF_ETH_P_IP && (first >> 4) == 4) || (proto == NF_ETH_P_IPV6 && (first >> 4) == 6)))
			return NF_PARSE_FAIL;
	} else {
		/* the fast path: an untagged IPv4/IPv6 frame read in place */
		const __u8 *data = (const __u8 *)(long)skb->data;
		const void *end = (const void *)(long)skb->data_end;
		if ((const void *)(data + 14) <= end) {
			__u16 et = ((__u16)data[12] << 8) | data[13];
			if (et == NF_ETH_P_IP || et == NF_ETH_P_IPV6) {
				int r = nf_fast_ip(data + 14, end, f, et == NF_ETH_P_IP ? 4 : 6);
				if (r != NF_PARSE_SLOW)
					return r;
			}
		}
		struct ethhdr eth;
		if (NF_LOAD_BYTES(skb, 0, &eth, sizeof(eth)))
			return NF_PARSE_FAIL;
		proto = bpf_ntohs(eth.h_proto);
		off = sizeof(eth);

		/* up to two VLAN tags (QinQ); a third is refused */
		for (int i = 0; i < 2; i++) {
			if (proto != NF_ETH_P_8021Q && proto != NF_ETH_P_8021AD)
				break;
			__be16 tag[2]; /* TCI, encapsulated protocol */
			if (NF_LOAD_BYTES(skb, off, tag, 4))
				return NF_PARSE_FAIL;
			proto = bpf_ntohs(tag[1]);
			off += 4;
		}
		if (proto == NF_ETH_P_ARP)
			return NF_PARSE_ARP;
	}

	/* one inlined copy of each IP parser serves both the L2 and the L3 path
	 * (a second copy doubled the program and its verification) */
	if (proto == NF_ETH_P_IP)
		return nf_parse_ipv4(skb, off, f);
	if (proto == NF_ETH_P_IPV6)
		return nf_parse_ipv6(skb, off, f);
	return NF_PARSE_FAIL; /* unknown ethertype, or a third VLAN tag */
}

#endif /* NETFENCE_FRAME_H */
