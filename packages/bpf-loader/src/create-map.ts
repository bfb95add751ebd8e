import { BpfError } from './errors';
import { mapTypeName } from './constants';
import { fromOwnedFd } from './bpf-map';
import { getLibbpf } from './libbpf';
import { offsetOf, sizeOf } from './structs';
import type { BpfMap, CreateMapSpec } from './types';

// The kernel keeps BPF_OBJ_NAME_LEN - 1 = 15 characters of [A-Za-z0-9_.] and refuses others
// (EINVAL); libbpf 1.1 would cut a longer name silently.
const MAP_NAME = /^[A-Za-z0-9_.]{0,15}$/;

function checkU32(spec: CreateMapSpec, field: 'type' | 'keySize' | 'valueSize' | 'maxEntries' | 'flags'): number {
  const v = spec[field] ?? 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `createMap '${spec.name}': ${field} must be an integer in [0, 2^32), got ${String(v)}`);
  }
  return v;
}

/** bpf_map_create_opts with `sz` = the struct size of the installed libbpf (48 bytes in 1.1). */
function createOpts(flags: number, innerFd: number | undefined): Buffer {
  const o = Buffer.alloc(sizeOf('bpf_map_create_opts'));
  o.writeBigUInt64LE(BigInt(o.length), offsetOf('bpf_map_create_opts', 'sz'));
  o.writeUInt32LE(flags, offsetOf('bpf_map_create_opts', 'map_flags'));
  if (innerFd !== undefined) o.writeUInt32LE(innerFd, offsetOf('bpf_map_create_opts', 'inner_map_fd'));
  return o;
}

function describe(spec: CreateMapSpec): string {
  const flags = spec.flags ? `, flags 0x${spec.flags.toString(16)}` : '';
  const inner = spec.innerMap ? `, inner map '${spec.innerMap.name}'` : '';
  return `${mapTypeName(spec.type)} '${spec.name}' (key ${spec.keySize}, value ${spec.valueSize}, max_entries ${spec.maxEntries}${flags}${inner})`;
}

/**
 * Creates a map from user space with bpf_map_create (no object file). `innerMap` is the
 * template of an ARRAY_OF_MAPS / HASH_OF_MAPS map (its fd goes in inner_map_fd; valueSize must
 * then be 4). The caller owns the result: pin it to keep it past close(). The kernel's refusal
 * (bad sizes for the type, flags, name) is a BpfError naming the map and its shape.
 */
export function createMap(spec: CreateMapSpec): BpfMap {
  if (typeof spec.name !== 'string' || !MAP_NAME.test(spec.name)) {
    throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `createMap: map name ${JSON.stringify(spec.name)} must be at most 15 characters of [A-Za-z0-9_.]`);
  }
  const type = checkU32(spec, 'type');
  const keySize = checkU32(spec, 'keySize');
  const valueSize = checkU32(spec, 'valueSize');
  const maxEntries = checkU32(spec, 'maxEntries');
  const flags = checkU32(spec, 'flags');
  const inner = spec.innerMap;
  if (inner?.closed) throw new BpfError('BPF_ERR_CLOSED', `createMap '${spec.name}': inner map '${inner.name}' is closed`);
  const opts = createOpts(flags, inner?.fd);
  const fd = getLibbpf().bpf_map_create(type, spec.name, keySize, valueSize, maxEntries, opts) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_map_create(${describe(spec)})`);
  return fromOwnedFd(fd, undefined, `map '${spec.name}'`);
}
