/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Netfence datapath: shared layouts, maps and the decision function.
 *
 * Every layout here is mirrored byte for byte by src/manifest.ts (a unit test
 * checks the sizes and offsets against this file's comments and the BTF of the
 * built objects). Change one, change both.
 *
 * Security model (see README.md): "longest prefix across both lists wins, deny
 * wins a tie"; anything that cannot be parsed is dropped in an enforcing mode;
 * dry-run never drops but reports every would-be drop.
 */
#ifndef NETFENCE_COMMON_H
#define NETFENCE_COMMON_H

/*
 * The filter objects (tc, cgroup) are built from the UAPI headers: every
 * struct they touch is a UAPI context (__sk_buff, bpf_sock_addr, bpf_sock) or
 * a wire header read with bpf_skb_load_bytes, so they carry no CO-RE
 * relocation and libbpf never parses the kernel's BTF when loading them (a
 * fixed ~10 ms per load). Only the sever iterators (sever.bpf.c) walk kernel
 * structs (sock_common, cgroup): they define NF_USE_VMLINUX and use CO-RE.
 */
#ifdef NF_USE_VMLINUX
#include "vmlinux.h"
#else
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* ---- constants (defined here so both header sets give the same values) ---- */
#define NF_ETH_P_IP 0x0800
#define NF_ETH_P_IPV6 0x86DD
#define NF_ETH_P_ARP 0x0806
#define NF_ETH_P_8021Q 0x8100
#define NF_ETH_P_8021AD 0x88A8
#define NF_AF_INET 2
#define NF_AF_INET6 10
#define NF_TC_ACT_UNSPEC (-1) /* TCX_NEXT: pass on to the next program / default pass */
#define NF_TC_ACT_SHOT 2      /* TCX_DROP */

#define NF_PROTO_ICMP 1
#define NF_PROTO_TCP 6
#define NF_PROTO_UDP 17
#define NF_PROTO_ICMPV6 58
#define NF_NEXTHDR_HOP 0
#define NF_NEXTHDR_ROUTING 43
#define NF_NEXTHDR_FRAGMENT 44
#define NF_NEXTHDR_AUTH 51
#define NF_NEXTHDR_DEST 60

/* ---- modes (config.mode) ---- */
#define NF_MODE_DISABLED 0
#define NF_MODE_ALLOWLIST 1
#define NF_MODE_DENYLIST 2
#define NF_MODE_BLOCK_ALL 3

/* ---- config.flags ---- */
#define NF_FLAG_DRY_RUN (1u << 0)
#define NF_FLAG_DNS_FILTER (1u << 1)
#define NF_FLAG_L3_DEVICE (1u << 2)
/* The slot is in use. A config without it (a free slot, slot 0, a zeroed entry) drops
 * everything: an all-zero config would otherwise read as mode DISABLED. */
#define NF_FLAG_ACTIVE (1u << 3)

/* ---- reasons (event.reason, stats REASON_BASE + reason) ---- */
#define NF_REASON_NONE 0
#define NF_REASON_DENY_CIDR 1   /* a deny entry matched and won */
#define NF_REASON_NOT_ALLOWED 2 /* allowlist: no allow entry won */
#define NF_REASON_BLOCK_ALL 3
#define NF_REASON_DNS_BYPASS 4 /* DNS / DoT / DoQ to anything but the attachment's server */
#define NF_REASON_UNPARSABLE 5 /* truncated, malformed, unknown ethertype, too many headers */
#define NF_REASON_LINK_LOCAL 6 /* allowlist: 169.254.0.0/16 or fe80::/10 not allowed */
#define NF_REASON_BAD_CONFIG 7 /* unknown mode value */
#define NF_REASON_MAX 8

/* ---- hooks (event.hook) ---- */
#define NF_HOOK_TC 1
#define NF_HOOK_CONNECT 2
#define NF_HOOK_SENDMSG 3
#define NF_HOOK_SKB 4
#define NF_HOOK_XDP 5

/* ---- stats indices (per-CPU u64 counters) ---- */
#define NF_STAT_ALLOWED 0
#define NF_STAT_BLOCKED 1
#define NF_STAT_DRY_RUN 2 /* would have been blocked (dry-run) */
#define NF_STAT_EVENTS_LOST 3
#define NF_STAT_IMPLICIT_ALLOWED 4 /* subset of ALLOWED: loopback, own DNS, ARP, NDP, DHCP */
#define NF_STAT_DNS_REDIRECTED 5
#define NF_STAT_SEVERED 6
#define NF_STAT_SEVER_FAILED 7
#define NF_STAT_REASON_BASE 8 /* + reason: blocked or would-block by reason */
#define NF_STAT_DNS_RATE_LIMITED 16 /* queries to the own DNS server dropped over its rate limit (not in BLOCKED) */
#define NF_STAT_COUNT 24 /* room for 7 more counters without resizing the pinned map */

#define NF_LAST_SEEN_REFRESH_NS 1000000000ULL
#define NF_NS_PER_SEC 1000000000ULL
/* CLOCK_MONOTONIC for allow deadlines: the coarse read where the program type has it (the
 * filters); iterators, which cannot call it, define NF_MONO_NS as bpf_ktime_get_ns first. */
