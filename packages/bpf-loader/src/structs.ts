/**
 * koffi mirrors of the libbpf 1.1 option structs we pass. We never let koffi marshal them:
 * we fill Buffers at these offsets. struct-layout.test.ts checks every size and offset
 * against what gcc prints for the real headers.
 */
import { koffi, type TypeObject } from './koffi';

let defined: StructTypes | undefined;

export interface StructTypes {
  bpf_tc_hook: TypeObject;
  bpf_tc_opts: TypeObject;
  bpf_link_create_opts: TypeObject;
  bpf_test_run_opts: TypeObject;
  bpf_map_batch_opts: TypeObject;
  bpf_map_create_opts: TypeObject;
  bpf_link_update_opts: TypeObject;
}

export function structs(): StructTypes {
  if (defined) return defined;
  const bpf_tc_hook = koffi.struct({
    sz: 'size_t',
    ifindex: 'int',
    attach_point: 'int',
    parent: 'uint32_t',
  });
  const bpf_tc_opts = koffi.struct({
    sz: 'size_t',
    prog_fd: 'int',
    flags: 'uint32_t',
    prog_id: 'uint32_t',
    handle: 'uint32_t',
    priority: 'uint32_t',
  });
  const kprobeMulti = koffi.struct({
    flags: 'uint32_t',
    cnt: 'uint32_t',
    syms: 'void *',
    addrs: 'void *',
    cookies: 'void *',
  });
  const linkUnion = koffi.union({
    perf_event_bpf_cookie: 'uint64_t',
    kprobe_multi: kprobeMulti,
    tracing_cookie: 'uint64_t',
  });
  const bpf_link_create_opts = koffi.struct({
    sz: 'size_t',
    flags: 'uint32_t',
    iter_info: 'void *',
    iter_info_len: 'uint32_t',
    target_btf_id: 'uint32_t',
    u: linkUnion,
  });
  const bpf_test_run_opts = koffi.struct({
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  });
  const bpf_map_batch_opts = koffi.struct({
    sz: 'size_t',
    elem_flags: 'uint64_t',
    flags: 'uint64_t',
  });
  const bpf_map_create_opts = koffi.struct({
    sz: 'size_t',
    btf_fd: 'uint32_t',
    btf_key_type_id: 'uint32_t',
    btf_value_type_id: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t',
    inner_map_fd: 'uint32_t',
    map_flags: 'uint32_t',
    map_extra: 'uint64_t',
    numa_node: 'uint32_t',
    map_ifindex: 'uint32_t',
  });
  const bpf_link_update_opts = koffi.struct({
    sz: 'size_t',
    flags: 'uint32_t',
    old_prog_fd: 'uint32_t',
  });
  defined = { bpf_tc_hook, bpf_tc_opts, bpf_link_create_opts, bpf_test_run_opts, bpf_map_batch_opts, bpf_map_create_opts, bpf_link_update_opts };
  return defined;
}

/** sizeof (natural alignment already rounds up to 8 like the C `size_t :0`). */
export function sizeOf(name: keyof StructTypes): number {
  return koffi.sizeof(structs()[name]);
}

export function offsetOf(name: keyof StructTypes, field: string): number {
  return koffi.offsetof(structs()[name], field);
}
