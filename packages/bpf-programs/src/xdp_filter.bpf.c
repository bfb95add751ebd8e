// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Netfence XDP filter: the TC filter's verdict at XDP, on the host end of a veth or a tap,
 * where the workload's frames arrive before any socket buffer exists, so a hostile workload's
 * flood costs the host less. The same parser (netfence_frame.h, read through
 * bpf_xdp_load_bytes) and the same decision (nf_judge) as TC; pass is XDP_PASS (the frame goes
 * on to TC and the stack), drop is XDP_DROP.
 *
 * One copy per host serves every XDP attachment: the program finds its slot by the receiving
 * device (ingress_ifindex) with direction NF_DIR_XDP: nf_dev_slot. A device without an entry,
 * or an inactive slot, drops: fail closed.
 */
#define NF_PKT_CTX struct xdp_md
#define NF_LOAD_BYTES bpf_xdp_load_bytes
/* no skb->protocol: an L3 device's packet is IPv4 or IPv6 by its version nibble */
#define NF_FRAME_L3_PROTO(ctx, first) ((first) >> 4 == 4 ? NF_ETH_P_IP : (first) >> 4 == 6 ? NF_ETH_P_IPV6 : 0)
#include "netfence_common.h"
#include "netfence_frame.h"

#define NF_XDP_DROP 1
#define NF_XDP_PASS 2


SEC("xdp")
int netfence_xdp(struct xdp_md *ctx)
{
	__u32 slot = nf_dev_slot(ctx->ingress_ifindex, NF_DIR_XDP);
	struct nf_config *cfg = nf_slot_config(slot); /* slot 0 is never active */
	if (!cfg)
		return NF_XDP_DROP;
	if (cfg->mode == NF_MODE_DISABLED) {
		nf_count(slot, NF_STAT_ALLOWED);
		return NF_XDP_PASS;
	}

	struct nf_flow f = { .slot = slot };
	int r = nf_parse_frame(ctx, cfg, &f);
	__u32 status = r == NF_PARSE_ARP ? NF_JUDGE_IMPLICIT : r == NF_PARSE_OK ? NF_JUDGE_PARSED : NF_JUDGE_UNPARSABLE;
	return nf_judge(cfg, &f, NF_HOOK_XDP | status << 8, 0, 0) ? NF_XDP_DROP : NF_XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
