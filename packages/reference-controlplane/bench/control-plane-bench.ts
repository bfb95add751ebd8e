// Benchmark: one reference control plane, 1,000 simulated daemons (child
// processes, @grpc/grpc-js), 10 attachments each, on loopback.
//  1. policy file change -> every daemon has received its commands (p50/p99 over daemons)
//  2. reconnect storm: server restart -> every daemon resynced (SyncAck + BulkUpdates)
//  3. PostgreSQL mode: the daemons move to a replica serving the policy from a database (a
//     test server on a unix socket); a change committed there by another replica's store ->
//     every daemon has received its commands (LISTEN/NOTIFY, reload, push)

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { protoRoot } from '@netfence/proto';
import { createControlPlane, createPostgresPolicyStore } from '../src/index';
import { startTestPostgres } from '../test/support/postgres';
import type { ControlPlane } from '../src/index';

const DAEMONS = Number(process.env.NF_BENCH_DAEMONS ?? 1000);
const ATTACHMENTS = Number(process.env.NF_BENCH_ATTACHMENTS ?? 10);
const WORKERS = Number(process.env.NF_BENCH_WORKERS ?? 2);
const CHANNELS_PER_WORKER = Number(process.env.NF_BENCH_CHANNELS ?? 4);
const ROUNDS = Number(process.env.NF_BENCH_ROUNDS ?? 5);
const DEBOUNCE_MS = 20;
const HARD_TIMEOUT_MS = 150_000;

const nowMs = (): number => performance.timeOrigin + performance.now();