#ifndef NF_MONO_NS
#define NF_MONO_NS() bpf_ktime_get_coarse_ns()
#endif
#define NF_NO_RULE 0xff

/* ---- layouts ---- */

/* config map value, 48 bytes */
struct nf_config {
	__u32 mode;          /* 0 */
	__u32 flags;         /* 4 */
	__u32 attachment_id; /* 8 */
	__u16 dns_port;      /* 12: host byte order; 0 = no own DNS server */
	__u16 _pad0;         /* 14 */
	__u8 dns_v4[4];      /* 16: all zero = none */
	__u8 dns_v6[16];     /* 20: all zero = none */
	__u8 _pad1[12];      /* 36 */
};

/* LPM keys: prefix length in bits, then the address in network order */
struct nf_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
}; /* 8 bytes */

struct nf_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
}; /* 20 bytes */

/*
 * The value of a rules trie entry, 16 bytes. One trie per family and attachment holds the allow
 * AND the deny list: one longest-prefix look-up decides. `lists` says which lists the prefix is
 * on; on both, deny wins (resolved when the entry is written, as "deny wins a tie" was).
 */
struct nf_rule {
	__u64 last_seen_ns;    /* 0: CLOCK_MONOTONIC (coarse) of the last packet/connect an allow let through, 0 = never */
	__u32 expires_s;       /* 8: allow: CLOCK_MONOTONIC seconds after which it no longer allows, 0 = never */
	__u8 prefix_len;       /* 12: must equal the key's prefix length */
	__u8 lists;            /* 13: NF_LIST_ALLOW | NF_LIST_DENY */
	__u8 shadow_deny_len;  /* 14: allow only: the longest shorter deny prefix holding this one, NF_NO_RULE none */
	__u8 _pad;             /* 15 */
};
#define NF_LIST_ALLOW 1
#define NF_LIST_DENY 2

/* tc_slots key, 8 bytes: which attachment a TC program judges for */
struct nf_tc_key {
	__u32 ifindex; /* 0: skb->ifindex, the device the program is attached to */
	__u32 dir;     /* 4: NF_DIR_INGRESS or NF_DIR_EGRESS */
};
#define NF_DIR_INGRESS 0
#define NF_DIR_EGRESS 1
#define NF_DIR_XDP 2 /* the XDP program, on the device's receive path */

/* cg_slot value (cgroup storage of the attach point), 8 bytes */
struct nf_cg_slot {
	__u32 slot; /* 0: 0 until the daemon writes it: slot 0 is never active (drop) */
	__u32 _pad;
};

/*
 * dns_limit map value, 24 bytes: the rate limit on what the workload sends to its own DNS
 * server (UDP datagrams and TCP SYNs), so that a flood is dropped here instead of reaching the
 * daemon's one event loop that serves every attachment's DNS. rate_qps and burst are written by
 * the daemon (0 = unlimited); tat_ns is the programs' state.
 *
 * A token bucket of `burst` tokens refilled at `rate_qps` a second, kept as GCRA's theoretical
 * arrival time (one u64 instead of tokens + last refill, with no fractional tokens to lose): a
 * query is let through when max(tat, now) + interval - now <= burst * interval, and then moves
 * tat to max(tat, now) + interval. A daemon write resets tat to 0: a full bucket.
 *
 * Concurrency: packets of one attachment are judged on several CPUs at once, so the read,
 * compare and write of tat hold bpf_spin_lock (exact, a few ns: only packets to the own DNS
 * server take it). Atomic adds alone cannot do it: moving tat up to `now` after an idle period
 * needs a compare-and-swap, which needs -mcpu=v3 objects (clang 14 defaults to v1).
 */
struct nf_dns_limit {
	struct bpf_spin_lock lock; /* 0: kernel only; user space reads zeroes, its writes skip it */
	__u32 rate_qps;            /* 4: queries a second; 0 = unlimited */
	__u32 burst;               /* 8: bucket size (queries); 0 with a rate counts as 1 */
	__u32 _pad;                /* 12 */
	__u64 tat_ns;              /* 16: bpf_ktime_get_ns of the bucket's theoretical arrival time */
};

/* ring buffer record, 56 bytes */
struct nf_event {
	__u64 ts_ns;          /* 0: bpf_ktime_get_ns */
	__u64 cgroup_id;      /* 8: 0 for TC */
	__u32 attachment_id;  /* 16 */
	__u32 pid;            /* 20: tgid for connect/sendmsg hooks, else 0 */
	__u8 dst_addr[16];    /* 24: IPv4 in the first 4 bytes */
	__u16 dst_port;       /* 40: host order, 0 when unknown */
	__u8 family;          /* 42: 4 or 6 (IPv4-mapped IPv6 reported as 4) */
	__u8 protocol;        /* 43 */
	__u8 reason;          /* 44 */
	__u8 hook;            /* 45 */
	__u8 flags;           /* 46: bit0 dry-run */
	__u8 mode;            /* 47 */
	__u8 rule_prefix_len; /* 48: prefix length of the deciding entry, 0xff none */
	__u8 _pad[7];         /* 49 */
};

