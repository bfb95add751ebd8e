// Benchmark: dnsperf against (a) dnsmasq answering from --address records,
// (b) dnsmasq as a plain forwarder in front of (a), (c) netfence-dns in
// allowlist mode in front of (a) with an onResolved hook writing a real eBPF
// LPM map. Both forwarders run with their caches off (dnsmasq --cache-size=0,
// netfence cacheSize 0), so every query is forwarded. Loopback only.
//
// Saturation: dnsperf -l SECONDS -c 8 -q 256 (UDP). Latency: dnsperf -Q 2000
// -l LAT_SECONDS -v, p50/p99 computed from the per-query latencies it prints.
// Env: BENCH_SECONDS (10), BENCH_LAT_SECONDS (5), BENCH_HOOK (bpf|memory).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from '../test/helpers';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const LAT_SECONDS = Number(process.env.BENCH_LAT_SECONDS ?? 5);
const CLIENTS = 8;
const OUTSTANDING = 256;

const children: ChildProcess[] = [];


function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function dnsmasq(address: string, port: number, extra: string[]): ChildProcess {
  const c = spawn(
    'dnsmasq',
    ['-k', '--no-resolv', '--no-hosts', '--no-poll', '--bind-interfaces', `--listen-address=${address}`, `--port=${port}`, '--user=root', '--cache-size=0', ...extra],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.push(c);
  return c;
}

interface PerfResult {
  qps: number;
  avgMs: number;
  lostPct: number;
  p50Ms?: number;
  p99Ms?: number;
}

function dnsperf(address: string, port: number, file: string, args: string[], verbose: boolean): PerfResult {
  const out = execFileSync('dnsperf', ['-s', address, '-p', String(port), '-d', file, ...args, ...(verbose ? ['-v'] : [])], {
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
    timeout: (SECONDS + LAT_SECONDS + 30) * 1000,
  });
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const avgMs = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(out)?.[1] ?? NaN) * 1000;
  const lostPct = Number(/Queries lost:\s+\d+ \(([\d.]+)%\)/.exec(out)?.[1] ?? NaN);
  const r: PerfResult = { qps, avgMs, lostPct };
  if (verbose) {
    const lat: number[] = [];
    for (const m of out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) lat.push(Number(m[1]) * 1000);
    lat.sort((a, b) => a - b);
    const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
    r.p50Ms = pct(50);
    r.p99Ms = pct(99);
  }
  return r;
}

