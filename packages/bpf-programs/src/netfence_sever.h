/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The severing target (sever_cfg), shared by the cgroup object (which creates
 * and pins it with the attachment) and the sever object (whose iterators read
 * it through the attachment's pin). Same name, type and layout in both, so
 * libbpf reuses the pinned map.
 */
#ifndef NETFENCE_SEVER_H
#define NETFENCE_SEVER_H

#include "netfence_common.h"

/* severing target, 32 bytes (array, 1 entry) */
struct nf_sever_config {
	__u64 cgroup_id;  /* 0: any socket in the netns; else only sockets of this cgroup or its descendants */
	__u8 family;      /* 0: any destination; 4 or 6: only destinations inside addr/prefix_len */
	__u8 prefix_len;
	__u8 _pad[2];
	__u32 slot;       /* 12: the attachment whose policy judges the sockets */
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_sever_config);
} sever_cfg SEC(".maps");

NF_ASSERT_SIZE(nf_sever_config, 32);
NF_ASSERT_OFF(nf_sever_config, cgroup_id, 0);
NF_ASSERT_OFF(nf_sever_config, family, 8);
NF_ASSERT_OFF(nf_sever_config, prefix_len, 9);
NF_ASSERT_OFF(nf_sever_config, slot, 12);
NF_ASSERT_OFF(nf_sever_config, addr, 16);

#endif /* NETFENCE_SEVER_H */
