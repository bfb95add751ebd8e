// The measuring half of the benchmark, run inside the lab's host namespace (see bench.ts):
// netfenced (built CLI), a grpc-js control plane on 127.0.0.1, a grpc-js DaemonService client.

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { openPinnedMap } from '@netfence/bpf-loader';
import { POLICY_MAPS, policyEntry } from '@netfence/bpf-programs';
import { launchDaemon, sleep } from '../test/support/daemon-lab';
import { createTestControlPlane, type TestControlPlane } from '../test/support/grpc';
import type { BenchArgs } from './bench';

const SEQUENTIAL = 200;
const CONCURRENT = 50;
const COMMANDS = 200;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

function summary(xs: number[]): string {
  return `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;
}

/** VmRSS of a process and its parts (anonymous, file-backed, shared: bpf ring buffers mmapped by the consumer count here), in MB. */
function rssOf(pid: number): { rss: number; text: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)\\s+kB`).exec(status)?.[1] ?? NaN) / 1024;
  const rss = kb('VmRSS');
  return { rss, text: `${rss.toFixed(1)} MB (anon ${kb('RssAnon').toFixed(1)}, file ${kb('RssFile').toFixed(1)}, shmem ${kb('RssShmem').toFixed(1)})` };
}

/** Polls (yielding to the event loop between looks) until `check` holds; returns the time taken. */
function until(check: () => boolean, t0: number, timeoutMs = 2000): Promise<number> {
  return new Promise((resolve, reject) => {
    const look = () => {
      if (check()) return resolve(performance.now() - t0);
      if (performance.now() - t0 > timeoutMs) return reject(new Error('timed out waiting for the kernel map'));
      setImmediate(look);
    };
    look();
  });
}

/**
 * Sends AllowCIDR then RemoveCIDR for COMMANDS distinct prefixes, each as soon as the previous one is
 * visible in the kernel; times each from the send until the pinned map shows it.
 */
async function commandToMap(cp: TestControlPlane, mapPath: string, id: string): Promise<{ add: number[]; remove: number[] }> {
  const map = openPinnedMap(mapPath);
  const add: number[] = [];
  const remove: number[] = [];
  try {
    for (let i = 0; i < COMMANDS; i++) {
      const cidr = `198.51.100.${i}/32`;
      const key = policyEntry('allow', cidr).key;
      let t0 = performance.now();
      cp.send({ id, allow_cidr: { cidr } });
      add.push(await until(() => map.lookup(key) !== undefined, t0));
      t0 = performance.now();
      cp.send({ id, remove_cidr: cidr });
      remove.push(await until(() => map.lookup(key) === undefined, t0));
    }
  } finally {
    map.close();
  }
  return { add, remove };
}

