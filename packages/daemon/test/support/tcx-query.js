// Prints the ids of the programs attached to an interface's TCX hook, as JSON. Run it inside
// the interface's network namespace (nsenter --net): the kernel resolves the ifindex there.
// bpftool 7.1 cannot list TCX attachments per device, so this asks BPF_PROG_QUERY directly.
'use strict';
const { execFileSync } = require('node:child_process');
const koffi = require('koffi');
const [ifname, direction] = process.argv.slice(2);
const ifindex = JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'dev', ifname], { encoding: 'utf8' }))[0].ifindex;
const lib = koffi.load('libbpf.so.1');
const query = lib.func('int bpf_prog_query(int target_fd, int type, uint32_t query_flags, void *attach_flags, void *prog_ids, void *prog_cnt)');
const flags = Buffer.alloc(4);
const ids = Buffer.alloc(4 * 64);
const cnt = Buffer.alloc(4);
cnt.writeUInt32LE(64, 0);
const BPF_TCX_INGRESS = 46;
const BPF_TCX_EGRESS = 47;
const r = query(ifindex, direction === 'egress' ? BPF_TCX_EGRESS : BPF_TCX_INGRESS, 0, flags, ids, cnt);
if (r < 0) {
  process.stderr.write(`bpf_prog_query: ${r}\n`);
  process.exit(1);
}
const n = cnt.readUInt32LE(0);
process.stdout.write(JSON.stringify(Array.from({ length: n }, (_, i) => ids.readUInt32LE(4 * i))) + '\n');
