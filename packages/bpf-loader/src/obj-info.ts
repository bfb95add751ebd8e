import { getLibbpf, check } from './libbpf';
import type { LinkInfo, MapInfo, ProgramInfo } from './types';

// Offsets in struct bpf_map_info / bpf_prog_info / bpf_link_info (linux/bpf.h), checked
// against gcc in struct-layout.test.ts.
export const INFO_OFFSETS = {
  map: { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 },
  prog: { type: 0, id: 4, name: 64 },
  link: { type: 0, id: 4, prog_id: 8 },
} as const;

const INFO_BUF_SIZE = 256;
const infoBuf = Buffer.alloc(INFO_BUF_SIZE);
const lenBuf = Buffer.alloc(4);

function objInfo(fd: number, what: string): Buffer {
  infoBuf.fill(0);
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
  return { type: b.readUInt32LE(o.type), id: b.readUInt32LE(o.id), name: cString(b, o.name, 16) };
}

export function queryLinkInfo(fd: number): LinkInfo {
  const b = objInfo(fd, 'link');
  const o = INFO_OFFSETS.link;
  return { type: b.readUInt32LE(o.type), id: b.readUInt32LE(o.id), progId: b.readUInt32LE(o.prog_id) };
}
