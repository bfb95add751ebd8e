// @netfence/bpf-programs: the netfence eBPF objects (bpf/*.bpf.o, built from
// src/*.bpf.c) and their typed manifest. The daemon uses only these names and
// layouts, never strings typed at call sites.

export { BpfProgramsError, BPF_PROGRAMS_ERROR_CODES } from './bpf-programs-error';
export type { BpfProgramsErrorCode } from './bpf-programs-error';

export {
  OBJECTS,
  HOST_MAPS,
  TC_ONLY_MAPS,
  DEV_SLOTS_MAX,
  CGROUP_ONLY_MAPS,
  RULE_TRIES,
  DEFAULT_SLOTS,
  MAX_SLOTS,
  CGROUP_ATTACHED_PROGRAMS,
  CGROUP_ATTACH_ORDER,
  TC_PROGRAM_BY_DIRECTION,
  RULE_LIST,
  TC_DIR,
  hostPinnedMaps,
  FIXED_SLOT,
  fixedSlotCgroupObjectPath,
  SEVER_PROGRAMS,
  SEVER_SHARED_MAPS,
  BPF_MAP_TYPE,
  BPF_ATTACH_TYPE,
  BPF_F_NO_PREALLOC,
  MODE,
  CONFIG_FLAG,
  REASON,
  HOOK,
  STATS,
  TC_RETURN,
  LAST_SEEN_REFRESH_NS,
  NO_RULE,
  isTcDrop,
  objectPath,
  objectDir,
  packageDir,
  mapSizes,
} from './manifest';
export type { ObjectName, HostMapKey, ProgramManifest, MapManifest, AttachPoint, ModeName, ModeValue, ReasonName, HookName } from './manifest';

export {
  LAYOUT,
  CODECS,
  encodeConfig,
  decodeConfig,
  INACTIVE_CONFIG,
  encodeLpmKeyV4,
  encodeLpmKeyV6,
  decodeLpmKey,
  encodeRule,
  decodeRule,
  ruleKey,
  encodeTcKey,
  decodeTcKey,
  encodeDevSlots,
  decodeDevSlots,
  devBinding,
  encodeSlot,
  decodeSlot,
  lastSeenAgeMs,
  decodeEvent,
  decodeStats,
  sumPerCpuStats,
  encodeSeverConfig,
  decodeSeverConfig,
  encodeDnsLimit,
  decodeDnsLimit,
} from './layouts';
export type { DnsRateLimit, AttachmentConfig, RuleValue, RuleKey, DevSlots, NetfenceEvent, NetfenceStats, SeverTarget, LayoutCodec } from './layouts';

export { parseIp, parsePrefix, formatIp, formatPrefix, isV4Mapped } from './ip-address';
export type { IpBytes, IpPrefix } from './ip-address';
