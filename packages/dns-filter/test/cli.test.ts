// netfence-dns end to end: flags and a YAML file, one JSON log line per query.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parseDnsFilterConfig } from '../src/config-file';
import { dig, sleep, startDnsmasq, type Dnsmasq } from './helpers';

jest.setTimeout(30000);

const root = join(__dirname, '..');
const nodeArgs = ['-r', join(root, '..', '..', 'tools', 'swc-register.cjs'), join(root, 'src/cli.ts')];

let up: Dnsmasq;
beforeAll(async () => {
  up = await startDnsmasq(['--address=/pypi.org/203.0.113.10']);
});
afterAll(async () => {
  await up?.stop();
});

/** netfence-dns's log lines (stderr): every one must be the daemon's format. */
interface LogLine extends Record<string, unknown> {
  level: number;
  time: string;
  service: string;
  msg: string;
}

async function run(args: string[]): Promise<{ child: ChildProcess; port: number; lines: string[]; logs: LogLine[]; stderr: () => string }> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = []; // the query log's lines (event query or suppressed)
  const logs: LogLine[] = [];
  let err = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => lines.push(`stdout: ${d.toString()}`)); // nothing may go there
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      const j = JSON.parse(l) as LogLine;
      logs.push(j);
      if (j.event === 'query' || j.event === 'suppressed') lines.push(l);
    }
  });
  for (let i = 0; i < 200; i++) {
    const m = /listening on [\d.]+:(\d+)/.exec(err);
    if (m) return { child, port: Number(m[1]), lines, logs, stderr: () => err };
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`netfence-dns did not start: ${err}`);
}

async function stop(child: ChildProcess): Promise<number | null> {
  const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return done;
}

test('flags: allowlist with a deny, --log-queries prints one JSON line per query', async () => {
  const { child, port, lines, logs: all } = await run([
    '--listen', '127.0.0.1:0', '--upstream', up.upstream, '--mode', 'allowlist', '--allow', '*.pypi.org', '--deny', 'ads.pypi.org', '--log-queries',
  ]);
  try {
    expect((await dig('127.0.0.1', port, 'files.pypi.org')).answers[0]?.data).toBe('203.0.113.10');
    expect((await dig('127.0.0.1', port, 'ads.pypi.org', 'A', ['+tcp'])).status).toBe('REFUSED');
    await sleep(100);
    const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs).toHaveLength(2);
    // one format with the daemon and the control plane: pino JSON on stderr, ISO time, service, no repeated key
    for (const l of all) {
      expect(l).toMatchObject({ level: expect.any(Number), service: 'netfence-dns', msg: expect.any(String) });
      expect(new Date(l.time).toISOString()).toBe(l.time);
    }
    for (const raw of lines) expect(JSON.stringify(JSON.parse(raw)).length).toBe(raw.length);
    expect(all.find((l) => /listening on/.test(l.msg))).toMatchObject({ level: 30, mode: 'allowlist' });
    expect(logs[0]).toMatchObject({ name: 'files.pypi.org', qtype: 'A', verdict: 'allowed', rule: 'allow *.pypi.org', rcode: 'NOERROR', transport: 'udp', addresses: ['203.0.113.10'] });
    expect(logs[1]).toMatchObject({ name: 'ads.pypi.org', verdict: 'blocked', rule: 'deny ads.pypi.org', rcode: 'REFUSED', transport: 'tcp' });
  } finally {
    expect(await stop(child)).toBe(0);
  }
});

