// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Netfence cgroup filter: socket-level decisions (connect4/6, sendmsg4/6),
 * transparent DNS redirection to the attachment's DNS server (connect,
 * sendmsg; recvmsg4/6 and getpeername4/6 restore the original address), a
 * cgroup_skb/egress backstop deciding every packet (raw/ICMP sockets,
 * sockets that predate the attach, existing flows). The sever iterators live
 * in sever.bpf.c (they need CO-RE; this object needs none); sever_cfg is
 * defined here too, so a cgroup attachment creates and pins it.
 */
#include "netfence_common.h"
#include "netfence_sever.h"

/* per-socket memory of a DNS redirection, 40 bytes */
struct nf_dns_orig {
	__u8 orig_addr[16];   /* what the workload asked for (v4 in the first 4 bytes for *4 hooks) */
	__u8 target_addr[16]; /* what we rewrote it to */
	__u16 orig_port;      /* network order */
	__u16 target_port;    /* network order */
	__u8 family;          /* 4: set by a *4 hook, 6: by a *6 hook */
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nf_dns_orig);
} dns_orig SEC(".maps");

/*
 * The slot of the attachment a link runs for: cgroup storage of the cgroup the link is attached
 * to (one per cgroup, shared by every program using this map there, thanks to the u64 key).
 * One program serves every cgroup attachment of the host, and with nested attachments each
 * ancestor's link runs with its own storage, so each judges by its own policy (all must allow).
 * A new storage reads slot 0 (never active: drop) until the daemon writes it; the daemon
 * attaches the restore programs (recvmsg, getpeername: they create the storage and judge
 * nothing) first, writes the slot, then attaches the judging programs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct nf_cg_slot);
} cg_slot SEC(".maps");

#ifdef NF_FIXED_SLOT
/* Test and benchmark build only (build/cgroup_filter_fixed_slot.bpf.o, never attached by the
 * daemon): BPF_PROG_TEST_RUN gives a cgroup program fresh zeroed storage on every run, so a
 * test run of the real program always reads slot 0. This build reads NF_FIXED_SLOT instead;
 * everything else is the same code. */
static __always_inline __u32 nf_cg_slot(void)
{
	return NF_FIXED_SLOT;
}
#else
static __always_inline __u32 nf_cg_slot(void)
{
	struct nf_cg_slot *s = bpf_get_local_storage(&cg_slot, 0);
	return s->slot;
}
#endif

/* The restore programs use the storage only so that attaching them creates it. */
static __always_inline void nf_cg_touch_storage(void)
{
	struct nf_cg_slot *s = bpf_get_local_storage(&cg_slot, 0);
	asm volatile("" : : "r"(s) : "memory");
}

NF_ASSERT_SIZE(nf_dns_orig, 40);
NF_ASSERT_OFF(nf_dns_orig, orig_addr, 0);
NF_ASSERT_OFF(nf_dns_orig, target_addr, 16);
NF_ASSERT_OFF(nf_dns_orig, orig_port, 32);
NF_ASSERT_OFF(nf_dns_orig, target_port, 34);
NF_ASSERT_OFF(nf_dns_orig, family, 36);

