import { addressOf, getLibbpf, check } from './libbpf';
import type { LinkInfo, MapInfo, ProgramInfo } from './types';

// Offsets in struct bpf_map_info / bpf_prog_info / bpf_link_info (linux/bpf.h), checked
// against gcc in struct-layout.test.ts.
export const INFO_OFFSETS = {
  map: { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 },
  prog: { type: 0, id: 4, tag: 8, nr_map_ids: 52, map_ids: 56, name: 64 },
  link: { type: 0, id: 4, prog_id: 8 },
} as const;

// bpf_link_info union members we read. cgroup is checked against gcc (6.1 uapi header); the
// tcx member is newer than that header: offsets from the kernel's BTF
// (`struct { __u32 ifindex; __u32 attach_type; } tcx` at the union, offset 16), and a
// kernel test checks what they read against the veth's ifindex and the TCX attach type.
// xdp: `struct { __u32 ifindex; } xdp` at the union (offset 16); checked the same way.
export const LINK_UNION_OFFSETS = {
  cgroup: { cgroup_id: 16, attach_type: 24 },
  tcx: { ifindex: 16, attach_type: 20 },
  xdp: { ifindex: 16 },
} as const;

/** bpf_link_type values whose union member we decode. */
export const LinkType = { CGROUP: 3, XDP: 6, TCX: 11 } as const;
const BPF_XDP = 37;

const INFO_BUF_SIZE = 256;
const infoBuf = Buffer.alloc(INFO_BUF_SIZE);
const lenBuf = Buffer.alloc(4);

/** bpf_obj_get_info_by_fd into the shared buffer; `prepare` may set input fields first. */
function objInfo(fd: number, what: string, prepare?: (b: Buffer) => void): Buffer {
  infoBuf.fill(0);
  prepare?.(infoBuf);
  lenBuf.writeUInt32LE(INFO_BUF_SIZE, 0);
  check(getLibbpf().bpf_obj_get_info_by_fd(fd, infoBuf, lenBuf) as number, `bpf_obj_get_info_by_fd(${what})`);
  return infoBuf;
}

function cString(buf: Buffer, offset: number, max: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, end < 0 || end > offset + max ? offset + max : end);
}

export function queryMapInfo(fd: number): MapInfo {
  const b = objInfo(fd, 'map');
  const o = INFO_OFFSETS.map;
  return {
    type: b.readUInt32LE(o.type),
    id: b.readUInt32LE(o.id),
    keySize: b.readUInt32LE(o.key_size),
    valueSize: b.readUInt32LE(o.value_size),
    maxEntries: b.readUInt32LE(o.max_entries),
    flags: b.readUInt32LE(o.map_flags),
    name: cString(b, o.name, 16),
  };
}

export function queryProgramInfo(fd: number): ProgramInfo {
  const b = objInfo(fd, 'program');
  const o = INFO_OFFSETS.prog;
  const info = {
    type: b.readUInt32LE(o.type),
    id: b.readUInt32LE(o.id),
    name: cString(b, o.name, 16),
    tag: b.toString('hex', o.tag, o.tag + 8),
  };
  const nrMaps = b.readUInt32LE(o.nr_map_ids);
  return { ...info, mapIds: nrMaps === 0 ? [] : programMapIds(fd, nrMaps) };
}

/** The ids of the maps a program uses (a second info call with a map_ids buffer of `n` slots). */
function programMapIds(fd: number, n: number): number[] {
  const o = INFO_OFFSETS.prog;
  const ids = Buffer.alloc(n * 4);
  const b = objInfo(fd, 'program maps', (info) => {
    info.writeUInt32LE(n, o.nr_map_ids);
    info.writeBigUInt64LE(addressOf(ids), o.map_ids);
  });
  // A program's maps are fixed at load, so the kernel's count cannot have grown since.
  const count = Math.min(n, b.readUInt32LE(o.nr_map_ids));
  return Array.from({ length: count }, (_, i) => ids.readUInt32LE(i * 4));
}

export function queryLinkInfo(fd: number): LinkInfo {
  const b = objInfo(fd, 'link');
  const o = INFO_OFFSETS.link;
  const info = { type: b.readUInt32LE(o.type), id: b.readUInt32LE(o.id), progId: b.readUInt32LE(o.prog_id) };
  if (info.type === LinkType.CGROUP) {
    const c = LINK_UNION_OFFSETS.cgroup;
    return { ...info, cgroupId: b.readBigUInt64LE(c.cgroup_id), attachType: b.readUInt32LE(c.attach_type) };
  }
  if (info.type === LinkType.TCX) {
    const t = LINK_UNION_OFFSETS.tcx;
    return { ...info, ifindex: b.readUInt32LE(t.ifindex), attachType: b.readUInt32LE(t.attach_type) };
  }
  if (info.type === LinkType.XDP) return { ...info, ifindex: b.readUInt32LE(LINK_UNION_OFFSETS.xdp.ifindex), attachType: BPF_XDP };
  return info;
}