test('YAML config file; flags override it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nf-dns-cli-'));
  try {
    const file = join(dir, 'dns.yaml');
    writeFileSync(file, `listen: 127.0.0.1:0\nupstreams: [${up.upstream}]\nmode: denylist\ndeny: ['*.pypi.org']\nblockResponse: nxdomain\n`);
    const { child, port } = await run(['--config', file]);
    try {
      expect((await dig('127.0.0.1', port, 'files.pypi.org')).status).toBe('NXDOMAIN');
    } finally {
      await stop(child);
    }
    const second = await run(['--config', file, '--mode', 'disabled']);
    try {
      expect((await dig('127.0.0.1', second.port, 'files.pypi.org')).status).toBe('NOERROR');
    } finally {
      await stop(second.child);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.each([
  [['--min-ttl', 'abc'], /--min-ttl.*'abc'.*whole number of seconds/],
  [['--cache-size', '-5'], /--cache-size.*'-5'.*whole number of entries from 0 to 1000000/],
  [['--cache-size', '2000000'], /--cache-size.*'2000000'/],
  [['--max-ttl', '99999999999'], /--max-ttl.*'99999999999'.*from 0 to 2147483647/],
  [['--min-ttl', '1.5'], /--min-ttl.*'1.5'/],
  [['--listen', 'nowhere'], /--listen.*'nowhere'.*ADDRESS:PORT/],
  [['--listen', '127.0.0.1:99999'], /--listen.*'127.0.0.1:99999'/],
  [['--upstream', 'dns.example'], /--upstream.*'dns.example'.*not an IP address/],
  [['--allow', 'bad..name'], /--allow.*'bad..name'.*empty label/],
  [['--deny', '*.'], /--deny.*'\*\.'/],
  [['--mode', 'nope'], /--mode.*'nope'.*disabled, allowlist, denylist/],
  [['--block-response', 'drop'], /--block-response.*'drop'/],
  [['--min-ttl'], /--min-ttl.*argument missing/],
  [['--bogus'], /unknown option '--bogus'/],
  [['--min-ttl', '100', '--max-ttl', '50'], /minimum TTL \(--min-ttl 100\) is above the maximum TTL \(--max-ttl 50\)/],
  [['--max-ttl', '10'], /minimum TTL \(the default 30\) is above the maximum TTL \(--max-ttl 10\)/],
  [['--config', '/nonexistent/nf-dns.yaml'], /cannot read \/nonexistent\/nf-dns.yaml/],
])('bad flag %p: exit 2 and a message naming the flag and the value', (args, message) => {
  const r = spawnSync(process.execPath, [...nodeArgs, '--listen', '127.0.0.1:0', ...args], { encoding: 'utf8', timeout: 15000 });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^netfence-dns: /);
  expect(r.stderr).toMatch(message);
});

test('without --mode the default mode is said at start', async () => {
  const { child, port, stderr } = await run(['--listen', '127.0.0.1:0', '--upstream', up.upstream, '--allow', '*.pypi.org']);
  try {
    expect(stderr()).toMatch(/no --mode given .*default mode, allowlist/);
    expect(stderr()).toMatch(/mode allowlist/);
    expect((await dig('127.0.0.1', port, 'other.test')).status).toBe('REFUSED');
  } finally {
    await stop(child);
  }
  const explicit = await run(['--listen', '127.0.0.1:0', '--mode', 'denylist']);
  try {
    expect(explicit.stderr()).not.toMatch(/no --mode given/);
  } finally {
    await stop(explicit.child);
  }
});

test('snake_case YAML keys; camelCase still read with a deprecation line on stderr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nf-dns-cli-'));
  try {
    const file = join(dir, 'dns.yaml');
    writeFileSync(file, `listen: 127.0.0.1:0\nupstreams: [${up.upstream}]\nmode: allowlist\nallow: [files.pypi.org]\nblock_response: nxdomain\nmin_ttl: 40\nmax_ttl: 50\ncache_size: 0\nlog_queries: true\n`);
    const a = await run(['--config', file]);
    try {
      const r = await dig('127.0.0.1', a.port, 'files.pypi.org');
      expect(r.answers[0]?.ttl).toBeGreaterThanOrEqual(40);
      expect(r.answers[0]?.ttl).toBeLessThanOrEqual(50);
      expect((await dig('127.0.0.1', a.port, 'ads.pypi.org')).status).toBe('NXDOMAIN');
      await sleep(100);
      expect(a.lines.length).toBe(2); // log_queries
      expect(a.stderr()).not.toMatch(/deprecated/);
    } finally {
      await stop(a.child);
    }
    writeFileSync(file, `listen: 127.0.0.1:0\nupstreams: [${up.upstream}]\nmode: denylist\ndeny: [ads.pypi.org]\nblockResponse: nxdomain\n`);
    const b = await run(['--config', file]);
    try {
      expect(b.logs).toContainEqual(expect.objectContaining({ level: 40, service: 'netfence-dns', msg: `${file}: key blockResponse is deprecated, write block_response` }));
      expect((await dig('127.0.0.1', b.port, 'ads.pypi.org')).status).toBe('NXDOMAIN');
    } finally {
      await stop(b.child);
    }
    writeFileSync(file, `min_ttl: abc\n`);
    const bad = spawnSync(process.execPath, [...nodeArgs, '--config', file], { encoding: 'utf8', timeout: 15000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`${file}: min_ttl must be a whole number of seconds from 0 to 2147483647 (got "abc")`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--log-queries under a flood of 100,000 garbage packets: bounded lines, the rest counted as suppressed', async () => {
  const { child, port, lines } = await run(['--listen', '127.0.0.1:0', '--mode', 'allowlist', '--log-queries']);
  const sock = dgram.createSocket('udp4');
  let replies = 0;
  let sent = 0;
  const t0 = Date.now();
  try {
    sock.on('message', () => replies++);
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    sock.setRecvBufferSize(8 * 1024 * 1024);
    while (sent < 100_000) {
      const waitFrom = Date.now();
      while (sent - replies > 1000 && Date.now() - waitFrom < 200) await sleep(1);
      for (let i = 0; i < 200; i++) {
        const b = randomBytes(12 + Math.floor(Math.random() * 40));
        b[2]! &= 0x7f; // a query, so most get a FORMERR/NOTIMP answer (and a query event)
        sock.send(b, port, '127.0.0.1');
      }
      sent += 200;
      await new Promise((r) => setImmediate(r));
    }
    const end = Date.now() + 3000;
    while (replies < sent && Date.now() < end) await sleep(10);
  } finally {
    sock.close();
    expect(await stop(child)).toBe(0); // writes the last summary
  }
  const elapsedSec = (Date.now() - t0) / 1000;
  const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const queryLines = logs.filter((l) => l.event === 'query');
  const summaries = logs.filter((l) => l.event === 'suppressed');
  const suppressed = logs.reduce((n, l) => n + (typeof l.suppressed === 'number' ? l.suppressed : 0), 0);
  expect(replies).toBeGreaterThan(50_000);
  // 50 at once, then 20 a second for this client and verdict
  expect(queryLines.length).toBeLessThanOrEqual(50 + Math.ceil(elapsedSec * 20) + 1);
  expect(summaries.length).toBeGreaterThanOrEqual(1);
  expect(summaries[0]).toMatchObject({ client: '127.0.0.1', verdict: 'invalid' });
  // every event is a written line or counted: at least one per reply, at most one per packet
  expect(queryLines.length + suppressed).toBeGreaterThanOrEqual(replies);
  expect(queryLines.length + suppressed).toBeLessThanOrEqual(sent);
});

test('config validation names the key', () => {
  expect(() => parseDnsFilterConfig('mode: allowlist\nallow: pypi.org\n')).toThrow(/allow must be a list of strings/);
  expect(() => parseDnsFilterConfig('bogus: 1\n')).toThrow(/NETFENCE_ERR_DNS_INVALID_CONFIG.*unknown key "bogus"/);
  expect(() => parseDnsFilterConfig('listen: nowhere\n')).toThrow(/listen "nowhere": expected ADDRESS:PORT/);
  expect(() => parseDnsFilterConfig('allow: [ok.test, "bad..name"]\n')).toThrow(/allow\[1\] "bad..name": invalid domain name/);
  expect(() => parseDnsFilterConfig('upstreams: [dns.example]\n')).toThrow(/upstreams\[0\] "dns.example": not an IP address/);
  expect(() => parseDnsFilterConfig('cache_size: -5\n')).toThrow(/cache_size must be a whole number of entries from 0 to 1000000 \(got -5\)/);
  expect(() => parseDnsFilterConfig('min_ttl: 100\nmax_ttl: 50\n')).toThrow(/min_ttl \(100\) is above max_ttl \(50\)/);
  expect(() => parseDnsFilterConfig('mode: proxy\n')).toThrow(/mode must be one of disabled, allowlist, denylist/);
  expect(parseDnsFilterConfig('mode: denylist\ndeny: [a.test]\n')).toEqual({ mode: 'denylist', deny: ['a.test'] });
});

test('config keys are snake_case; the camelCase ones are read with a deprecation warning', () => {
  const snake = 'block_response: nxdomain\nmin_ttl: 5\nmax_ttl: 60\ncache_size: 0\nrebinding_protection: true\nrebinding_allowed_names: [a.test]\nlog_queries: true\n';
  const warnings: string[] = [];
  const expected = { blockResponse: 'nxdomain', minTtlSec: 5, maxTtlSec: 60, cacheSize: 0, rebindingProtection: true, rebindingAllowedNames: ['a.test'], logQueries: true };
  expect(parseDnsFilterConfig(snake, 'dns.yaml', { onWarning: (m) => warnings.push(m) })).toEqual(expected);
  expect(warnings).toEqual([]);
  const camel = 'blockResponse: nxdomain\nminTtlSec: 5\nmaxTtlSec: 60\ncacheSize: 0\nrebindingProtection: true\nrebindingAllowedNames: [a.test]\nlogQueries: true\n';
  expect(parseDnsFilterConfig(camel, 'dns.yaml', { onWarning: (m) => warnings.push(m) })).toEqual(expected);
  expect(warnings).toHaveLength(7);
  expect(warnings[1]).toBe('dns.yaml: key minTtlSec is deprecated, write min_ttl');
  expect(() => parseDnsFilterConfig('min_ttl: 5\nminTtlSec: 6\n', 'dns.yaml')).toThrow(/min_ttl and minTtlSec are the same setting: keep min_ttl/);
});
