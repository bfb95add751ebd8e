// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Netfence TC filter: one program for TCX (or clsact) ingress or egress,
 * attached in the workload's outbound direction. Parses Ethernet with up to
 * two VLAN tags (802.1Q / 802.1ad) or, with NF_FLAG_L3_DEVICE, a bare IP
 * packet (tun), then IPv4 / IPv6 (extension headers) and the L4 ports.
 * Pass returns TC_ACT_UNSPEC (TCX_NEXT: later programs still run), drop
 * returns TC_ACT_SHOT. In an enforcing mode anything unparsable is dropped.
 *
 * One copy per host serves every TC attachment: the program finds the attachment it runs for
 * by the device it is attached to (skb->ifindex) and its direction (one entry point per
 * direction): nf_dev_slot. A device without an entry, or an inactive slot, drops: fail closed.
 */
#include "netfence_common.h"

#include "netfence_frame.h"


static __always_inline int nf_tc(struct __sk_buff *skb, __u32 dir)
{
	__u32 slot = nf_dev_slot(skb->ifindex, dir);
	struct nf_config *cfg = nf_slot_config(slot); /* slot 0 is never active */
	if (!cfg)
		return NF_TC_ACT_SHOT;
	if (cfg->mode == NF_MODE_DISABLED) {
		nf_count(slot, NF_STAT_ALLOWED);
		return NF_TC_ACT_UNSPEC;
	}

	struct nf_flow f = { .slot = slot };
	int r = nf_parse_frame(skb, cfg, &f);
	/* unparsable: event family 0 when not even L3 was read */
	__u32 status = r == NF_PARSE_ARP ? NF_JUDGE_IMPLICIT : r == NF_PARSE_OK ? NF_JUDGE_PARSED : NF_JUDGE_UNPARSABLE;
	return nf_judge(cfg, &f, NF_HOOK_TC | status << 8, 0, 0) ? NF_TC_ACT_SHOT : NF_TC_ACT_UNSPEC;
}

SEC("tc")
int netfence_tc_ingress(struct __sk_buff *skb)
{
	return nf_tc(skb, NF_DIR_INGRESS);
}

SEC("tc")
int netfence_tc_egress(struct __sk_buff *skb)
{
	return nf_tc(skb, NF_DIR_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
