// Bench-only object: the two LPM trie maps an allow list lives in, so the
// bench's onResolved hook does a real kernel map write per answer address.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct lpm_v4 { __u32 prefixlen; __u8 addr[4]; };
struct lpm_v6 { __u32 prefixlen; __u8 addr[16]; };

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 1 << 20);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct lpm_v4);
  __type(value, __u64);
} allow_v4 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 1 << 20);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct lpm_v6);
  __type(value, __u64);
} allow_v6 SEC(".maps");

char LICENSE[] SEC("license") = "GPL";
