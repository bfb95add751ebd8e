// `npm run bench:auto -w @netfence/daemon`: how long an interface waits for its auto attach. In a
// lab, the built netfenced with one rule (`interface: nf<lab>x*`, embedded control plane); then:
//  1. 200 links created one at a time: from the moment `ip link add` returns to the attachment
//     being listed (GetStatus's attachment count, polled back to back: it costs the same at any
//     count, unlike List), and to its filter being in the kernel (the record's attachedAt, taken
//     just before the synchronous kernel attach; whole milliseconds);
//  2. 200 links at once (ip -batch) and 200 cgroups at once (mkdir): until all are listed.
// Prints figures, asserts nothing (targets are printed beside them). Run under the kernel lock.

import { mkdirSync, rmdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createDaemonLab, startDaemon, writeDaemonConfig, type DaemonProcess } from '../test/support/daemon-lab';
import { exitWith, pct } from './lab-run';

const N = 200;
const TARGET_P99_MS = 20;

const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;

async function countIs(d: DaemonProcess, n: number, limitMs: number): Promise<number> {
  const t0 = performance.now();
  while ((await d.api.status()).attachment_count < n) if (performance.now() - t0 > limitMs) throw new Error(`fewer than ${n} attachments after ${limitMs} ms`);
  return performance.now();
}

async function main(): Promise<void> {
  const dl = await createDaemonLab();
  let d: DaemonProcess | undefined;
  try {
    const P = `nf${dl.lab.id}`;
    const jobs = dl.cgroup('jobs').path;
    d = await startDaemon(
      dl,
      writeDaemonConfig(dl, 'bench-auto', { log_level: 'warn', auto_attach: [{ interface: `${P}x*`, metadata: { vm: '{name}' } }, { cgroup: `${jobs}/nfj*`, metadata: { job: '{basename}' } }] }),
    );
    // 1. One at a time.
    const listed: number[] = [];
    const kernel: number[] = [];
    for (let i = 0; i < N; i++) {
      dl.host.exec('ip', ['link', 'add', `${P}x${i}`, 'type', 'veth', 'peer', 'name', `${P}p${i}`]);
      const created = performance.now();
      const wall = Date.now();
      listed.push((await countIs(d, i + 1, 10_000)) - created);
      kernel.push(wall);
    }
    const all = await d.api.listAll();
    const attachedAt = new Map(all.map((a) => [a.target, a as unknown as { attached_at: { seconds: string; nanos: number }; auto_rule: string }]));
    kernel.forEach((wall, i) => {
      const at = attachedAt.get(`${P}x${i}`)!.attached_at;
      kernel[i] = Math.max(0, Number(at.seconds) * 1000 + Math.floor(at.nanos / 1e6) - wall);
    });
    const autoListed = all.filter((a) => (a as unknown as { auto_rule: string }).auto_rule === `interface:${P}x*`).length;
    const p99 = pct(listed, 99);
    process.stdout.write(`auto-attach, ${N} links created one at a time (ip link add returned -> attachment listed): ${fmt(listed)}; target p99 < ${TARGET_P99_MS} ms: ${p99 < TARGET_P99_MS ? 'met' : 'NOT met'}\n`);
    process.stdout.write(`  same, -> its filter in the kernel (attachedAt, whole ms, the daemon's clock): ${fmt(kernel)}\n`);
    process.stdout.write(`  listed with their rule: ${autoListed} of ${N}\n`);

    // 2. At once: links, then cgroups.
    const batch = join(dl.tmp, 'bench.batch');
    writeFileSync(batch, Array.from({ length: N }, (_, i) => `link add ${P}xb${i} type veth peer name ${P}pb${i}\n`).join(''));
    let t0 = performance.now();
    dl.host.exec('ip', ['-batch', batch]);
    const batchReturned = performance.now();
    const linksDone = await countIs(d, 2 * N, 60_000);
    process.stdout.write(`auto-attach, ${N} links at once (ip -batch: ${(batchReturned - t0).toFixed(0)} ms): all listed ${(linksDone - batchReturned).toFixed(0)} ms after it returned\n`);
    const paths = Array.from({ length: N }, (_, i) => join(jobs, `nfj${i}`));
    dl.lab.defer(() => {
      for (const p of paths) if (existsSync(p)) rmdirSync(p);
    });
    t0 = performance.now();
    for (const p of paths) mkdirSync(p);
    const made = performance.now();
    const cgDone = await countIs(d, 3 * N, 60_000);
    process.stdout.write(`auto-attach, ${N} cgroups at once (mkdir: ${(made - t0).toFixed(0)} ms): all listed ${(cgDone - made).toFixed(0)} ms after the last mkdir\n`);
    for (const p of paths) rmdirSync(p);
  } finally {
    await d?.stop();
    await dl.close();
  }
}

exitWith(main);
