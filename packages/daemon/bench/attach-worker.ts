// The measuring half of the attach benchmark (bench/attach.ts), run in the lab's host namespace:
// the built netfenced with a grpc-js control plane on 127.0.0.1, driven over its unix socket.
// Figures: what 1,000 attachments cost on the daemon as started (made 50 at a time): daemon RSS
// and kernel memory (the kernel's own accounting: bytes_memlock of every BPF map and program,
// from bpftool); the transport's floor (GetStatus over the same socket, sequential and in the
// same bursts); Attach latency (sequential, 50 and 500 concurrent; cgroup and TC targets),
// failures and their codes; and the RSS after 1,000 attachments made at once following every
// burst (the V8 heap keeps the size the bursts' garbage grew it to).

import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { launchDaemon, sleep, type DaemonProcess } from '../test/support/daemon-lab';
import { createTestControlPlane } from '../test/support/grpc';
import type { AttachBenchArgs } from './attach';
import { exitWith, pct, writeBenchConfig } from './lab-run';

const SEQUENTIAL = 200;
const BURSTS = [50, 500] as const;
const MANY = 1000;

const summary = (xs: readonly number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms`;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) / 1024;
}

/** bytes_memlock of every BPF map and program on the host (bpftool), and how many of each. */
function kernelBpfMemory(): { maps: number; mapBytes: number; progs: number; progBytes: number } {
  const sum = (kind: 'map' | 'prog') => {
    const list = JSON.parse(execFileSync('bpftool', [kind, 'show', '-j'], { encoding: 'utf8', maxBuffer: 256 << 20 })) as { bytes_memlock?: number }[];
    return { n: list.length, bytes: list.reduce((a, x) => a + (x.bytes_memlock ?? 0), 0) };
  };
  const m = sum('map');
  const p = sum('prog');
  return { maps: m.n, mapBytes: m.bytes, progs: p.n, progBytes: p.bytes };
}

type Target = { cgroup_path: string } | { interface_name: string };
interface Outcome {
  readonly ms: number[];
  readonly ids: string[];
  readonly failures: Map<string, number>;
  readonly wallMs: number;
}

/** Times `call` on each item, one after the other or all at once; ids are what the calls return, failures counted by gRPC code. */
async function timeCalls<T>(items: readonly T[], call: (t: T) => Promise<string | undefined>, concurrent: boolean): Promise<Outcome> {
  const ms: number[] = [];
  const ids: string[] = [];
  const failures = new Map<string, number>();
  const one = async (t: T) => {
    const t0 = performance.now();
    try {
      const id = await call(t);
      ms.push(performance.now() - t0);
      if (id !== undefined) ids.push(id);
    } catch (e) {
      const code = String((e as { code?: unknown }).code ?? (e as Error).message.slice(0, 60));
      failures.set(code, (failures.get(code) ?? 0) + 1);
    }
  };
  const w0 = performance.now();
  if (concurrent) await Promise.all(items.map(one));
  else for (const t of items) await one(t);
  return { ms, ids, failures, wallMs: performance.now() - w0 };
}

const attachAll = (d: DaemonProcess, targets: readonly Target[], concurrent: boolean): Promise<Outcome> =>
  timeCalls(targets, async (t) => (await d.api.attach(t)).id, concurrent);

/** Attaches `targets` `batch` at a time (a host making workloads in bursts), for the memory figures. */
async function attachInBatches(d: DaemonProcess, targets: readonly Target[], batch: number): Promise<Outcome> {
  const all: Outcome = { ms: [], ids: [], failures: new Map(), wallMs: 0 };
  const w0 = performance.now();
  for (let i = 0; i < targets.length; i += batch) {
    const o = await attachAll(d, targets.slice(i, i + batch), true);
    all.ms.push(...o.ms);
    all.ids.push(...o.ids);
    for (const [c, n] of o.failures) all.failures.set(c, (all.failures.get(c) ?? 0) + n);
  }
  return { ...all, wallMs: performance.now() - w0 };
}

async function detachAll(d: DaemonProcess, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((id) => d.api.detach(id)));
}

const fails = (o: Outcome) => (o.failures.size === 0 ? '0 failures' : `FAILURES ${[...o.failures].map(([c, n]) => `${n} x ${c}`).join(', ')}`);

async function main(): Promise<void> {
  const args = JSON.parse(process.env.NFBENCH_ARGS ?? '{}') as AttachBenchArgs;
  const cp = createTestControlPlane({ listen: '127.0.0.1:0', ackPolicy: () => ({ mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] }) });
  const port = await cp.start();
  const configPath = writeBenchConfig(args.tmp, 'attach-bench', args.bpffsRoot, port, { log_level: 'warn', dns: { listen_addr: args.dnsListen, port_min: 20000, port_max: 22999 } });
  const kernel0 = kernelBpfMemory();
  const d = await launchDaemon(configPath, (cmd, a, o) => spawn(cmd, a, o));
  const out = (s: string) => process.stdout.write(`${s}\n`);
  try {
    await cp.waitFor((e) => e.msg.event === 'sync', 10_000, 'SyncRequest');
    await sleep(500);
    const cpu = cpus();
    out(`netfenced attach benchmark (issue 11), ${new Date().toISOString()}: ${cpu[0]?.model.trim() ?? 'CPU'} x ${cpu.length}, kernel ${release()}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    out('Attach = DaemonService.Attach over the unix socket until it returns: slot, tries, links, DNS server, Subscribed -> SubscribedAck applied (grpc-js control plane on loopback).');
    const kernelHost = kernelBpfMemory();
    const rss0 = rssMb(d.pid);
    const cg = args.cgroups.map((p) => ({ cgroup_path: p }));
    const tc = args.veths.map((i) => ({ interface_name: i }));

    // What attachments cost, on the daemon as started: 1,000 attachments made 50 at a time.
    const many = await attachInBatches(d, cg.slice(0, MANY), 50);
    await sleep(1000);
    const rssMany = rssMb(d.pid);
    const kernelMany = kernelBpfMemory();
    const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    const mb = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
    out(`${MANY} attachments (cgroups, made 50 at a time on the daemon as started, in ${many.wallMs.toFixed(0)} ms; ${fails(many)}):`);
    out(`  daemon VmRSS: ${rss0.toFixed(1)} MB with 0 attachments, ${rssMany.toFixed(1)} MB with ${many.ids.length}: ${(((rssMany - rss0) * 1024) / Math.max(1, many.ids.length)).toFixed(1)} KiB each`);
    out(`  kernel memory (bytes_memlock of all BPF maps and programs, bpftool): host set ${mb(kernelHost.mapBytes + kernelHost.progBytes - kernel0.mapBytes - kernel0.progBytes)} (${kernelHost.maps - kernel0.maps} maps, ${kernelHost.progs - kernel0.progs} programs: loaded once);`);
    out(`    with ${many.ids.length} attachments ${mb(kernelMany.mapBytes + kernelMany.progBytes - kernel0.mapBytes - kernel0.progBytes)}: ${kb((kernelMany.mapBytes + kernelMany.progBytes - kernelHost.mapBytes - kernelHost.progBytes) / Math.max(1, many.ids.length))} and ${((kernelMany.maps - kernelHost.maps) / Math.max(1, many.ids.length)).toFixed(1)} maps each (two empty rules tries; programs added: ${kernelMany.progs - kernelHost.progs})`);
    out('    (not in bytes_memlock: cgroup storage elements and links; the tries grow by ~44 B per rule)');
    await detachAll(d, many.ids);

    // The floor any call to the daemon pays (the same transport, a handler doing nothing much):
    // GetStatus, sequential and in the same bursts as the attaches below.
    const floor = (n: number, concurrent: boolean) =>
      timeCalls(Array.from({ length: n }, (_, i) => i), async () => void (await d.api.status()), concurrent);
    const floors = { seq: await floor(SEQUENTIAL, false), c50: await floor(50, true), c500: await floor(500, true) };
    out(
      `baseline, GetStatus over the same socket: ${SEQUENTIAL} sequential ${summary(floors.seq.ms)}; 50 concurrent ${summary(floors.c50.ms)}; ` +
        `500 concurrent ${summary(floors.c500.ms)}, all done in ${floors.c500.wallMs.toFixed(0)} ms; ${fails(floors.c500)}`,
    );

    const results: Record<string, Outcome> = {};
    for (const [kind, targets] of [
      ['cgroup', cg],
      ['TC', tc],
    ] as const) {
      const seq = await attachAll(d, targets.slice(0, SEQUENTIAL), false);
      out(`${kind} targets, ${SEQUENTIAL} sequential: ${summary(seq.ms)}; ${fails(seq)}`);
      results[`${kind} seq`] = seq;
      await detachAll(d, seq.ids);
      for (const n of BURSTS) {
        const c = await attachAll(d, targets.slice(0, n), true);
        out(`${kind} targets, ${n} concurrent: ${summary(c.ms)}; all done in ${c.wallMs.toFixed(0)} ms; ${fails(c)}`);
        results[`${kind} ${n}`] = c;
        await detachAll(d, c.ids);
      }
    }

    // The same daemon after every burst above: 1,000 attachments made at once.
    await sleep(500);
    const burst = await attachAll(d, cg.slice(0, MANY), true);
    await sleep(1000);
    const rssBurst = rssMb(d.pid);
    out(`${MANY} attachments at once, after the bursts above (cgroups, all done in ${burst.wallMs.toFixed(0)} ms; ${fails(burst)}): daemon VmRSS ${rssBurst.toFixed(1)} MB (the heap keeps what the bursts' garbage made it grow to)`);
    await detachAll(d, burst.ids);

    const v = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const seqP99 = Math.max(pct(results['cgroup seq']!.ms, 99), pct(results['TC seq']!.ms, 99));
    const c50 = Math.max(pct(results['cgroup 50']!.ms, 99), pct(results['TC 50']!.ms, 99));
    const c500 = [results['cgroup 500']!, results['TC 500']!];
    const floor50 = pct(floors.c50.ms, 99);
    out(`against the transport's floor (GetStatus, same run): sequential p50 ${(Math.max(pct(results['cgroup seq']!.ms, 50), pct(results['TC seq']!.ms, 50)) / pct(floors.seq.ms, 50)).toFixed(2)}x; 50 concurrent p99 ${(c50 / floor50).toFixed(2)}x (the floor alone: ${floor50.toFixed(2)} ms)`);
    out(
      `targets: sequential p99 < 10 ms: ${v(seqP99 < 10)} (${seqP99.toFixed(2)} ms); 50 concurrent p99 < 25 ms: ${v(c50 < 25)} (${c50.toFixed(2)} ms); ` +
        `500 concurrent 0 failures, all done < 2 s: ${v(c500.every((o) => o.failures.size === 0 && o.wallMs < 2000))} (cgroup ${c500[0]!.wallMs.toFixed(0)} ms, TC ${c500[1]!.wallMs.toFixed(0)} ms); ` +
        `RSS < 200 MB at ${MANY}: ${v(rssMany < 200)} (${rssMany.toFixed(1)} MB made 50 at a time; ${rssBurst.toFixed(1)} MB made at once after every burst above)`,
    );
  } finally {
    await d.stop();
    await cp.stop();
  }
}

exitWith(main);
