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
