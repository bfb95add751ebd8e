// Test helpers: a dnsmasq upstream on loopback with a query log, a tiny
// programmable upstream built on dns2's codec (independent of ours), and dig.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import dns2 from 'dns2';
import { createDnsFilter, type DnsFilter } from '@netfence/dns-filter';

const { Packet } = dns2;

type FilterOptions = Parameters<typeof createDnsFilter>[0];

/**
 * A `start(opts)` that creates a filter over `defaults()` (read at each start: they may name
 * an upstream started in beforeAll), and closes every filter it started after each test.
 */
export function filterStarter(defaults: () => FilterOptions): (opts?: Partial<FilterOptions>) => Promise<DnsFilter> {
  const filters: DnsFilter[] = [];
  afterEach(async () => {
    await Promise.all(filters.splice(0).map((f) => f.close()));
  });
  return async (opts = {}) => {
    const f = await createDnsFilter({ ...defaults(), ...opts });
    filters.push(f);
    return f;
  };
}

/** A random loopback address 127.x.y.z (x in 80..119) so parallel suites don't collide. */
export function loopbackAddress(): string {
  const r = (n: number): number => Math.floor(Math.random() * n);
  return `127.${80 + r(40)}.${1 + r(250)}.${1 + r(250)}`;
}

/** A port free on both UDP and TCP at `address`. */
export async function freePort(address: string): Promise<number> {
  for (;;) {
    const u = dgram.createSocket('udp4');
    const port = await new Promise<number>((res, rej) => {
      u.once('error', rej);
      u.bind(0, address, () => res(u.address().port));
    });
    const ok = await new Promise<boolean>((res) => {
      const s = net.createServer();
      s.once('error', () => res(false));
      s.listen(port, address, () => s.close(() => res(true)));
    });
    await new Promise<void>((res) => u.close(() => res()));
    if (ok) return port;
  }
}

export interface Dnsmasq {
  readonly address: string;
  readonly port: number;
  readonly upstream: string;
  /** Names dnsmasq logged a query for ("query[A] name from ..."). */
  queriedNames(): string[];
  stop(): Promise<void>;
}