function policyText(extra: string[]): string {
  const rules = (tenant: number): string[] => [
    ...Array.from({ length: 15 }, (_, i) => `ALLOW *.svc${i}.t${tenant}.example.com`),
    ...Array.from({ length: 10 }, (_, i) => `ALLOW 10.200.${tenant * 16 + i}.0/24`),
    'DENY ads.example.com',
  ];
  return `# benchmark policies
policies:
  - name: tenant0
    match: { tenant: t0 }
    mode: allowlist
    dns: { mode: allowlist, upstreams: [10.200.255.53] }
    rules:
${[...rules(0), ...extra].map((r) => `      - ${r}`).join('\n')}
  - name: tenant1
    match: { tenant: t1 }
    mode: allowlist
    dns: { mode: allowlist, upstreams: [10.200.255.53] }
    rules:
${[...rules(1), ...extra].map((r) => `      - ${r}`).join('\n')}
  - name: default
    mode: block_all
`;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;

async function main(): Promise<void> {
  const hard = setTimeout(() => {
    process.stderr.write(`benchmark exceeded ${HARD_TIMEOUT_MS} ms; aborting\n`);
    process.exit(1);
  }, HARD_TIMEOUT_MS);
  hard.unref();

  const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-bench-'));
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policyText([]));
  const verboseLogger = {
    info: (o: unknown, m?: string) => process.stderr.write(`cp info ${m ?? ''} ${JSON.stringify(o)}\n`),
    warn: (o: unknown, m?: string) => process.stderr.write(`cp warn ${m ?? ''} ${JSON.stringify(o)}\n`),
    error: (o: unknown, m?: string) => process.stderr.write(`cp error ${m ?? ''} ${JSON.stringify(o)}\n`),
    debug: () => undefined,
    child: () => verboseLogger,
  };
  const logger = process.env.NF_BENCH_VERBOSE ? { logger: verboseLogger } : {};
  const nonces = process.env.NF_BENCH_NONCES !== '0';
  let cp: ControlPlane = createControlPlane({ policy: file, debounceMs: DEBOUNCE_MS, pollIntervalMs: 1000, nonces, ...logger });
  const bound = await cp.listen('127.0.0.1:0');
  const address = `127.0.0.1:${bound.port}`;

  const tConnect = nowMs();
  const workers: ChildProcess[] = [];
  const waiters = new Map<string, { need: number; got: { type: string; times?: number[] }[]; resolve: (v: { type: string; times?: number[] }[]) => void }>();
  const waitAll = (key: string): Promise<{ type: string; times?: number[] }[]> =>
    new Promise((resolve) => waiters.set(key, { need: WORKERS, got: [], resolve }));
  const onMsg = (m: { type: string; phase: string; times?: number[] }): void => {
    if (process.env.NF_BENCH_VERBOSE) process.stderr.write(`worker: ${m.type} ${m.phase} ${((nowMs() - tConnect) / 1000).toFixed(2)}s\n`);
    const key = `${m.type}:${m.phase}`;
    const w = waiters.get(key);
    if (!w) return;
    w.got.push(m);
    if (w.got.length === w.need) {
      waiters.delete(key);
      w.resolve(w.got);
    }
  };
  const per = Math.ceil(DAEMONS / WORKERS);
  const connectDone = waitAll('done:connect');
  for (let w = 0; w < WORKERS; w++) {
    const child = fork(join(__dirname, 'daemon-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', onMsg);
    workers.push(child);
    const first = w * per;
    child.send({
      type: 'init',
      address,
      protoDir: protoRoot,
      first,
      count: Math.max(0, Math.min(per, DAEMONS - first)),
      attachments: ATTACHMENTS,
      channels: CHANNELS_PER_WORKER,
    });
  }
  const connectTimes = (await connectDone).flatMap((r) => r.times ?? []);
  const connectAll = Math.max(...connectTimes) - tConnect;

  async function arm(phase: string, n: number, newStream: boolean): Promise<{ done: Promise<{ type: string; times?: number[] }[]> }> {
    const armed = waitAll(`armed:${phase}`);
    const done = waitAll(`done:${phase}`);
    for (const w of workers) w.send({ type: 'expect', phase, n, newStream });
    await armed;
    return { done };
  }

  // policy change rounds (round 0 is a warm-up)
  const extra: string[] = [];
  const changeLatencies: number[] = [];
  const roundMax: number[] = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const { done } = await arm(`change${r}`, ATTACHMENTS, false);
    extra.push(`ALLOW round${r}.bench.example.net`);
    const text = policyText(extra);
    const t0 = nowMs();
    writeFileSync(file, text);
    if (process.env.NF_BENCH_VERBOSE) process.stderr.write(`wrote ${file} round ${r}\n`);
    const times = (await done).flatMap((x) => x.times ?? []).map((t) => t - t0);
    if (r > 0) {
      changeLatencies.push(...times);
      roundMax.push(Math.max(...times));
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  const metricsText = await cp.metrics();
  const sent = [...metricsText.matchAll(/^netfence_cp_commands_sent_total\{kind="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}=${m[2]}`).join(' ');
  const fanout = /netfence_cp_push_fanout_seconds_sum ([0-9.e-]+)\nnetfence_cp_push_fanout_seconds_count (\d+)/.exec(metricsText);

  // reconnect storm
  const { done: stormDone } = await arm('storm', ATTACHMENTS + 1, true);
  const tStop = nowMs();
  await cp.close();
  cp = createControlPlane({ policy: file, debounceMs: DEBOUNCE_MS, nonces, ...logger });
  await cp.listen(address);
  const tStart = nowMs();
  const stormTimes = (await stormDone).flatMap((x) => x.times ?? []).map((t) => t - tStart);
  const stormSorted = [...stormTimes].sort((a, b) => a - b);

  // PostgreSQL mode
  const pg = await startTestPostgres();
  const pgLatencies: number[] = [];
  const pgRoundMax: number[] = [];
  try {
    const writer = await createPostgresPolicyStore({ connectionString: pg.url, seedText: policyText(extra) });
    const served = await createPostgresPolicyStore({ connectionString: pg.url });
    try {
      const { done: moved } = await arm('pg-move', ATTACHMENTS + 1, true);
      await cp.close();
      cp = createControlPlane({ policy: served, debounceMs: DEBOUNCE_MS, nonces, ...logger });
      await cp.listen(address);
      await moved;
      for (let r = 0; r <= ROUNDS; r++) {
        const { done } = await arm(`pg${r}`, ATTACHMENTS, false);
        extra.push(`ALLOW pg-round${r}.bench.example.net`);
        const t0 = nowMs();
        await writer.write(policyText(extra), writer.current().version);
        const times = (await done).flatMap((x) => x.times ?? []).map((t) => t - t0);
        if (r > 0) {
          pgLatencies.push(...times);
          pgRoundMax.push(Math.max(...times));
        }
        await new Promise((res) => setTimeout(res, 200));
      }
    } finally {
      await writer.close();
      await cp.close();
      await served.close();
    }
  } finally {
    await pg.destroy();
  }
  const pgSorted = [...pgLatencies].sort((a, b) => a - b);

  for (const w of workers) w.send({ type: 'exit' });
  rmSync(dir, { recursive: true, force: true });

  const sorted = [...changeLatencies].sort((a, b) => a - b);
  const cpu = cpus();
  const lines = [
    `netfence reference control plane benchmark, ${new Date().toISOString().slice(0, 10)}`,
    `machine: ${cpu.length} x ${cpu[0]?.model.trim() ?? 'cpu'}, Node ${process.version}, ${process.platform}/${process.arch}`,
    `setup: ${DAEMONS} daemons x ${ATTACHMENTS} attachments, ${WORKERS} daemon processes x ${CHANNELS_PER_WORKER} HTTP/2 connections, each daemon its own Connect stream, command ACKs ${nonces ? 'on' : 'off'}`,
    `initial connect + sync of all daemons: ${fmt(connectAll)}`,
    `policy change -> commands received (${ROUNDS} rounds x ${DAEMONS} daemons, ${ATTACHMENTS} allow_domain commands per daemon, includes ${DEBOUNCE_MS} ms watch debounce):`,
    `  p50 ${fmt(pct(sorted, 50))}  p99 ${fmt(pct(sorted, 99))}  max ${fmt(pct(sorted, 100))}  (per-round max: ${roundMax.map((x) => x.toFixed(0)).join(', ')} ms)  target p99 < 1000 ms: ${pct(sorted, 99) < 1000 ? 'PASS' : 'FAIL'}`,
    `  control plane fan-out (diff + queue for all attachments): mean ${fanout ? fmt((Number(fanout[1]) / Number(fanout[2])) * 1000) : 'n/a'}; commands sent: ${sent}`,
    `reconnect storm (server restart -> all ${DAEMONS} resynced with SyncAck + ${ATTACHMENTS} BulkUpdates):`,
    `  p50 ${fmt(pct(stormSorted, 50))}  p99 ${fmt(pct(stormSorted, 99))}  all ${fmt(pct(stormSorted, 100))} after restart (${fmt(pct(stormSorted, 100) + (tStart - tStop))} after shutdown began)  target < 10000 ms: ${pct(stormSorted, 100) < 10_000 ? 'PASS' : 'FAIL'}`,
    `PostgreSQL mode: change committed by another replica -> commands received (${ROUNDS} rounds x ${DAEMONS} daemons on one replica, LISTEN/NOTIFY + reload + ${DEBOUNCE_MS} ms debounce):`,
    `  p50 ${fmt(pct(pgSorted, 50))}  p99 ${fmt(pct(pgSorted, 99))}  max ${fmt(pct(pgSorted, 100))}  (per-round max: ${pgRoundMax.map((x) => x.toFixed(0)).join(', ')} ms)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  clearTimeout(hard);
  setTimeout(() => process.exit(0), 100);
}

main().catch((e: unknown) => {
  process.stderr.write(`benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
