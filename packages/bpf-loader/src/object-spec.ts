import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { BpfError, errnoName } from './errors';
import { captureLibbpfLog, getLibbpf, lastErrno, type Libbpf } from './libbpf';
import type { MapSpec, ObjectSpec, ProgramSpec } from './types';

/** An opened (not loaded) bpf_object; the caller must closeObject it. */
export interface OpenedObject {
  readonly ptr: unknown;
  readonly log: string;
}

export function openObject(path: string): OpenedObject {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new BpfError('BPF_ERR_NOT_FOUND', `object file ${abs} does not exist`, { errno: 2 });
  const lib = getLibbpf();
  const { result, log } = captureLibbpfLog(() => {
    const ptr: unknown = lib.bpf_object__open_file(abs, null);
    return { ptr, errno: ptr === null ? lastErrno() : 0 };
  });
  if (result.ptr === null) {
    throw new BpfError('BPF_ERR_LOAD', `bpf_object__open_file(${abs}): ${errnoName(result.errno)}${log ? `\n${log}` : ''}`, {
      errno: result.errno,
      libbpfLog: log,
    });
  }
  return { ptr: result.ptr, log };
}

export function* objectPrograms(lib: Libbpf, obj: unknown): Generator<unknown> {
  for (let p: unknown = lib.bpf_object__next_program(obj, null); p !== null; p = lib.bpf_object__next_program(obj, p)) yield p;
}

export function* objectMaps(lib: Libbpf, obj: unknown): Generator<unknown> {
  for (let m: unknown = lib.bpf_object__next_map(obj, null); m !== null; m = lib.bpf_object__next_map(obj, m)) yield m;
}

export function programSpecOf(lib: Libbpf, p: unknown): ProgramSpec {
  return {
    name: lib.bpf_program__name(p) as string,
    section: lib.bpf_program__section_name(p) as string,
    type: lib.bpf_program__type(p) as number,
    expectedAttachType: lib.bpf_program__expected_attach_type(p) as number,
  };
}

export function mapSpecOf(lib: Libbpf, m: unknown): MapSpec {
  return {
    name: lib.bpf_map__name(m) as string,
    type: lib.bpf_map__type(m) as number,
    keySize: lib.bpf_map__key_size(m) as number,
    valueSize: lib.bpf_map__value_size(m) as number,
    maxEntries: lib.bpf_map__max_entries(m) as number,
    flags: lib.bpf_map__map_flags(m) as number,
  };
}

/**
 * Reads an object file's programs and maps without touching the kernel
 * (bpf_object__open_file + iteration, then bpf_object__close). Returns plain data.
 */
export function readObjectSpec(path: string): ObjectSpec {
  const lib = getLibbpf();
  const { ptr } = openObject(path);
  try {
    return {
      path: resolve(path),
      programs: Array.from(objectPrograms(lib, ptr), (p) => programSpecOf(lib, p)),
      maps: Array.from(objectMaps(lib, ptr), (m) => mapSpecOf(lib, m)),
    };
  } finally {
    lib.bpf_object__close(ptr);
  }
}