static __always_inline __u32 nf_pid(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline int nf_dns_target_v4(const struct nf_config *cfg)
{
	return cfg->dns_port != 0 && !nf_v4_is_zero(cfg->dns_v4);
}

static __always_inline int nf_dns_target_v6(const struct nf_config *cfg)
{
	return cfg->dns_port != 0 && !nf_v6_is_zero(cfg->dns_v6);
}

/* Should this socket address be redirected to the attachment's DNS server? */
static __always_inline int nf_wants_redirect(const struct nf_config *cfg, const struct nf_flow *f)
{
	return (cfg->flags & NF_FLAG_DNS_FILTER) && !(cfg->flags & NF_FLAG_DRY_RUN) && nf_is_tcp_udp(f->proto) &&
	       f->dport == 53 && !(nf_is_dns_addr(cfg, f) && f->dport == cfg->dns_port);
}

static __always_inline void nf_remember(struct bpf_sock_addr *ctx, const __u8 *orig, __u16 orig_port_be,
					const __u8 *target, __u16 target_port_be, __u8 family)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return;
	struct nf_dns_orig *o = bpf_sk_storage_get(&dns_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	__builtin_memcpy(o->orig_addr, orig, 16);
	__builtin_memcpy(o->target_addr, target, 16);
	o->orig_port = orig_port_be;
	o->target_port = target_port_be;
	o->family = family;
}

/* ---- IPv4 socket hooks ---- */

static __always_inline int nf_sock4(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u32 slot = nf_cg_slot();
	struct nf_config *cfg = nf_slot_config(slot);
	if (!cfg)
		return 0;
	if (cfg->mode == NF_MODE_DISABLED) {
		nf_count(slot, NF_STAT_ALLOWED);
		return 1;
	}
	struct nf_flow f = { .slot = slot };
	__u32 ip = ctx->user_ip4;
	f.family = 4;
	__builtin_memcpy(f.daddr, &ip, 4);
	f.proto = (__u8)ctx->protocol;
	f.dport = bpf_ntohs((__u16)ctx->user_port);
	f.l4 = 1;

	if (cfg->mode <= NF_MODE_BLOCK_ALL && nf_wants_redirect(cfg, &f) && nf_dns_target_v4(cfg)) {
		__u8 orig[16] = {}, target[16] = {};
		__builtin_memcpy(orig, &ip, 4);
		__builtin_memcpy(target, cfg->dns_v4, 4);
		__u16 tport = bpf_htons(cfg->dns_port);
		nf_remember(ctx, orig, (__u16)ctx->user_port, target, tport, 4);
		__u32 nip;
		__builtin_memcpy(&nip, cfg->dns_v4, 4);
		ctx->user_ip4 = nip;
		ctx->user_port = tport;
		nf_count(slot, NF_STAT_DNS_REDIRECTED);
		nf_count(slot, NF_STAT_ALLOWED);
		nf_count(slot, NF_STAT_IMPLICIT_ALLOWED);
		return 1;
	}
	/* inlined here, not nf_judge: with the family known, the verifier prunes every IPv6 path
	 * and checks this program faster than it checks the global function */
	struct nf_verdict v = nf_decide(cfg, &f, 1);
	return nf_finish(cfg, &f, &v, hook, bpf_get_current_cgroup_id(), nf_pid()) ? 0 : 1;
}

SEC("cgroup/connect4")
int netfence_connect4(struct bpf_sock_addr *ctx)
{
	return nf_sock4(ctx, NF_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int netfence_sendmsg4(struct bpf_sock_addr *ctx)
{
	return nf_sock4(ctx, NF_HOOK_SENDMSG);
}

/* recvmsg4 / getpeername4: show the workload the address it asked for */
static __always_inline int nf_restore4(struct bpf_sock_addr *ctx)
{
	nf_cg_touch_storage();
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct nf_dns_orig *o = bpf_sk_storage_get(&dns_orig, sk, 0, 0);
	if (!o || o->family != 4)
		return 1;
	__u32 ip = ctx->user_ip4, t;
	__builtin_memcpy(&t, o->target_addr, 4);
	if (ip != t || (__u16)ctx->user_port != o->target_port)
		return 1;
	__u32 orig;
	__builtin_memcpy(&orig, o->orig_addr, 4);
	ctx->user_ip4 = orig;
	ctx->user_port = o->orig_port;
	return 1;
}

SEC("cgroup/recvmsg4")
int netfence_recvmsg4(struct bpf_sock_addr *ctx)
{
	return nf_restore4(ctx);
}

SEC("cgroup/getpeername4")
int netfence_getpeername4(struct bpf_sock_addr *ctx)
{
	return nf_restore4(ctx);
}

/* ---- IPv6 socket hooks ---- */

static __always_inline void nf_read_ip6(struct bpf_sock_addr *ctx, __u8 *out)
{
	__u32 w[4];
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memcpy(out, w, 16);
}

static __always_inline void nf_write_ip6(struct bpf_sock_addr *ctx, const __u8 *in)
{
	__u32 w[4];
	__builtin_memcpy(w, in, 16);
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
}

static __always_inline int nf_sock6(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u32 slot = nf_cg_slot();
	struct nf_config *cfg = nf_slot_config(slot);
	if (!cfg)
		return 0;
	if (cfg->mode == NF_MODE_DISABLED) {
		nf_count(slot, NF_STAT_ALLOWED);
		return 1;
	}
	__u8 orig[16];
	nf_read_ip6(ctx, orig);
	struct nf_flow f = { .slot = slot };
	nf_flow_set_v6(&f, orig); /* ::ffff:a.b.c.d is checked as a.b.c.d */
	f.proto = (__u8)ctx->protocol;
	f.dport = bpf_ntohs((__u16)ctx->user_port);
	f.l4 = 1;

	if (cfg->mode <= NF_MODE_BLOCK_ALL && nf_wants_redirect(cfg, &f)) {
		__u8 target[16] = {};
		int ok = 0;
		if ((f.family == 4 || !nf_dns_target_v6(cfg)) && nf_dns_target_v4(cfg)) {
			/* ::ffff:dns_v4 (dual-stack sockets; a V6ONLY socket then fails to connect) */
			target[10] = 0xff;
			target[11] = 0xff;
			__builtin_memcpy(target + 12, cfg->dns_v4, 4);
			ok = 1;
		} else if (nf_dns_target_v6(cfg)) {
			__builtin_memcpy(target, cfg->dns_v6, 16);
			ok = 1;
		}
		if (ok) {
			__u16 tport = bpf_htons(cfg->dns_port);
			nf_remember(ctx, orig, (__u16)ctx->user_port, target, tport, 6);
			nf_write_ip6(ctx, target);
			ctx->user_port = tport;
			nf_count(slot, NF_STAT_DNS_REDIRECTED);
			nf_count(slot, NF_STAT_ALLOWED);
			nf_count(slot, NF_STAT_IMPLICIT_ALLOWED);
			return 1;
		}
	}
	return nf_judge(cfg, &f, hook, bpf_get_current_cgroup_id(), nf_pid()) ? 0 : 1;
}

SEC("cgroup/connect6")
int netfence_connect6(struct bpf_sock_addr *ctx)
{
	return nf_sock6(ctx, NF_HOOK_CONNECT);
}

SEC("cgroup/sendmsg6")
int netfence_sendmsg6(struct bpf_sock_addr *ctx)
{
	return nf_sock6(ctx, NF_HOOK_SENDMSG);
}

static __always_inline int nf_restore6(struct bpf_sock_addr *ctx)
{
	nf_cg_touch_storage();
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct nf_dns_orig *o = bpf_sk_storage_get(&dns_orig, sk, 0, 0);
	if (!o || (__u16)ctx->user_port != o->target_port)
		return 1;
	__u8 src[16];
	nf_read_ip6(ctx, src);
	__u8 orig[16];
	if (o->family == 6) {
		if (!nf_eq16(src, o->target_addr))
			return 1;
		__builtin_memcpy(orig, o->orig_addr, 16);
	} else if (o->family == 4) {
		/* a dual-stack socket sending to ::ffff:a.b.c.d goes through
		 * sendmsg4 (udp_sendmsg) but receives through recvmsg6 */
		if (!nf_is_v4_mapped(src) || !nf_eq4(src + 12, o->target_addr))
			return 1;
		__builtin_memset(orig, 0, 16);
		orig[10] = 0xff;
		orig[11] = 0xff;
		__builtin_memcpy(orig + 12, o->orig_addr, 4);
	} else {
		return 1;
	}
	nf_write_ip6(ctx, orig);
	ctx->user_port = o->orig_port;
	return 1;
}

SEC("cgroup/recvmsg6")
int netfence_recvmsg6(struct bpf_sock_addr *ctx)
{
	return nf_restore6(ctx);
}

SEC("cgroup/getpeername6")
int netfence_getpeername6(struct bpf_sock_addr *ctx)
{
	return nf_restore6(ctx);
}

/* ---- packet backstop ---- */

SEC("cgroup_skb/egress")
int netfence_egress(struct __sk_buff *skb)
{
	__u32 slot = nf_cg_slot();
	struct nf_config *cfg = nf_slot_config(slot);
	if (!cfg)
		return 0;
	if (cfg->mode == NF_MODE_DISABLED) {
		nf_count(slot, NF_STAT_ALLOWED);
		return 1;
	}
	struct nf_flow f = { .slot = slot };
	__u8 first;
	/* the skb starts at the network header: the fast path reads it in place */
	int r = nf_fast_ip((const __u8 *)(long)skb->data, (const void *)(long)skb->data_end, &f, 0);
	if (r == NF_PARSE_SLOW && !bpf_skb_load_bytes(skb, 0, &first, 1)) {
		if ((first >> 4) == 4)
			r = nf_parse_ipv4(skb, 0, &f);
		else if ((first >> 4) == 6)
			r = nf_parse_ipv6(skb, 0, &f);
		else
			r = NF_PARSE_FAIL;
	} else if (r == NF_PARSE_SLOW) {
		r = NF_PARSE_FAIL;
	}
	__u32 status = r == NF_PARSE_OK ? NF_JUDGE_PARSED : NF_JUDGE_UNPARSABLE;
	return nf_judge(cfg, &f, NF_HOOK_SKB | status << 8, bpf_skb_cgroup_id(skb), 0) ? 0 : 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