async function startFilter(address: string, upstream: string, hook: string, obj: string): Promise<{ port: number; hook: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-r', join(__dirname, '..', '..', '..', 'tools', 'swc-register.cjs'), join(__dirname, 'serve.ts')], {
    env: { ...process.env, LISTEN_ADDR: address, UPSTREAM: upstream, HOOK: hook, BPF_OBJ: obj },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const rl = createInterface({ input: child.stdout! });
  const lines: string[] = [];
  rl.on('line', (l) => lines.push(l));
  for (let i = 0; i < 200; i++) {
    const ready = lines.find((l) => l.includes('"ready"'));
    if (ready) {
      const j = JSON.parse(ready) as { port: number; hook: string };
      (child as ChildProcess & { lines?: string[] }).lines = lines;
      return { port: j.port, hook: j.hook, child };
    }
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error('netfence-dns bench server did not start');
}

function fmt(n: number | undefined, d = 0): string {
  return n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nf-dns-bench-'));
  try {
    const address = `127.${120 + Math.floor(Math.random() * 8)}.${1 + Math.floor(Math.random() * 250)}.1`;
    // real eBPF map for the hook, unless unavailable
    let hook = process.env.BENCH_HOOK ?? 'bpf';
    const obj = join(dir, 'lpm.bpf.o');
    if (hook === 'bpf') {
      try {
        execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(__dirname, 'lpm.bpf.c'), '-o', obj], { stdio: 'pipe' });
      } catch (e) {
        process.stderr.write(`bench: cannot compile lpm.bpf.c (${(e as Error).message}); using the in-memory hook\n`);
        hook = 'memory';
      }
    }
    const names: string[] = [];
    for (let i = 0; i < 200000; i++) names.push(`q${i}.bench.test A`);
    const file = join(dir, 'queries.txt');
    writeFileSync(file, `${names.join('\n')}\n`);

    const upPort = await freePort(address);
    dnsmasq(address, upPort, ['--address=/bench.test/203.0.113.1']);
    const fwdPort = await freePort(address);
    dnsmasq(address, fwdPort, [`--server=${address}#${upPort}`, '--dns-forward-max=4096']);
    await sleep(300);
    let nf = await startFilter(address, `${address}:${upPort}`, hook, obj).catch(async (e: unknown) => {
      if (hook !== 'bpf') throw e;
      process.stderr.write(`bench: the eBPF hook failed to start (${(e as Error).message}); using the in-memory hook\n`);
      hook = 'memory';
      return startFilter(address, `${address}:${upPort}`, hook, obj);
    });

    const targets: [string, number][] = [
      ['(a) dnsmasq upstream (--address records)', upPort],
      ['(b) dnsmasq forwarder -> (a), cache off', fwdPort],
      ['(c) netfence-dns allowlist -> (a), cache off', nf.port],
    ];
    const results: { label: string; sat: PerfResult; lat: PerfResult }[] = [];
    for (const [label, port] of targets) {
      // warm-up
      dnsperf(address, port, file, ['-l', '1', '-c', String(CLIENTS), '-q', String(OUTSTANDING)], false);
      const sat = dnsperf(address, port, file, ['-l', String(SECONDS), '-c', String(CLIENTS), '-q', String(OUTSTANDING)], false);
      const lat = dnsperf(address, port, file, ['-l', String(LAT_SECONDS), '-Q', '2000', '-c', '1', '-q', '100'], true);
      results.push({ label, sat, lat });
    }
    nf.child.kill('SIGTERM');
    await new Promise<void>((r) => nf.child.once('exit', () => r()));
    const tail = ((nf.child as ChildProcess & { lines?: string[] }).lines ?? []).find((l) => l.includes('"stats"')) ?? '';
    nf = undefined as never;

    const date = new Date().toISOString();
    const cpu = cpus()[0]?.model ?? 'unknown';
    let out = '';
    out += `netfence-dns benchmark, ${date}\n`;
    out += `machine: ${cpu}, ${cpus().length} cores, Linux ${release()}, Node ${process.version}, dnsperf ${/Version ([\d.]+)/.exec(execFileSync('dnsperf', ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).toString() + '')?.[1] ?? ''}\n`;
    out += `saturation: dnsperf -l ${SECONDS} -c ${CLIENTS} -q ${OUTSTANDING} (UDP, 200k distinct names); latency: dnsperf -Q 2000 -l ${LAT_SECONDS} -v\n`;
    out += `netfence onResolved hook: ${hook === 'bpf' ? 'eBPF LPM trie map via @netfence/bpf-loader' : 'in-memory Map (no eBPF)'}\n\n`;
    out += `${'target'.padEnd(48)} ${'QPS'.padStart(8)} ${'lost%'.padStart(6)} ${'avg ms'.padStart(7)} | @2000qps: ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)}\n`;
    for (const r of results) {
      out += `${r.label.padEnd(48)} ${fmt(r.sat.qps).padStart(8)} ${fmt(r.sat.lostPct, 2).padStart(6)} ${fmt(r.sat.avgMs, 3).padStart(7)} |           ${fmt(r.lat.p50Ms, 3).padStart(7)} ${fmt(r.lat.p99Ms, 3).padStart(7)}\n`;
    }
    const b = results[1]!;
    const c = results[2]!;
    out += `\nnetfence/dnsmasq-forwarder: QPS ${(c.sat.qps / b.sat.qps).toFixed(2)}x (target >= 0.80x), p50 ${((c.lat.p50Ms ?? NaN) / (b.lat.p50Ms ?? NaN)).toFixed(2)}x (target <= 1.30x)\n`;
    out += `netfence server stats: ${tail}\n`;
    process.stdout.write(out);
    void readFileSync;
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  process.exit(1);
});