/* what a hook extracted from the packet or socket address */
struct nf_flow {
	__u8 daddr[16];
	__u16 dport;     /* host order */
	__u8 family;     /* 4 or 6 */
	__u8 proto;
	__u8 l4;         /* 1: L4 header seen (ports/ICMP type valid); 0: non-first fragment */
	__u8 icmp_type;
	__u8 hop_limit;
	__u8 tcp_flags; /* TCP only, packet hooks only (TC, cgroup_skb): byte 13 of the header */
	__u32 slot;     /* the attachment judging it: index of its config, rules, counters, DNS limit */
};

struct nf_verdict {
	__u8 drop;
	__u8 reason;
	__u8 prefix_len;
	__u8 implicit;
};

/* Layout checks: src/manifest.test.ts reads these lines and compares them with LAYOUT. */
#define NF_ASSERT_SIZE(T, sz) _Static_assert(sizeof(struct T) == (sz), "size of " #T)
#define NF_ASSERT_OFF(T, f, off) _Static_assert(__builtin_offsetof(struct T, f) == (off), "offset of " #T "." #f)
NF_ASSERT_SIZE(nf_config, 48);
NF_ASSERT_OFF(nf_config, mode, 0);
NF_ASSERT_OFF(nf_config, flags, 4);
NF_ASSERT_OFF(nf_config, attachment_id, 8);
NF_ASSERT_OFF(nf_config, dns_port, 12);
NF_ASSERT_OFF(nf_config, dns_v4, 16);
NF_ASSERT_OFF(nf_config, dns_v6, 20);
NF_ASSERT_SIZE(nf_lpm_v4, 8);
NF_ASSERT_OFF(nf_lpm_v4, prefixlen, 0);
NF_ASSERT_OFF(nf_lpm_v4, addr, 4);
NF_ASSERT_SIZE(nf_lpm_v6, 20);
NF_ASSERT_OFF(nf_lpm_v6, prefixlen, 0);
NF_ASSERT_OFF(nf_lpm_v6, addr, 4);
NF_ASSERT_SIZE(nf_rule, 16);
NF_ASSERT_OFF(nf_rule, last_seen_ns, 0);
NF_ASSERT_OFF(nf_rule, expires_s, 8);
NF_ASSERT_OFF(nf_rule, prefix_len, 12);
NF_ASSERT_OFF(nf_rule, lists, 13);
NF_ASSERT_OFF(nf_rule, shadow_deny_len, 14);
NF_ASSERT_SIZE(nf_tc_key, 8);
NF_ASSERT_OFF(nf_tc_key, ifindex, 0);
NF_ASSERT_OFF(nf_tc_key, dir, 4);
NF_ASSERT_SIZE(nf_cg_slot, 8);
NF_ASSERT_OFF(nf_cg_slot, slot, 0);
NF_ASSERT_SIZE(nf_dns_limit, 24);
NF_ASSERT_OFF(nf_dns_limit, rate_qps, 4);
NF_ASSERT_OFF(nf_dns_limit, burst, 8);
NF_ASSERT_OFF(nf_dns_limit, tat_ns, 16);
NF_ASSERT_SIZE(nf_event, 56);
NF_ASSERT_OFF(nf_event, ts_ns, 0);
NF_ASSERT_OFF(nf_event, cgroup_id, 8);
NF_ASSERT_OFF(nf_event, attachment_id, 16);
NF_ASSERT_OFF(nf_event, pid, 20);
NF_ASSERT_OFF(nf_event, dst_addr, 24);
NF_ASSERT_OFF(nf_event, dst_port, 40);
NF_ASSERT_OFF(nf_event, family, 42);
NF_ASSERT_OFF(nf_event, protocol, 43);
NF_ASSERT_OFF(nf_event, reason, 44);
NF_ASSERT_OFF(nf_event, hook, 45);
NF_ASSERT_OFF(nf_event, flags, 46);
NF_ASSERT_OFF(nf_event, mode, 47);
NF_ASSERT_OFF(nf_event, rule_prefix_len, 48);

/*
 * ---- host-wide maps, shared by every program of every object ----
 *
 * One program set serves every attachment of the host: an attachment is a slot, and each map
 * below holds every slot's state. Sizes here are the defaults; the daemon sets them at load
 * (maps.max_attachments + 1: slot 0 is never used). Pinned once per host, reused by every load.
 */
#ifndef NF_MAX_SLOTS
#define NF_MAX_SLOTS 4097
#endif
#define NF_RULES_MAX 131072 /* inner template only: each attachment's tries are created by the daemon with its own size */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct nf_config);
} nf_config SEC(".maps");

/* Per attachment: one LPM trie per family (created by the daemon, put here at its slot). A map of
 * maps, not one host-wide trie keyed by slot + address: see README.md "Map layout" for the
 * figures; in short the per-packet cost is the same and the daemon can read, size and drop one
 * attachment's rules without walking everybody's. */
struct nf_rules_v4_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NF_RULES_MAX);
	/* sizes, not __type: clang emits only a forward declaration of a struct reached through
	 * the template alone, and libbpf needs the size */
	__uint(key_size, sizeof(struct nf_lpm_v4));
	__uint(value_size, sizeof(struct nf_rule));
};