/** Starts dnsmasq answering only from its own records (--no-resolv --no-hosts), logging queries to a file. */
export async function startDnsmasq(args: readonly string[], address = loopbackAddress()): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), 'nf-dnsmasq-'));
  const log = join(dir, 'queries.log');
  const port = await freePort(address);
  const child: ChildProcess = spawn(
    'dnsmasq',
    [
      '-k',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      '--bind-interfaces',
      `--listen-address=${address}`,
      `--port=${port}`,
      '--user=root',
      '--cache-size=0',
      '--log-queries',
      `--log-facility=${log}`,
      `--pid-file=${join(dir, 'pid')}`,
      ...args,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // wait until it answers
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr}`);
    const r = await dig(address, port, 'startup.probe', 'A', ['+tries=1', '+time=1']).catch(() => undefined);
    if (r && r.status !== '') break;
    if (Date.now() > deadline) throw new Error(`dnsmasq did not start: ${stderr}`);
    await sleep(50);
  }
  return {
    address,
    port,
    upstream: `${address}:${port}`,
    queriedNames() {
      if (!existsSync(log)) return [];
      const out: string[] = [];
      for (const line of readFileSync(log, 'utf8').split('\n')) {
        const m = /query\[[A-Z0-9]+\] (\S+) from/.exec(line);
        if (m && m[1] !== 'startup.probe') out.push(m[1]!.toLowerCase());
      }
      return out;
    },
    async stop() {
      if (child.exitCode === null) {
        const done = new Promise<void>((res) => child.once('exit', () => res()));
        child.kill('SIGTERM');
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface DigResult {
  readonly status: string;
  readonly flags: string[];
  /** Answer records: [name, ttl, type, data]. */
  readonly answers: { name: string; ttl: number; type: string; data: string }[];
  readonly raw: string;
}

export function dig(address: string, port: number, name: string, type = 'A', extra: readonly string[] = []): Promise<DigResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'dig',
      [`@${address}`, '-p', String(port), name, type, '+tries=1', '+time=3', ...extra],
      { timeout: 15000 },
      (err, stdout) => {
        if (err && !stdout) return reject(err);
        const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? '';
        const flags = /;; flags: ([a-z ]+);/.exec(stdout)?.[1]?.trim().split(/\s+/) ?? [];
        const answers: DigResult['answers'] = [];
        const sec = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(stdout);
        if (sec) {
          for (const line of sec[1]!.split('\n')) {
            const f = line.split(/\s+/);
            if (f.length >= 5) answers.push({ name: f[0]!.replace(/\.$/, ''), ttl: Number(f[1]), type: f[3]!, data: f.slice(4).join(' ').replace(/\.$/, '') });
          }
        }
        resolve({ status, flags, answers, raw: stdout });
      },
    );
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

type Handler = (req: InstanceType<typeof Packet>, transport: 'udp' | 'tcp', rinfo: { address: string; port: number }) => Buffer | InstanceType<typeof Packet> | undefined | Promise<Buffer | InstanceType<typeof Packet> | undefined>;

export interface FakeUpstream {
  readonly address: string;
  readonly port: number;
  readonly upstream: string;
  readonly seen: { name: string; type: number; transport: 'udp' | 'tcp' }[];
  /** The raw UDP socket (to send unsolicited packets to the filter). */
  readonly udp: dgram.Socket;
  stop(): Promise<void>;
}

/**
 * A programmable upstream using dns2's codec: the handler gets the parsed
 * request and returns a Packet (serialised by dns2) or raw bytes, or nothing (no answer).
 */
export async function startFakeUpstream(handler: Handler, address = loopbackAddress()): Promise<FakeUpstream> {
  const port = await freePort(address);
  const seen: FakeUpstream['seen'] = [];
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((res) => udp.bind(port, address, () => res()));
  udp.on('message', async (msg, rinfo) => {
    let req;
    try {
      req = Packet.parse(msg);
    } catch {
      return;
    }
    const q = req.questions[0];
    if (q) seen.push({ name: String(q.name).toLowerCase(), type: q.type, transport: 'udp' });
    const resp = await handler(req, 'udp', rinfo);
    if (resp === undefined) return;
    udp.send(Buffer.isBuffer(resp) ? resp : resp.toBuffer(), rinfo.port, rinfo.address);
  });
  const conns = new Set<net.Socket>();
  const tcp = net.createServer((sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    let acc = Buffer.alloc(0);
    sock.on('data', async (chunk: Buffer) => {
      acc = Buffer.concat([acc, chunk]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        const n = acc.readUInt16BE(0);
        const msg = acc.subarray(2, 2 + n);
        acc = acc.subarray(2 + n);
        const req = Packet.parse(msg);
        const q = req.questions[0];
        if (q) seen.push({ name: String(q.name).toLowerCase(), type: q.type, transport: 'tcp' });
        const resp = await handler(req, 'tcp', { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 });
        if (resp === undefined) continue;
        const b = Buffer.isBuffer(resp) ? resp : resp.toBuffer();
        const len = Buffer.alloc(2);
        len.writeUInt16BE(b.length);
        sock.write(Buffer.concat([len, b]));
      }
    });
  });
  await new Promise<void>((res) => tcp.listen(port, address, () => res()));
  return {
    address,
    port,
    upstream: `${address}:${port}`,
    seen,
    udp,
    async stop() {
      for (const c of conns) c.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}

/**
 * For suites that only need names answered: a fake upstream answering every question with one
 * A record, `address` (started in beforeAll, stopped in afterAll), and a filterStarter over it
 * (mode disabled, no cache).
 */
export function forwardingFilterStarter(address: string): (opts?: Partial<FilterOptions>) => Promise<DnsFilter> {
  let up: FakeUpstream | undefined;
  beforeAll(async () => {
    up = await startFakeUpstream((req) => answer(req, [{ name: req.questions[0]!.name, type: Packet.TYPE.A, address }]));
  });
  afterAll(async () => {
    await up?.stop();
  });
  return filterStarter(() => ({ mode: 'disabled', upstreams: [up!.upstream], cacheSize: 0 }));
}

/** A dns2 response to `req` with the given answers. */
export function answer(
  req: InstanceType<typeof Packet>,
  answers: { name: string; type: number; ttl?: number; [k: string]: unknown }[],
  opts: { rcode?: number; tc?: boolean; authorities?: { name: string; type: number; ttl?: number; [k: string]: unknown }[] } = {},
): InstanceType<typeof Packet> {
  const res = Packet.createResponseFromRequest(req);
  res.header.ra = 1;
  if (opts.rcode !== undefined) res.header.rcode = opts.rcode;
  if (opts.tc) res.header.tc = 1;
  for (const a of answers) {
    res.answers.push({ class: Packet.CLASS.IN, ttl: 300, ...a } as never);
  }
  for (const a of opts.authorities ?? []) res.authorities.push({ class: Packet.CLASS.IN, ttl: 300, ...a } as never);
  return res;
}

export { Packet };
