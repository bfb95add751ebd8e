// `netfenced events` against a running netfenced (kernel test: real cgroup hooks, real DNS
// filter, the built CLI). A workload's blocked connect to an address it learned from a DNS
// answer shows up in `events --follow --id X --json` with its destination, port and the name it
// was learned from, and so does a refused DNS name; without --follow the recent events are
// printed and the command exits. (A slow subscriber's bound is unit-tested: event-hub.test.ts.)

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createDaemonLab, eventually, NAMES, SERVER_PORT, startDaemon, webPolicy, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';

jest.setTimeout(60_000);

const LEARNED = 'allowed.test';
const LEARNED_ADDR = NAMES[LEARNED];
const ALSO = 'www.allowed.test';
const REFUSED = 'evil.test';

// allowed.test is allowed by name (its answer is learned into the allow map) but its address is
// denied by CIDR (deny wins a tie of prefixes): the connect is dropped (reason deny_cidr) and the
// drop names the DNS name the address was learned from. evil.test is not allowed: refused.
const POLICY = webPolicy([`ALLOW ${LEARNED}`, `ALLOW ${ALSO}`, `DENY ${LEARNED_ADDR}/32`]);

let dl: DaemonLab;
let d: DaemonProcess;

beforeAll(async () => {
  dl = await createDaemonLab();
  const policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, POLICY);
  d = await startDaemon(dl, writeDaemonConfig(dl, 'events', { policy_file: policy }));
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

type Ev = Record<string, unknown>;
const parse = (out: string): Ev[] =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Ev);
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a blocked connect to an address learned via DNS and a refused name are streamed by events --follow --id --json; without --follow the recent events print and the command exits', async () => {
  const cg = dl.cgroup('events');
  const r = await d.cli(['attach', '--cgroup', cg.path, '--metadata', 'tenant=web', '--json']);
  expect(r.code).toBe(0);
  const { id, dnsAddress } = JSON.parse(r.stdout) as { id: string; dnsAddress: string };
  const otherCg = dl.cgroup('other');
  const other = JSON.parse((await d.cli(['attach', '--cgroup', otherCg.path, '--metadata', 'tenant=web', '--json'])).stdout) as { id: string; dnsAddress: string };

  // One DNS decision before the stream opens: replayed first (--recent), which also tells the
  // test the stream is open; everything after it must arrive live.
  expect((await dl.dig(dnsAddress, ALSO, { cgroup: cg })).answers).toEqual([NAMES[ALSO]]);
  let follower: ChildProcess | undefined;
  let out = '';
  let err = '';
  try {
    follower = spawn('node', [CLI, '--socket', d.socket, 'events', '--follow', '--id', id, '--json', '--recent', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    follower.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    follower.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const diag = () => `(stdout: ${out}, stderr: ${err}, exit: ${String(follower?.exitCode)}, log: ${d.logTail(15)})`;
    await eventually(() => (parse(out).some((e) => e.type === 'dns' && e.name === ALSO) ? true : undefined), `the replayed DNS decision ${diag()}`);

    expect((await dl.dig(dnsAddress, LEARNED, { cgroup: cg })).answers).toEqual([LEARNED_ADDR]);
    expect(await dl.canConnect(LEARNED_ADDR, { cgroup: cg })).toBe(false);
    expect((await dl.dig(dnsAddress, REFUSED, { cgroup: cg })).answers).toEqual([]);
    // The other attachment's traffic must not reach this --id stream.
    expect((await dl.dig(other.dnsAddress, LEARNED, { cgroup: otherCg })).answers).toEqual([LEARNED_ADDR]);

    const events = await eventually(() => {
      const es = parse(out);
      return es.some((e) => e.type === 'drop') && es.some((e) => e.type === 'dns' && e.name === REFUSED) ? es : undefined;
    }, `a drop and a refused DNS name on the --follow stream ${diag()}`);
    expect(events.every((e) => e.attachmentId === id)).toBe(true); // --id filters
    expect(events.find((e) => e.type === 'drop')).toMatchObject({ attachmentId: id, destination: LEARNED_ADDR, port: SERVER_PORT, protocol: 'tcp', reason: 'deny_cidr', learnedFrom: LEARNED, dryRun: false });
    expect(events.find((e) => e.type === 'dns' && e.name === LEARNED)).toMatchObject({ qtype: 'A', verdict: 'allowed', rcode: 'NOERROR', addresses: [LEARNED_ADDR] });
    expect(events.find((e) => e.type === 'dns' && e.name === REFUSED)).toMatchObject({ qtype: 'A', verdict: 'blocked', reason: 'no-match', rcode: 'REFUSED', addresses: [] });
    for (const e of events) expect(new Date(String(e.time)).toISOString()).toBe(e.time);
    expect(follower.exitCode).toBeNull(); // still following
  } finally {
    follower?.kill('SIGTERM');
  }

  // Without --follow: the recent events (human text, one line each), then exit 0.
  const recent = await d.cli(['events', '--id', id]);
  expect(recent.code).toBe(0);
  expect(recent.stdout).toMatch(new RegExp(` ${id} dns ${re(LEARNED)} A allowed NOERROR ${re(LEARNED_ADDR)}\\n`));
  expect(recent.stdout).toMatch(new RegExp(` ${id} drop ${re(LEARNED_ADDR)}:${SERVER_PORT}/tcp deny_cidr learned-from=${re(LEARNED)} hook=\\w+\\n`));
  expect(recent.stdout).not.toContain(other.id);
  const otherRecent = await d.cli(['events', '--id', other.id, '--json']);
  expect(otherRecent.code).toBe(0);
  expect(parse(otherRecent.stdout).map((e) => [e.attachmentId, e.type, e.name])).toEqual([[other.id, 'dns', LEARNED]]);
  const recent1 = await d.cli(['events', '--recent', '1', '--json']);
  expect([recent1.code, parse(recent1.stdout).length]).toEqual([0, 1]);
});

// The daemon's log (the same run): one format on every line (pino JSON, ISO time, base
// {service}), no key written twice, and the "attached" line carries the attachment's metadata.
test('every daemon log line is JSON with an ISO time and service, no repeated key; "attached" carries the metadata', () => {
  const lines = readFileSync(d.logFile, 'utf8').split('\n').filter(Boolean);
  expect(lines.length).toBeGreaterThan(5);
  for (const line of lines) {
    const o = JSON.parse(line) as Ev;
    expect([line, o.service, typeof o.level, new Date(String(o.time)).toISOString()]).toEqual([line, 'netfenced', 'number', o.time]);
    // A repeated key is lost by JSON.parse: the re-serialised line is then shorter.
    expect([line, JSON.stringify(o).length]).toEqual([line, line.length]);
  }
  const attached = lines.map((l) => JSON.parse(l) as Ev).filter((o) => o.msg === 'attached');
  expect(attached.length).toBe(2);
  for (const o of attached) expect(o.metadata).toEqual({ tenant: 'web' });
  expect(lines.some((l) => l.includes('"component":"controlplane-client"'))).toBe(true);
});