struct nf_rules_v6_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NF_RULES_MAX);
	/* sizes, not __type: clang emits only a forward declaration of a struct reached through
	 * the template alone, and libbpf needs the size */
	__uint(key_size, sizeof(struct nf_lpm_v6));
	__uint(value_size, sizeof(struct nf_rule));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, __u32);
	__array(values, struct nf_rules_v4_inner);
} rules_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, __u32);
	__array(values, struct nf_rules_v6_inner);
} rules_v6 SEC(".maps");

/* per slot: its NF_STAT_COUNT counters in one per-CPU element (one look-up per count, and one
 * per-CPU allocation per slot: an element per counter made creating the map 45 ms at 4097 slots) */
struct nf_stats {
	__u64 c[NF_STAT_COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct nf_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct nf_dns_limit);
} dns_limit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* ---- helpers ---- */

/*
 * Keeps the map look-up just before it a call instruction of its own: clang merges identical
 * code at the end of the two branches of an if (tail merging), and merged the IPv4 and IPv6
 * trie look-ups of nf_decide into ONE `call bpf_map_lookup_elem` fed by either inner map. The
 * verifier records the map of each call instruction; a call that sees two maps (here the inner
 * maps of rules_v4 and rules_v6) is left as the generic helper, which reaches the trie through
 * map->ops, an indirect call (a retpoline on this kernel), instead of being rewritten into a
 * direct call of trie_lookup_elem. Measured (npm run bench conditions, BPF_PROG_TEST_RUN, TC and
 * cgroup_skb): 49 -> 42 / 38 ns a packet at 10 entries, 118 -> 107 ns at 100,000 entries
 * (1.28x -> 1.17x the reference). An empty asm statement with a distinct operand per site ends
 * each branch with a different instruction, so there is no common tail to merge;
 * test/kernel/build.test.ts checks the loaded programs call no map look-up through the helper.
 */
#define NF_OWN_CALL_SITE(ptr, site) asm volatile("" : "+r"(ptr) : "i"(site))

static __always_inline void nf_count(__u32 slot, __u32 idx)
{
	struct nf_stats *s = bpf_map_lookup_elem(&stats, &slot);
	if (s && idx < NF_STAT_COUNT)
		s->c[idx] += 1;
}

/* The slot's config, or NULL when the slot is not in use (the caller drops). */
static __always_inline struct nf_config *nf_slot_config(__u32 slot)
{
	struct nf_config *cfg = bpf_map_lookup_elem(&nf_config, &slot);
	if (!cfg || !(cfg->flags & NF_FLAG_ACTIVE))
		return NULL;
	return cfg;
}

static __always_inline int nf_v4_is_zero(const __u8 *a)
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

