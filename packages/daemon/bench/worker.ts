// The measuring half of the benchmark, run inside the lab's host namespace (see bench.ts):
// netfenced (built CLI), a grpc-js control plane on 127.0.0.1, a grpc-js DaemonService client.

import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, statSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { openPinnedMap } from '@netfence/bpf-loader';
import { RULE_TRIES, ruleKey } from '@netfence/bpf-programs';
import { DNS_FLOOD_PY, launchDaemon, sleep, SYNTH_DOMAIN, synthName, type DaemonProcess } from '../test/support/daemon-lab';
import { createTestControlPlane, type TestControlPlane } from '../test/support/grpc';
import type { BenchArgs } from './bench';
import { exitWith, pct, writeBenchConfig } from './lab-run';

const SEQUENTIAL = 200;
const CONCURRENT = 50;
const COMMANDS = 200;
const LEARNED = 10_000;
const DNS_SAMPLES = 500;
const FLOOD_PACKETS = 1_000_000;


function summary(xs: number[]): string {
  return `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;
}

/** VmRSS of a process and its parts (anonymous, file-backed, shared: bpf ring buffers mmapped by the consumer count here), in MB. */
/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuSecondsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14, 15)
}

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
      const key = ruleKey(cidr).key;
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

/** A UDP DNS client for A queries: `query(name)` resolves with the answer's addresses (rejects on a non-NOERROR rcode or after 2 s). */
function dnsClient(server: string) {
  const [host, port] = [server.slice(0, server.lastIndexOf(':')), Number(server.slice(server.lastIndexOf(':') + 1))];
  const sock = createSocket('udp4');
  const waiting = new Map<number, { resolve: (a: string[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let nextId = 1;
  sock.on('message', (msg) => {
    const w = waiting.get(msg.readUInt16BE(0));
    if (!w) return;
    waiting.delete(msg.readUInt16BE(0));
    clearTimeout(w.timer);
    const rcode = msg[3]! & 15;
    if (rcode !== 0) return w.reject(new Error(`rcode ${rcode}`));
    let off = 12;
    while (msg[off] !== 0) off += msg[off]! + 1;
    off += 5;
    const out: string[] = [];
    for (let i = msg.readUInt16BE(6); i > 0; i--) {
      off += (msg[off]! & 0xc0) === 0xc0 ? 2 : msg.indexOf(0, off) - off + 1;
      const type = msg.readUInt16BE(off);
      const len = msg.readUInt16BE(off + 8);
      if (type === 1 && len === 4) out.push([...msg.subarray(off + 10, off + 14)].join('.'));
      off += 10 + len;
    }
    w.resolve(out);
  });
  return {
    query(name: string): Promise<string[]> {
      const id = nextId++ & 0xffff || nextId++;
      const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
      const q = Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject, timer: setTimeout(() => (waiting.delete(id), reject(new Error(`no answer for ${name} from ${server}`))), 2000) });
        sock.send(q, port, host);
      });
    },
    close: () => sock.close(),
  };
}

/** Sequential A queries for names[i], timing each; checks every answer carries the expected address. */
async function timeQueries(client: ReturnType<typeof dnsClient>, names: { name: string; address: string }[]): Promise<number[]> {
  const times: number[] = [];
  for (const n of names) {
    const t0 = performance.now();
    const got = await client.query(n.name);
    times.push(performance.now() - t0);
    if (!got.includes(n.address)) throw new Error(`${n.name}: expected ${n.address}, got ${got.join(',') || 'nothing'}`);
  }
  return times;
}

/**
 * Issue 15's log amplification: one attachment's DNS server flooded with FLOOD_PACKETS garbage
 * and refused queries, while another attachment's DNS answers are timed (new names, each
 * answer released after its map write): p99 quiet vs during the flood, and the log bytes the
 * flood made the daemon write, per 1,000,000 packets.
 */
async function floodSection(d: DaemonProcess, cgroups: string[], out: (s: string) => void): Promise<{ ratio: number; bytesPerMillion: number }> {
  const victim = await d.api.attach({ cgroup_path: cgroups[0]!, metadata: { dns: 'on' } });
  const flooded = await d.api.attach({ cgroup_path: cgroups[1]!, metadata: { dns: 'on' } });
  const client = dnsClient(victim.dns_address);
  try {
    const names = Array.from({ length: 4000 }, (_, i) => synthName(LEARNED + 3 * DNS_SAMPLES + i));
    const quiet = await timeQueries(client, names.slice(0, DNS_SAMPLES));
    const logBefore = statSync(d.logFile).size;
    const [host, port] = [flooded.dns_address.slice(0, flooded.dns_address.lastIndexOf(':')), flooded.dns_address.slice(flooded.dns_address.lastIndexOf(':') + 1)];
    // The flooder is the flooded attachment's workload: it runs in that cgroup, so its filter sees it.
    const flooder = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroups[1]!, 'python3', '-c', DNS_FLOOD_PY, host, port, String(FLOOD_PACKETS), '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let sentText = '';
    flooder.stdout.on('data', (b: Buffer) => (sentText += b.toString()));
    let running = true;
    const done = new Promise<void>((r) => flooder.on('exit', () => ((running = false), r())));
    const t0 = performance.now();
    const cpu0 = cpuSecondsOf(d.pid);
    const during: number[] = [];
    for (let i = DNS_SAMPLES; running && i < names.length; i++) during.push(...(await timeQueries(client, [names[i]!])));
    await done;
    const floodMs = performance.now() - t0;
    const daemonCpu = cpuSecondsOf(d.pid) - cpu0;
    await sleep(2000); // what the daemon still had queued is handled (and logged) too
    const logBytes = statSync(d.logFile).size - logBefore;
    const [sent, refused] = sentText.trim().split(' ').map(Number) as [number, number];
    const info = (await d.api.listAll()).find((a) => a.id === flooded.id) as unknown as { dns_queries_blocked?: string } | undefined;
    const counted = Number(info?.dns_queries_blocked ?? NaN);
    const ratio = pct(during, 99) / pct(quiet, 99);
    const bytesPerMillion = (logBytes * 1_000_000) / (sent + refused);
    out(
      `DNS flood on one attachment: ${sent + refused} packets (half garbage, half refused names) in ${(floodMs / 1000).toFixed(1)} s, ${refused} of them refused by its DNS rate limit in the kernel (EPERM); the daemon counted ${counted} refused queries`,
    );
    out(`  another attachment's DNS (new name each), quiet: ${summary(quiet)}`);
    out(`  same, during the flood: ${summary(during)}; p99 during / quiet: ${ratio.toFixed(2)}x`);
    out(`  daemon CPU during the flood: ${daemonCpu.toFixed(2)} s in ${(floodMs / 1000).toFixed(1)} s (${((daemonCpu * 100_000) / floodMs).toFixed(0)}% of one core)`);
    out(`  log written during the flood: ${logBytes} bytes at level info, ${(bytesPerMillion / 1024).toFixed(1)} KB per 1,000,000 flood packets`);
    return { ratio, bytesPerMillion };
  } finally {
    client.close();
    await d.api.detach(victim.id);
    await d.api.detach(flooded.id);
  }
}