async function main(): Promise<void> {
  const args = JSON.parse(process.env.NFBENCH_ARGS ?? '{}') as BenchArgs;
  const cp = createTestControlPlane({ listen: '127.0.0.1:0', ackPolicy: () => ({ mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] }) });
  const port = await cp.start();
  const dir = join(args.tmp, 'bench');
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'netfence.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      socket: join(dir, 'netfence.sock'),
      data_dir: join(dir, 'data'),
      bpffs_root: args.bpffsRoot,
      log_level: 'warn',
      metrics: { listen: '' },
      control_plane: { url: `http://127.0.0.1:${port}` },
      dns: { listen_addr: args.dnsListen, upstream: [args.upstream], port_min: 11000, port_max: 11999 },
    }),
  );
  const d = await launchDaemon(configPath, (cmd, a, o) => spawn(cmd, a, o));
  const lines: string[] = [];
  const out = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  try {
    await cp.waitFor((e) => e.msg.event === 'sync', 10_000, 'SyncRequest');
    const cpu = cpus();
    out(`netfenced benchmark, ${new Date().toISOString().slice(0, 10)}: ${cpu[0]?.model.trim() ?? 'unknown CPU'} x ${cpu.length} cores, kernel ${release()}, node ${process.version}`);
    out('(attach = gRPC DaemonService.Attach over the unix socket, including Subscribed -> SubscribedAck with a grpc-js control plane on loopback)');
    await sleep(1000);
    const rss0 = rssOf(d.pid);

    // 1. Sequential attaches, cgroup targets.
    const seqTimes: number[] = [];
    const ids: string[] = [];
    for (const path of args.cgroups.slice(0, SEQUENTIAL)) {
      const t0 = performance.now();
      const r = await d.api.attach({ cgroup_path: path });
      seqTimes.push(performance.now() - t0);
      ids.push(r.id);
    }
    out(`attach, cgroup targets, ${SEQUENTIAL} sequential: ${summary(seqTimes)}`);
    await sleep(1000);
    const rss200 = rssOf(d.pid);
    out(`daemon VmRSS: ${rss0.text} at 0 attachments; ${rss200.text} at ${ids.length} attachments`);

    // 2. Control-plane command -> kernel map, with 200 attachments on the host.
    const target = ids[0]!;
    const at200 = await commandToMap(cp, join(args.bpffsRoot, target, POLICY_MAPS.allowV4.name), target);
    out(`control-plane AllowCIDR -> entry in the pinned allow_v4 map, ${ids.length} attachments: ${summary(at200.add)}`);
    out(`control-plane RemoveCIDR -> entry gone from the map, ${ids.length} attachments: ${summary(at200.remove)}`);

    // 3. Detach them all (the first one last, after measuring commands with it alone).
    const detachTimes: number[] = [];
    for (const id of ids.slice(1)) {
      const t0 = performance.now();
      await d.api.detach(id);
      detachTimes.push(performance.now() - t0);
    }
    const at1 = await commandToMap(cp, join(args.bpffsRoot, target, POLICY_MAPS.allowV4.name), target);
    out(`control-plane AllowCIDR -> entry in the map, 1 attachment: ${summary(at1.add)}`);
    const t0 = performance.now();
    await d.api.detach(target);
    detachTimes.push(performance.now() - t0);
    out(`detach, ${ids.length} sequential: ${summary(detachTimes)}`);

    // 4. Concurrent attaches, cgroup targets.
    const conc = args.cgroups.slice(SEQUENTIAL, SEQUENTIAL + CONCURRENT);
    const concTimes: number[] = [];
    const w0 = performance.now();
    const concIds = await Promise.all(
      conc.map(async (path) => {
        const t0 = performance.now();
        const r = await d.api.attach({ cgroup_path: path });
        concTimes.push(performance.now() - t0);
        return r.id;
      }),
    );
    const wall = performance.now() - w0;
    out(`attach, cgroup targets, ${CONCURRENT} concurrent: ${summary(concTimes)}; all done in ${wall.toFixed(0)} ms (${((CONCURRENT / wall) * 1000).toFixed(0)} attaches/s)`);
    for (const id of concIds) await d.api.detach(id);

    // 5. Sequential attaches, TC targets (veth host ends).
    const tcTimes: number[] = [];
    const tcIds: string[] = [];
    for (const ifname of args.veths) {
      const t0 = performance.now();
      const r = await d.api.attach({ interface_name: ifname });
      tcTimes.push(performance.now() - t0);
      tcIds.push(r.id);
    }
    out(`attach, TC targets (veth, TCX ingress), ${args.veths.length} sequential: ${summary(tcTimes)}`);
    for (const id of tcIds) await d.api.detach(id);

    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    out(
      `targets: attach p99 < 50 ms: ${verdict(pct(seqTimes, 99) < 50 && pct(concTimes, 99) < 50)} (cgroup sequential ${pct(seqTimes, 99).toFixed(1)} ms, concurrent ${pct(concTimes, 99).toFixed(1)} ms, TC ${pct(tcTimes, 99).toFixed(1)} ms); ` +
        `RSS < 150 MB at ${SEQUENTIAL}: ${verdict(rss200.rss < 150)}; command -> map p99 < 5 ms: ${verdict(pct(at200.add, 99) < 5)} (${pct(at200.add, 99).toFixed(2)} ms at 200 attachments, ${pct(at1.add, 99).toFixed(2)} ms at 1)`,
    );
  } finally {
    await d.stop();
    await cp.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench worker failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