static __always_inline int nf_v6_is_zero(const __u8 *a)
{
	__u32 w[4];
	__builtin_memcpy(w, a, 16);
	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline int nf_eq4(const __u8 *a, const __u8 *b)
{
	__u32 x, y;
	__builtin_memcpy(&x, a, 4);
	__builtin_memcpy(&y, b, 4);
	return x == y;
}

static __always_inline int nf_eq16(const __u8 *a, const __u8 *b)
{
	__u32 x[4], y[4];
	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* ::ffff:a.b.c.d */
static __always_inline int nf_is_v4_mapped(const __u8 *a)
{
	__u32 w[3];
	__builtin_memcpy(w, a, 12);
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* IPv4-mapped IPv6 destinations are checked as IPv4. */
static __always_inline void nf_flow_set_v6(struct nf_flow *f, const __u8 *addr16)
{
	if (nf_is_v4_mapped(addr16)) {
		f->family = 4;
		__builtin_memset(f->daddr, 0, 16);
		__builtin_memcpy(f->daddr, addr16 + 12, 4);
	} else {
		f->family = 6;
		__builtin_memcpy(f->daddr, addr16, 16);
	}
}

/* Is the destination the attachment's own DNS server address (any port)? */
static __always_inline int nf_is_dns_addr(const struct nf_config *cfg, const struct nf_flow *f)
{
	if (cfg->dns_port == 0)
		return 0;
	if (f->family == 4)
		return !nf_v4_is_zero(cfg->dns_v4) && nf_eq4(f->daddr, cfg->dns_v4);
	return !nf_v6_is_zero(cfg->dns_v6) && nf_eq16(f->daddr, cfg->dns_v6);
}

static __always_inline int nf_is_tcp_udp(__u8 proto)
{
	return proto == NF_PROTO_TCP || proto == NF_PROTO_UDP;
}

/* nf_implicit_allow's answers (nf_verdict.implicit): which traffic is always allowed */
#define NF_IMPLICIT_NO 0
#define NF_IMPLICIT_YES 1
#define NF_IMPLICIT_DNS_QUERY 2 /* to the own DNS server's address and port: the DNS rate limit's business */

/* Traffic that is always allowed in every mode (the attachment must keep working): NF_IMPLICIT_*. */
static __always_inline int nf_implicit_allow(const struct nf_config *cfg, const struct nf_flow *f)
{
	const __u8 *d = f->daddr;

	if (f->family == 4) {
		if (d[0] == 127) /* loopback 127.0.0.0/8 */
			return 1;
		/* DHCPv4 client broadcast */
		if (f->l4 && f->proto == NF_PROTO_UDP && f->dport == 67 && (d[0] & d[1] & d[2] & d[3]) == 0xff)
			return 1;
	} else {
		__u32 w[4];
		__builtin_memcpy(w, d, 16);
		if (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1)) /* ::1 */
			return 1;
		/* DHCPv6 to All_DHCP_Relay_Agents_and_Servers ff02::1:2 */
		if (f->l4 && f->proto == NF_PROTO_UDP && f->dport == 547 && w[0] == bpf_htonl(0xff020000) && w[1] == 0 &&
		    w[2] == 0 && w[3] == bpf_htonl(0x00010002))
			return 1;
		if (f->l4 && f->proto == NF_PROTO_ICMPV6) {
			/* NDP (RS, RA, NS, NA, redirect) only with hop limit 255 and to a
			 * link-scoped destination (fe80::/10, ff02::/16): never routed. */
			if (f->icmp_type >= 133 && f->icmp_type <= 137 && f->hop_limit == 255 &&
			    ((d[0] == 0xfe && (d[1] & 0xc0) == 0x80) || (d[0] == 0xff && d[1] == 0x02)))
				return 1;
			/* MLDv2 report to ff02::16 */
			if (f->icmp_type == 143 && w[0] == bpf_htonl(0xff020000) && w[1] == 0 && w[2] == 0 &&
			    w[3] == bpf_htonl(0x16))
				return 1;
		}
	}
	if (nf_is_dns_addr(cfg, f)) {
		/* the attachment's own DNS server: its port over UDP and TCP; a
		 * non-first fragment (no ports) to its address is let through too,
		 * it cannot be reassembled without the first fragment the port rule judged */
		if (!f->l4)
			return NF_IMPLICIT_YES;
		if (nf_is_tcp_udp(f->proto) && f->dport == cfg->dns_port)
			return NF_IMPLICIT_DNS_QUERY;
	}
	return NF_IMPLICIT_NO;
}

/* DNS (53), DNS-over-TLS (tcp 853) and DNS-over-QUIC (udp 853) */
static __always_inline int nf_is_dns_port(const struct nf_flow *f)
{
	return f->l4 && nf_is_tcp_udp(f->proto) && (f->dport == 53 || f->dport == 853);
}

static __always_inline int nf_is_link_local(const struct nf_flow *f)
{
	if (f->family == 4)
		return f->daddr[0] == 169 && f->daddr[1] == 254;
	return f->daddr[0] == 0xfe && (f->daddr[1] & 0xc0) == 0x80;
}

/*
 * The decision. Pure apart from refreshing the allow entry's last-seen time
 * when `touch` is set and the allow entry let the traffic through.
 */
static __always_inline struct nf_verdict nf_decide(const struct nf_config *cfg, const struct nf_flow *f, int touch)
{
	struct nf_verdict v = { .drop = 0, .reason = NF_REASON_NONE, .prefix_len = NF_NO_RULE, .implicit = 0 };
	struct nf_rule *r = NULL;
	__u32 mode = cfg->mode;

	if (mode == NF_MODE_DISABLED)
		return v;
	if (mode > NF_MODE_BLOCK_ALL) {
		v.drop = 1;
		v.reason = NF_REASON_BAD_CONFIG;
		return v;
	}
	v.implicit = nf_implicit_allow(cfg, f);
	if (v.implicit)
		return v;
	if ((cfg->flags & NF_FLAG_DNS_FILTER) && nf_is_dns_port(f)) {
		v.drop = 1;
		v.reason = NF_REASON_DNS_BYPASS;
		return v;
	}
	if (mode == NF_MODE_BLOCK_ALL) {
		v.drop = 1;
		v.reason = NF_REASON_BLOCK_ALL;
		return v;
	}

	/* one look-up: the attachment's trie for the family, then the longest prefix in it.
	 * Each family's trie look-up must stay a call instruction of its own (NF_OWN_CALL_SITE). */
	__u32 slot = f->slot;
	void *trie;
	if (f->family == 4) {
		struct nf_lpm_v4 k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, f->daddr, 4);
		trie = bpf_map_lookup_elem(&rules_v4, &slot);
		if (trie)
			r = bpf_map_lookup_elem(trie, &k);
		NF_OWN_CALL_SITE(r, 4);
	} else {
		struct nf_lpm_v6 k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, f->daddr, 16);
		trie = bpf_map_lookup_elem(&rules_v6, &slot);
		if (trie)
			r = bpf_map_lookup_elem(trie, &k);
		NF_OWN_CALL_SITE(r, 6);
	}

	/* longest prefix across both lists wins, deny wins a tie (both bits on one entry) */
	int deny_wins = 0, allow_wins = 0;
	__u32 dlen = 0, alen = 0;
	__u64 now = 0; /* read once, only when an entry needs it (a deadline, a last-seen refresh) */
	if (r) {
		if (r->lists & NF_LIST_DENY) {
			deny_wins = 1;
			dlen = r->prefix_len;
		} else if (r->lists & NF_LIST_ALLOW) {
			/* A lapsed deadline (a CIDR TTL while the daemon is away to remove the entry) allows
			 * nothing: what decides is the longest deny holding it, recorded in the entry, else
			 * no entry at all (a shorter allow prefix is not looked for: fail closed). */
			if (r->expires_s && (now = NF_MONO_NS()) / NF_NS_PER_SEC >= r->expires_s) {
				if (r->shadow_deny_len != NF_NO_RULE) {
					deny_wins = 1;
					dlen = r->shadow_deny_len;
				}
			} else {
				allow_wins = 1;
				alen = r->prefix_len;
			}
		}
	}

	if (mode == NF_MODE_ALLOWLIST) {
		if (!allow_wins) {
			v.drop = 1;
			if (deny_wins) {
				v.reason = NF_REASON_DENY_CIDR;
				v.prefix_len = dlen;
			} else {
				v.reason = nf_is_link_local(f) ? NF_REASON_LINK_LOCAL : NF_REASON_NOT_ALLOWED;
			}
			return v;
		}
	} else { /* NF_MODE_DENYLIST */
		if (deny_wins) {
			v.drop = 1;
			v.reason = NF_REASON_DENY_CIDR;
			v.prefix_len = dlen;
			return v;
		}
	}
	if (allow_wins) {
		v.prefix_len = alen;
		if (touch && r) {
			if (!now)
				now = bpf_ktime_get_coarse_ns(); /* the filters' NF_MONO_NS: one clock */
			if (now - r->last_seen_ns > NF_LAST_SEEN_REFRESH_NS)
				r->last_seen_ns = now;
		}
	}
	return v;
}

