// netfence-dns end to end: flags and a YAML file, one JSON log line per query.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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

async function run(args: string[]): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 200; i++) {
    const m = /listening on [\d.]+:(\d+)/.exec(err);
    if (m) return { child, port: Number(m[1]), lines };
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
  const { child, port, lines } = await run([
    '--listen', '127.0.0.1:0', '--upstream', up.upstream, '--mode', 'allowlist', '--allow', '*.pypi.org', '--deny', 'ads.pypi.org', '--log-queries',
  ]);
  try {
    expect((await dig('127.0.0.1', port, 'files.pypi.org')).answers[0]?.data).toBe('203.0.113.10');
    expect((await dig('127.0.0.1', port, 'ads.pypi.org', 'A', ['+tcp'])).status).toBe('REFUSED');
    await sleep(100);
    const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs).toHaveLength(2);
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

test('invalid input exits 2 with a message', () => {
  const bad = spawnSync(process.execPath, [...nodeArgs, '--listen', '127.0.0.1:0', '--allow', 'bad..name'], { encoding: 'utf8' });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/NETFENCE_ERR_DNS_INVALID_OPTIONS/);
  const mode = spawnSync(process.execPath, [...nodeArgs, '--mode', 'nope'], { encoding: 'utf8' });
  expect(mode.status).toBe(2);
});

test('config validation names the key', () => {
  expect(() => parseDnsFilterConfig('mode: allowlist\nallow: pypi.org\n')).toThrow(/allow must be a list of strings/);
  expect(() => parseDnsFilterConfig('bogus: 1\n')).toThrow(/NETFENCE_ERR_DNS_INVALID_CONFIG.*unknown key "bogus"/);
  expect(() => parseDnsFilterConfig('listen: nowhere\n')).toThrow(/listen/);
  expect(parseDnsFilterConfig('mode: denylist\ndeny: [a.test]\n')).toEqual({ mode: 'denylist', deny: ['a.test'] });
});