/** NFBENCH_DNS_RATE_LIMIT=<qps>[/<burst>] runs the daemon with that kernel DNS rate limit (0 = none) instead of the default. */
function dnsRateLimit(): { rate_limit_qps?: number; rate_limit_burst?: number } {
  const v = process.env.NFBENCH_DNS_RATE_LIMIT;
  if (!v) return {};
  const m = /^(\d+)(?:\/(\d+))?$/.exec(v);
  if (!m) throw new Error(`NFBENCH_DNS_RATE_LIMIT must be <qps> or <qps>/<burst>, got ${JSON.stringify(v)}`);
  return { rate_limit_qps: Number(m[1]), ...(m[2] ? { rate_limit_burst: Number(m[2]) } : {}) };
}

async function main(): Promise<void> {
  const args = JSON.parse(process.env.NFBENCH_ARGS ?? '{}') as BenchArgs;
  const dnsTarget = args.cgroups[args.cgroups.length - 1]!;
  const cp = createTestControlPlane({
    listen: '127.0.0.1:0',
    ackPolicy: (sub) =>
      sub.target === dnsTarget || sub.metadata?.dns === 'on'
        ? { mode: 'POLICY_MODE_ALLOWLIST', dns: { mode: 'DNS_MODE_ALLOWLIST', allow_domains: [{ domain: SYNTH_DOMAIN, include_subdomains: true }] } }
        : { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] },
  });
  const port = await cp.start();
  const configPath = writeBenchConfig(args.tmp, 'bench', args.bpffsRoot, port, {
    log_level: 'info', // the default: what a workload can make the daemon write
    // min_ttl: dnsmasq's synthesised answers carry TTL 0; learned addresses must outlive the run
    dns: { listen_addr: args.dnsListen, upstream: [args.upstream], port_min: 11000, port_max: 11999, min_ttl: '10m', ...dnsRateLimit() },
  });
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
    const at200 = await commandToMap(cp, join(args.bpffsRoot, target, RULE_TRIES.v4.name), target);
    out(`control-plane AllowCIDR -> entry in the pinned rules_v4 trie, ${ids.length} attachments: ${summary(at200.add)}`);
    out(`control-plane RemoveCIDR -> entry gone from the map, ${ids.length} attachments: ${summary(at200.remove)}`);

    // 3. Detach them all (the first one last, after measuring commands with it alone).
    const detachTimes: number[] = [];
    for (const id of ids.slice(1)) {
      const t0 = performance.now();
      await d.api.detach(id);
      detachTimes.push(performance.now() - t0);
    }
    const at1 = await commandToMap(cp, join(args.bpffsRoot, target, RULE_TRIES.v4.name), target);
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

    // 6. DNS answer -> allow map, through one attachment's DNS server (the answer is released
    // only once its address is in the kernel map), with 0 and LEARNED addresses already learned.
    const dnsAtt = await d.api.attach({ cgroup_path: dnsTarget });
    const viaDaemon = dnsClient(dnsAtt.dns_address);
    const direct = dnsClient(args.upstream);
    let dnsRatio = NaN;
    try {
      const names = Array.from({ length: LEARNED + 3 * DNS_SAMPLES }, (_, i) => synthName(i));
      const upstreamTimes = await timeQueries(direct, names.slice(LEARNED + 2 * DNS_SAMPLES));
      const fresh0 = await timeQueries(viaDaemon, names.slice(0, DNS_SAMPLES));
      const t0 = performance.now();
      const preload = names.slice(DNS_SAMPLES, LEARNED);
      for (let i = 0; i < preload.length; i += 32) await Promise.all(preload.slice(i, i + 32).map((n) => viaDaemon.query(n.name)));
      const preloadMs = performance.now() - t0;
      const freshN = await timeQueries(viaDaemon, names.slice(LEARNED, LEARNED + DNS_SAMPLES));
      const map = openPinnedMap(join(args.bpffsRoot, dnsAtt.id, RULE_TRIES.v4.name));
      let inMap = 0;
      try {
        for (const n of names.slice(0, LEARNED + DNS_SAMPLES)) if (map.lookup(ruleKey(`${n.address}/32`).key) !== undefined) inMap++;
      } finally {
        map.close();
      }
      out(`DNS A query straight to the upstream (dnsmasq), baseline: ${summary(upstreamTimes)}`);
      out(`DNS A query through the attachment's DNS server, new name, answer released after its map write, 0 learned: ${summary(fresh0)}`);
      out(`  same, with ${LEARNED} addresses already learned: ${summary(freshN)} (preloading them: ${((preload.length / preloadMs) * 1000).toFixed(0)} answers/s, 32 in flight)`);
      dnsRatio = pct(freshN, 50) / pct(fresh0, 50);
      out(`  p50 with ${LEARNED} learned / p50 with 0: ${dnsRatio.toFixed(2)}x; rules_v4 entries found for the ${LEARNED + DNS_SAMPLES} learned names: ${inMap}`);
    } finally {
      viaDaemon.close();
      direct.close();
    }
    await d.api.detach(dnsAtt.id);

    // 7. A DNS flood against one attachment: the others' latency, and the log.
    const flood = await floodSection(d, args.cgroups, out);

    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    out(
      `targets: attach p99 < 50 ms: ${verdict(pct(seqTimes, 99) < 50 && pct(concTimes, 99) < 50)} (cgroup sequential ${pct(seqTimes, 99).toFixed(1)} ms, concurrent ${pct(concTimes, 99).toFixed(1)} ms, TC ${pct(tcTimes, 99).toFixed(1)} ms); ` +
        `RSS < 150 MB at ${SEQUENTIAL}: ${verdict(rss200.rss < 150)}; command -> map p99 < 5 ms: ${verdict(pct(at200.add, 99) < 5)} (${pct(at200.add, 99).toFixed(2)} ms at 200 attachments, ${pct(at1.add, 99).toFixed(2)} ms at 1); ` +
        `flood: others' DNS p99 <= 1.5x quiet: ${verdict(flood.ratio <= 1.5)} (${flood.ratio.toFixed(2)}x); log < 1 MB per 1,000,000 packets: ${verdict(flood.bytesPerMillion < 1_000_000)}`,
    );
  } finally {
    await d.stop();
    await cp.stop();
  }
}

exitWith(main);
