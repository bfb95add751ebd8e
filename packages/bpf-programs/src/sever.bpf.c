// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Netfence sever iterators (iter/tcp, iter/udp): destroy the sockets whose
 * destination the current policy blocks (bpf_sock_destroy). A separate object
 * because it walks kernel structs (sock_common, cgroup) with CO-RE, which
 * makes libbpf parse the kernel's BTF at load: the filter objects stay free
 * of that cost. It has the host maps and sever_cfg under the same names as
 * the cgroup object and is loaded once, lazily, against the host's pinned maps
 * (SEVER_SHARED_MAPS in the manifest): sever_cfg names the slot whose policy
 * judges the sockets.
 */
#define NF_USE_VMLINUX
/* iterators cannot read the coarse clock; the same CLOCK_MONOTONIC, finer */
#define NF_MONO_NS() bpf_ktime_get_ns()
#include "netfence_common.h"
#include "netfence_sever.h"
#include <bpf/bpf_core_read.h>

/* ---- severing: destroy sockets the current policy blocks ---- */

static __always_inline int nf_prefix_match(const __u8 *a, const __u8 *p, __u32 plen, __u32 width)
{
	if (plen > width)
		return 0;
	for (int i = 0; i < 16; i++) {
		__u32 bits = i * 8;
		if (bits >= plen)
			break;
		__u8 mask = 0xff;
		if (plen - bits < 8)
			mask = (__u8)(0xff << (8 - (plen - bits)));
		if ((a[i] ^ p[i]) & mask)
			return 0;
	}
	return 1;
}

static __always_inline int nf_in_cgroup(struct cgroup *cg, __u64 want)
{
	for (int i = 0; i < 32; i++) {
		if (!cg)
			return 0;
		if (BPF_CORE_READ(cg, kn, id) == want)
			return 1;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return 0;
}

/* 1: destroy this socket */
static __always_inline int nf_sever_wanted(struct sock *sk, struct nf_flow *f)
{
	__u32 zero = 0;
	struct nf_sever_config *sc = bpf_map_lookup_elem(&sever_cfg, &zero);
	if (!sc)
		return 0;
	struct nf_config *cfg = nf_slot_config(sc->slot);
	if (!cfg)
		return 0;
	f->slot = sc->slot;
	if (cfg->flags & NF_FLAG_DRY_RUN)
		return 0;
	if (sc->cgroup_id && !nf_in_cgroup(BPF_CORE_READ(sk, sk_cgrp_data.cgroup), sc->cgroup_id))
		return 0;
	if (sc->family) {
		if (sc->family != f->family)
			return 0;
		if (!nf_prefix_match(f->daddr, sc->addr, sc->prefix_len, f->family == 4 ? 32 : 128))
			return 0;
	}
	struct nf_verdict v = nf_decide(cfg, f, 0);
	return v.drop;
}

static __always_inline int nf_flow_from_sk(struct sock_common *skc, struct nf_flow *f, __u8 proto)
{
	__u16 family = skc->skc_family;
	f->proto = proto;
	f->l4 = 1;
	f->dport = bpf_ntohs(skc->skc_dport);
	if (family == NF_AF_INET) {
		__u32 d = skc->skc_daddr;
		f->family = 4;
		__builtin_memcpy(f->daddr, &d, 4);
	} else if (family == NF_AF_INET6) {
		__u8 d[16];
		BPF_CORE_READ_INTO(&d, skc, skc_v6_daddr);
		nf_flow_set_v6(f, d);
	} else {
		return 0;
	}
	/* unconnected sockets have no destination */
	__u32 w[4];
	__builtin_memcpy(w, f->daddr, 16);
	return (w[0] | w[1] | w[2] | w[3]) != 0 || f->dport != 0;
}

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

static __always_inline void nf_sever(struct sock_common *skc, __u32 slot)
{
	if (bpf_sock_destroy(skc))
		nf_count(slot, NF_STAT_SEVER_FAILED);
	else
		nf_count(slot, NF_STAT_SEVERED);
}

SEC("iter/tcp")
int netfence_sever_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	/* full sockets only: not listeners, TIME_WAIT or request sockets */
	__u8 state = skc->skc_state;
	if (state == TCP_LISTEN || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || state == TCP_CLOSE)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	struct nf_flow f = {};
	if (!nf_flow_from_sk(skc, &f, NF_PROTO_TCP))
		return 0;
	if (nf_sever_wanted((struct sock *)tp, &f))
		nf_sever(skc, f.slot);
	return 0;
}

SEC("iter/udp")
int netfence_sever_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *us = ctx->udp_sk;
	if (!us)
		return 0;
	struct sock_common *skc = (struct sock_common *)us;
	struct nf_flow f = {};
	if (!nf_flow_from_sk(skc, &f, NF_PROTO_UDP))
		return 0;
	if (nf_sever_wanted((struct sock *)us, &f))
		nf_sever(skc, f.slot);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