static __always_inline void nf_emit(const struct nf_config *cfg, const struct nf_flow *f, const struct nf_verdict *v,
				    __u8 hook, __u8 dry, __u64 cgroup_id, __u32 pid)
{
	struct nf_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		nf_count(f->slot, NF_STAT_EVENTS_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup_id;
	e->attachment_id = cfg->attachment_id;
	e->pid = pid;
	__builtin_memcpy(e->dst_addr, f->daddr, 16);
	e->dst_port = f->l4 ? f->dport : 0;
	e->family = f->family;
	e->protocol = f->proto;
	e->reason = v->reason;
	e->hook = hook;
	e->flags = dry ? 1 : 0;
	e->mode = (__u8)cfg->mode;
	e->rule_prefix_len = v->prefix_len;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_ringbuf_submit(e, 0);
}

/*
 * Counts the verdict, reports drops, applies dry-run. Returns 1 when the
 * traffic must be dropped, 0 when it passes.
 */
static __always_inline int nf_finish(const struct nf_config *cfg, const struct nf_flow *f, const struct nf_verdict *v,
				     __u8 hook, __u64 cgroup_id, __u32 pid)
{
	if (!v->drop) {
		nf_count(f->slot, NF_STAT_ALLOWED);
		if (v->implicit)
			nf_count(f->slot, NF_STAT_IMPLICIT_ALLOWED);
		return 0;
	}
	__u8 dry = (cfg->flags & NF_FLAG_DRY_RUN) ? 1 : 0;
	nf_count(f->slot, dry ? NF_STAT_DRY_RUN : NF_STAT_BLOCKED);
	if (v->reason < NF_REASON_MAX)
		nf_count(f->slot, NF_STAT_REASON_BASE + v->reason);
	nf_emit(cfg, f, v, hook, dry, cgroup_id, pid);
	return dry ? 0 : 1;
}

#define NF_TCP_SYN 0x02
#define NF_TCP_ACK 0x10

/*
 * Is this query to the attachment's own DNS server (nf_decide's NF_IMPLICIT_DNS_QUERY: UDP or
 * TCP to its address and port, first fragment) over the rate limit? UDP datagrams and TCP SYNs
 * count (a new connection; its data is never cut, the connection caps of the server bound that).
 */
static __always_inline int nf_dns_over_limit(const struct nf_flow *f)
{
	if (f->proto == NF_PROTO_TCP && (f->tcp_flags & (NF_TCP_SYN | NF_TCP_ACK)) != NF_TCP_SYN)
		return 0;
	__u32 slot = f->slot;
	struct nf_dns_limit *l = bpf_map_lookup_elem(&dns_limit, &slot);
	if (!l)
		return 0;
	__u32 rate = l->rate_qps; /* read unlocked: a daemon write is one value either way */
	if (rate == 0)
		return 0;
	__u64 burst = l->burst ? l->burst : 1;
	__u64 interval = NF_NS_PER_SEC / rate; /* >= 1 for rates up to 1e9 */
	__u64 tolerance = burst * interval;
	__u64 now = bpf_ktime_get_ns(); /* no helper calls under the lock */
	int over;

	bpf_spin_lock(&l->lock);
	__u64 next = (l->tat_ns > now ? l->tat_ns : now) + interval;
	over = next - now > tolerance;
	if (!over)
		l->tat_ns = next;
	bpf_spin_unlock(&l->lock);
	return over;
}

/* what a hook knows before judging, in bits 8.. of nf_judge's hook_status */
#define NF_JUDGE_PARSED 0     /* the flow is filled in: decide it */
#define NF_JUDGE_UNPARSABLE 1 /* the packet could not be parsed: drop (fail closed) */
#define NF_JUDGE_IMPLICIT 2   /* allowed without a decision (ARP) */

/*
 * The verdict on a flow: decide, count, report, apply dry-run. Returns 1 when
 * the traffic must be dropped, 0 when it passes. hook_status = hook | status << 8.
 *
 * A global function, not inlined: the verifier checks it once per program
 * with its arguments unknown, instead of once for every parser path that
 * reaches it (IPv6 extension headers, VLAN tags), which made the egress and
 * TC programs slow to load. A NULL argument drops.
 */
__attribute__((noinline)) int nf_judge(const struct nf_config *cfg, const struct nf_flow *f, __u32 hook_status, __u64 cgroup_id,
				       __u32 pid)
{
	struct nf_verdict v = { .prefix_len = NF_NO_RULE };
	__u32 status = hook_status >> 8;

	if (!cfg || !f)
		return 1;
	if (status == NF_JUDGE_PARSED) {
		v = nf_decide(cfg, f, 1);
		/* the packet hooks (TC, cgroup_skb) see every datagram, connected or not, after a
		 * redirect: they charge the DNS rate limit, for queries to the own server (the rest
		 * never reaches the bucket or its map). In dry-run too: it
		 * protects the host, it is not policy. Counted, never reported (an event per dropped
		 * query would move the flood to the event ring). */
		__u8 hook = (__u8)hook_status;
		if (v.implicit == NF_IMPLICIT_DNS_QUERY && (hook == NF_HOOK_TC || hook == NF_HOOK_SKB || hook == NF_HOOK_XDP) && nf_dns_over_limit(f)) {
			nf_count(f->slot, NF_STAT_DNS_RATE_LIMITED);
			return 1;
		}
	} else if (status == NF_JUDGE_IMPLICIT) {
		v.implicit = NF_IMPLICIT_YES;
	} else {
		v.drop = 1;
		v.reason = NF_REASON_UNPARSABLE;
	}
	return nf_finish(cfg, f, &v, (__u8)hook_status, cgroup_id, pid);
}

/* ---- packet parsing (a packet at an IP header at `off`) ----
 * The parsers read through NF_LOAD_BYTES on a NF_PKT_CTX: the skb helpers by default (TC,
 * cgroup_skb); the XDP object defines both as the xdp_md ones before including this header.
 * Reading by copy, not by packet pointers, keeps one parser for linear and non-linear
 * buffers alike, and for both hooks. */
#ifndef NF_PKT_CTX
#define NF_PKT_CTX struct __sk_buff
#define NF_LOAD_BYTES bpf_skb_load_bytes
#endif

#define NF_PARSE_OK 0
#define NF_PARSE_FAIL 1

static __always_inline int nf_parse_l4(NF_PKT_CTX *skb, __u32 off, struct nf_flow *f)
{
	f->l4 = 1;
	if (f->proto == NF_PROTO_TCP) {
		__u8 th[14]; /* ports, sequence, acknowledgement, data offset, flags */
		if (NF_LOAD_BYTES(skb, off, th, sizeof(th)))
			return NF_PARSE_FAIL;
		f->dport = ((__u16)th[2] << 8) | th[3];
		f->tcp_flags = th[13];
	} else if (f->proto == NF_PROTO_UDP) {
		__be16 ports[2];
		if (NF_LOAD_BYTES(skb, off, ports, 4))
			return NF_PARSE_FAIL;
		f->dport = bpf_ntohs(ports[1]);
	} else if (f->proto == NF_PROTO_ICMP || f->proto == NF_PROTO_ICMPV6) {
		__u8 type;
		if (NF_LOAD_BYTES(skb, off, &type, 1))
			return NF_PARSE_FAIL;
		f->icmp_type = type;
	}
	return NF_PARSE_OK;
}

static __always_inline int nf_parse_ipv4(NF_PKT_CTX *skb, __u32 off, struct nf_flow *f)
{
	struct iphdr ip;
	if (NF_LOAD_BYTES(skb, off, &ip, sizeof(ip)))
		return NF_PARSE_FAIL;
	if (ip.version != 4 || ip.ihl < 5)
		return NF_PARSE_FAIL;
	__u32 hlen = ip.ihl * 4;
	if (bpf_ntohs(ip.tot_len) < hlen)
		return NF_PARSE_FAIL;
	f->family = 4;
	__builtin_memset(f->daddr, 0, 16);
	__builtin_memcpy(f->daddr, &ip.daddr, 4);
	f->proto = ip.protocol;
	f->hop_limit = ip.ttl;
	if (bpf_ntohs(ip.frag_off) & 0x1fff) {
		/* non-first fragment: no L4 header, decide by address only */
		f->l4 = 0;
		return NF_PARSE_OK;
	}
	return nf_parse_l4(skb, off + hlen, f);
}

#define NF_MAX_EXT_HEADERS 8

static __always_inline int nf_parse_ipv6(NF_PKT_CTX *skb, __u32 off, struct nf_flow *f)
{
	struct ipv6hdr ip6;
	if (NF_LOAD_BYTES(skb, off, &ip6, sizeof(ip6)))
		return NF_PARSE_FAIL;
	if (ip6.version != 6)
		return NF_PARSE_FAIL;
	nf_flow_set_v6(f, (const __u8 *)&ip6.daddr);
	f->hop_limit = ip6.hop_limit;
	__u8 nh = ip6.nexthdr;
	off += sizeof(ip6);

	for (int i = 0; i < NF_MAX_EXT_HEADERS; i++) {
		__u8 h[8];
		switch (nh) {
		case NF_NEXTHDR_HOP:
		case NF_NEXTHDR_DEST:
			if (NF_LOAD_BYTES(skb, off, h, 2))
				return NF_PARSE_FAIL;
			nh = h[0];
			off += ((__u32)h[1] + 1) * 8;
			break;
		case NF_NEXTHDR_ROUTING:
			if (NF_LOAD_BYTES(skb, off, h, 4))
				return NF_PARSE_FAIL;
			/* segments left: the header's destination is not the final one */
			if (h[3] != 0)
				return NF_PARSE_FAIL;
			nh = h[0];
			off += ((__u32)h[1] + 1) * 8;
			break;
		case NF_NEXTHDR_FRAGMENT:
			if (NF_LOAD_BYTES(skb, off, h, 8))
				return NF_PARSE_FAIL;
			nh = h[0];
			if (((((__u16)h[2]) << 8) | h[3]) & 0xfff8) {
				/* non-first fragment: no L4 header */
				f->proto = nh;
				f->l4 = 0;
				return NF_PARSE_OK;
			}
			off += 8;
			break;
		case NF_NEXTHDR_AUTH:
			if (NF_LOAD_BYTES(skb, off, h, 2))
				return NF_PARSE_FAIL;
			nh = h[0];
			off += ((__u32)h[1] + 2) * 4;
			break;
		default:
			f->proto = nh;
			return nf_parse_l4(skb, off, f);
		}
	}
	return NF_PARSE_FAIL; /* too many extension headers */
}

/*
 * The fast path of the parsers: the common packet (IPv4 without options and not a fragment, or
 * IPv6 whose next header is TCP, UDP or ICMPv6) with its headers in the linear part, read in
 * place instead of copied out with a helper call per header. Anything else returns
 * NF_PARSE_SLOW and the general parsers above run from the start, giving the answer they always
 * gave (a fast answer is only ever one they would give too: same fields, same checks).
 */
#define NF_PARSE_SLOW 3

static __always_inline int nf_fast_l4(const __u8 *l4, const void *end, struct nf_flow *f)
{
	if (f->proto == NF_PROTO_TCP) {
		if ((const void *)(l4 + 14) > end)
			return NF_PARSE_SLOW;
		f->dport = ((__u16)l4[2] << 8) | l4[3];
		f->tcp_flags = l4[13];
	} else if (f->proto == NF_PROTO_UDP) {
		if ((const void *)(l4 + 4) > end)
			return NF_PARSE_SLOW;
		f->dport = ((__u16)l4[2] << 8) | l4[3];
	} else if (f->proto == NF_PROTO_ICMP || f->proto == NF_PROTO_ICMPV6) {
		if ((const void *)(l4 + 1) > end)
			return NF_PARSE_SLOW;
		f->icmp_type = l4[0];
	}
	f->l4 = 1;
	return NF_PARSE_OK;
}

/* `version`: what the link layer says (4 or 6; a disagreeing header goes the general way, which
 * refuses it), or 0 where the version nibble alone decides (cgroup_skb). */
static __always_inline int nf_fast_ip(const __u8 *ip, const void *end, struct nf_flow *f, __u8 version)
{
	if ((const void *)(ip + 20) > end)
		return NF_PARSE_SLOW;
	__u8 v = ip[0] >> 4;
	if (version && v != version)
		return NF_PARSE_SLOW;
	if (v == 6) {
		if ((const void *)(ip + 40) > end)
			return NF_PARSE_SLOW;
		__u8 nh = ip[6];
		if (nh != NF_PROTO_TCP && nh != NF_PROTO_UDP && nh != NF_PROTO_ICMPV6)
			return NF_PARSE_SLOW;
		nf_flow_set_v6(f, ip + 24);
		f->hop_limit = ip[7];
		f->proto = nh;
		return nf_fast_l4(ip + 40, end, f);
	}
	if (ip[0] != 0x45) /* not IPv4, or IPv4 with options: the general parser */
		return NF_PARSE_SLOW;
	if ((((__u16)ip[2] << 8) | ip[3]) < 20 || ((((__u16)ip[6] << 8) | ip[7]) & 0x1fff))
		return NF_PARSE_SLOW; /* a bad total length (it fails there) or a non-first fragment */
	f->family = 4;
	__builtin_memset(f->daddr, 0, 16);
	__builtin_memcpy(f->daddr, ip + 16, 4);
	f->proto = ip[9];
	f->hop_limit = ip[8];
	return nf_fast_l4(ip + 20, end, f);
}

#endif /* NETFENCE_COMMON_H */
