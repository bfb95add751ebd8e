import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { koffi } from './koffi';
import { INFO_OFFSETS, LINK_UNION_OFFSETS } from './obj-info';
import { offsetOf, sizeOf, structs, type StructTypes } from './structs';

// gcc compiles test/fixtures/struct-layout.c against the installed libbpf-dev and uapi headers
// and prints the real sizes/offsets; every struct we build by hand must match them.
function gccLayout(): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'nf-layout-'));
  try {
    const exe = join(dir, 'layout');
    execFileSync('gcc', ['-O0', '-o', exe, join(__dirname, '../test/fixtures/struct-layout.c')], { stdio: 'pipe' });
    return JSON.parse(execFileSync(exe, { encoding: 'utf8' })) as Record<string, number>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const gcc = gccLayout();

const fields: Record<keyof StructTypes, string[]> = {
  bpf_tc_hook: ['sz', 'ifindex', 'attach_point', 'parent'],
  bpf_tc_opts: ['sz', 'prog_fd', 'flags', 'prog_id', 'handle', 'priority'],
  bpf_link_create_opts: ['sz', 'flags', 'iter_info', 'iter_info_len', 'target_btf_id'],
  bpf_test_run_opts: [
    'sz', 'data_in', 'data_out', 'data_size_in', 'data_size_out', 'ctx_in', 'ctx_out', 'ctx_size_in',
    'ctx_size_out', 'retval', 'repeat', 'duration', 'flags', 'cpu', 'batch_size',
  ],
  bpf_map_batch_opts: ['sz', 'elem_flags', 'flags'],
  bpf_map_create_opts: [
    'sz', 'btf_fd', 'btf_key_type_id', 'btf_value_type_id', 'btf_vmlinux_value_type_id', 'inner_map_fd', 'map_flags',
    'map_extra', 'numa_node', 'map_ifindex',
  ],
  bpf_link_update_opts: ['sz', 'flags', 'old_prog_fd'],
};

describe('struct layouts match gcc', () => {
  test.each(Object.keys(fields) as (keyof StructTypes)[])('%s size and offsets', (name) => {
    expect(sizeOf(name)).toBe(gcc[name]);
    expect(koffi.sizeof(structs()[name])).toBe(gcc[name]);
    for (const f of fields[name]) expect([f, offsetOf(name, f)]).toEqual([f, gcc[`${name}.${f}`]]);
  });

  test('the STACK-FACTS sizes hold (24/32/64), test_run_opts is 80, map_create_opts 48, link_update_opts 16', () => {
    expect([sizeOf('bpf_tc_hook'), sizeOf('bpf_tc_opts'), sizeOf('bpf_link_create_opts'), sizeOf('bpf_test_run_opts')]).toEqual([24, 32, 64, 80]);
    expect([sizeOf('bpf_map_create_opts'), sizeOf('bpf_link_update_opts')]).toEqual([48, 16]);
    expect(offsetOf('bpf_link_create_opts', 'u')).toBe(gcc['bpf_link_create_opts.kprobe_multi']);
  });

  test('bpf_*_info offsets', () => {
    for (const [k, v] of Object.entries(INFO_OFFSETS.map)) expect([k, v]).toEqual([k, gcc[`bpf_map_info.${k}`]]);
    for (const [k, v] of Object.entries(INFO_OFFSETS.prog)) expect([k, v]).toEqual([k, gcc[`bpf_prog_info.${k}`]]);
    for (const [k, v] of Object.entries(INFO_OFFSETS.link)) expect([k, v]).toEqual([k, gcc[`bpf_link_info.${k}`]]);
    for (const [k, v] of Object.entries(LINK_UNION_OFFSETS.cgroup)) expect([k, v]).toEqual([k, gcc[`bpf_link_info.cgroup.${k}`]]);
  });
});
