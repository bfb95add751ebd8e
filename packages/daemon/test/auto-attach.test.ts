// Auto-attach and event-driven targets (issue 13), against the kernel through the built netfenced:
// a workload flooding from before its link exists never reaches a blocked sink; 200 links and 200
// cgroups created at once are all attached (and removed, REMOVED, when they go); `*` never
// matches the loopback (nor, by the unit tests, a default-route device); rules set at run time take
// effect and a bad list is refused whole; a manual attachment's target going is seen at once
// (target_watch_interval 1h here, so no polling could have seen it).
//
// Every rule matches only names this test creates (the lab id in them).

import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { LabNetns } from '@netfence/lab';
import {
  cgroupProgs,
  createDaemonLab,
  eventually,
  launchDaemon,
  pinnedIds,
  savedIds,
  sleep,
  startDaemon,
  startForwardedControlPlane,
  tcxProgIds,
  waitForLine,
  writeDaemonConfig,
  type DaemonLab,
  type DaemonProcess,
} from './support/daemon-lab';
import { grpc, type AttachmentInfoMsg, type GrpcError, type TestControlPlane } from './support/grpc';

jest.setTimeout(240_000);

type Listed = AttachmentInfoMsg & { auto_rule: string };

let dl: DaemonLab;
let cp: TestControlPlane;
let d: DaemonProcess;
/** Names this test creates start with this (nf + the lab id). */
let P: string;
/** The lab cgroup under which the cgroup rule's children are made. */
let jobs: string;

const listAll = async (): Promise<Listed[]> => (await d.api.listAll()) as Listed[];

beforeAll(async () => {
  dl = await createDaemonLab();
  P = `nf${dl.lab.id}`;
  const fwd = await startForwardedControlPlane(dl, 'auto', { ackPolicy: () => ({ mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] }) });
  cp = fwd.cp;
  jobs = dl.cgroup('jobs').path;
  d = await startDaemon(
    dl,
    writeDaemonConfig(dl, 'auto', {
      control_plane: { url: fwd.url },
      log_level: 'info',
      target_watch_interval: '1h',
      auto_attach: [
        { interface: `${P}x*`, metadata: { vm: '{name}', tenant: 'web' } },
        { cgroup: `${jobs}/nfj*`, metadata: { job: '{basename}' } },
      ],
    }),
  );
});
afterAll(async () => {
  await d?.stop();
  await dl?.close();
});

/** A child's stdout, line by line, and a way to ask it for a line (it prints one on SIGUSR1). */
function reader(child: ChildProcess) {
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  return {
    async ask(): Promise<number[]> {
      const n = lines.length;
      child.kill('SIGUSR1');
      await eventually(() => lines.length > n, 'an answer to SIGUSR1', 5000, 10);
      return lines[lines.length - 1]!.split(' ').map(Number);
    },
  };
}

// Counts datagrams to 203.0.113.20:9999; prints the count on SIGUSR1.
const SINK = `
import socket, signal, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('203.0.113.20', 9999))
n = 0
signal.signal(signal.SIGUSR1, lambda *a: print(n, flush=True))
print('ready', flush=True)
while True:
    s.recv(2048)
    n += 1
`;

// Sends a datagram to the sink every 0.2 ms, whether or not there is a route yet; prints "ok failed" on SIGUSR1.
const SENDER = `
import socket, signal, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ok = failed = 0
signal.signal(signal.SIGUSR1, lambda *a: print(ok, failed, flush=True))
print('ready', flush=True)
while True:
    try:
        s.sendto(b'x' * 64, ('203.0.113.20', 9999))
        ok += 1
    except OSError:
        failed += 1
    time.sleep(0.0002)
`;

test('fail closed from the first packet: a workload flooding from before its link exists reaches a blocked sink with 0 datagrams', async () => {
  const ws: LabNetns = dl.lab.netns('a');
  dl.net.exec('ip', ['route', 'add', '10.200.5.0/24', 'via', '10.200.2.1']);
  const sink = dl.net.spawn('python3', ['-c', SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(sink, 'ready', 10_000);
  const sinkCount = reader(sink);
  const sender = ws.spawn('python3', ['-c', SENDER], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(sender, 'ready', 10_000);
  const sent = reader(sender);
  await sleep(200);
  const [okBefore, failedBefore] = await sent.ask();
  expect(okBefore).toBe(0); // no link, no route: every send fails
  expect(failedBefore).toBeGreaterThan(0);

  const host = `${P}x0`;
  const peer = `${P}y0`;
  // The link appears (down), then is configured and brought up at once, without waiting for the daemon.
  dl.host.exec('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', ws.name]);
  dl.host.exec('sh', [
    '-c',
    `ip addr add 10.200.5.1/24 dev ${host} && ip link set ${host} up && ip -n ${ws.name} addr add 10.200.5.2/24 dev ${peer} && ip -n ${ws.name} link set ${peer} up && ip -n ${ws.name} route add 203.0.113.0/24 via 10.200.5.1`,
  ]);
  await eventually(async () => (await sent.ask())[0]! > 2000, 'the sender sending through the new link');
  await sleep(500);
  const [received] = await sinkCount.ask();
  expect(received).toBe(0);

  const a = (await listAll()).find((x) => x.target === host)!;
  expect(a).toMatchObject({ auto_rule: `interface:${P}x*`, metadata: { vm: host, tenant: 'web' }, tc_direction: 'ingress', mode: 'POLICY_MODE_ALLOWLIST' });
  expect(Number(a.packets_blocked)).toBeGreaterThan(1000); // the flood reached the filter, which dropped it
  const sub = cp.events.find((e) => e.msg.event === 'subscribed' && e.msg.subscribed!.id === a.id);
  expect(sub?.msg.subscribed?.metadata).toEqual({ vm: host, tenant: 'web' });
  expect(tcxProgIds(dl.host, host)).toHaveLength(1);

  // The control: without the filter the same flood reaches the sink (so 0 above was the filter).
  await d.api.detach(a.id);
  await eventually(async () => (await sinkCount.ask())[0]! > 0, 'datagrams at the sink once the filter is gone');
  // A detached auto attachment stays detached while its link lives (its flags changing does not re-attach it).
  dl.host.exec('ip', ['link', 'set', host, 'down']);
  dl.host.exec('ip', ['link', 'set', host, 'up']);
  await sleep(300);
  expect((await listAll()).some((x) => x.target === host)).toBe(false);
  sender.kill('SIGKILL');
  sink.kill('SIGKILL');
  dl.host.exec('ip', ['link', 'del', host]);
});

test('block-all until the attachment\'s own SubscribedAck is applied: a link made behind a burst of 500 carries no datagram to the sink until then, and its ack opens it', async () => {
  const ws = dl.lab.netns('q');
  const sink = dl.net.spawn('python3', ['-c', SINK.replace("9999", "9998")], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(sink, 'ready', 10_000);
  const sinkCount = reader(sink);
  const sender = ws.spawn('python3', ['-c', SENDER.replace("9999", "9998")], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(sender, 'ready', 10_000);
  const sent = reader(sender);
  dl.net.exec('ip', ['route', 'add', '10.200.6.0/24', 'via', '10.200.2.1']);
  const N = 500;
  const burst = Array.from({ length: N }, (_, i) => `${P}xq${i}`);
  const batch = join(dl.tmp, 'burst.batch');
  writeFileSync(batch, burst.map((n, i) => `link add ${n} type veth peer name ${P}pq${i}\n`).join(''));
  const host = `${P}xw`;
  const peer = `${P}yw`;
  const pinsBefore = pinnedIds(dl).length;
  // The control plane holds every ack back: each auto attachment stays in BLOCK_ALL however long
  // its ack takes (a withheld ack is the longest such window). That the kernel attach itself is
  // made in BLOCK_ALL, before the rest of the attach, is tested where it can be held still: the
  // registry's unit test (the mode it asks for, synchronously) and bpf-datapath.test.ts (an attach
  // in BLOCK_ALL blocks before any command); here the daemon finishes too fast to look between.
  cp.ackMode = 'never';
  try {
    dl.host.exec('ip', ['-batch', batch]);
    dl.host.exec('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', ws.name]);
    // Its filter is in the kernel, made on its event, the last of the burst's (an attachment's pins
    // are made with its kernel objects; read in-process, no command to wait for) ...
    await eventually(() => pinnedIds(dl).length === pinsBefore + N + 1, 'every filter of the burst in the kernel', 20_000, 2);
    dl.host.exec('sh', [
      '-c',
      `ip addr add 10.200.6.1/24 dev ${host} && ip link set ${host} up && ip -n ${ws.name} addr add 10.200.6.2/24 dev ${peer} && ip -n ${ws.name} link set ${peer} up && ip -n ${ws.name} route add 203.0.113.0/24 via 10.200.6.1`,
    ]);
    expect(tcxProgIds(dl.host, host)).toHaveLength(1);
    await eventually(async () => (await sent.ask())[0]! > 1000, 'the sender sending through the new link', 10_000);
    // ... and its attach is done (DNS server, record, Subscribed), its ack still held back.
    const a = await eventually(async () => (await listAll()).find((x) => x.target === host), 'its attach done', 60_000, 100);
    expect(a.mode).toBe('POLICY_MODE_BLOCK_ALL');
    await cp.waitFor((e) => e.msg.event === 'subscribed' && e.msg.subscribed!.id === a.id, 10_000, 'its Subscribed');
    await sleep(300);
    expect((await sinkCount.ask())[0]).toBe(0);
    // The control: its ack, allowing the sink, opens it (so 0 above was the block-all, not a policy).
    cp.send({ id: a.id, subscribed_ack: { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.20/32' }] } });
    await eventually(async () => (await sinkCount.ask())[0]! > 0, 'datagrams at the sink once its ack is applied');
  } finally {
    cp.ackMode = 'auto';
  }
  sender.kill('SIGKILL');
  sink.kill('SIGKILL');
  writeFileSync(batch, [...burst, host].map((n) => `link del ${n}\n`).join(''));
  dl.host.exec('ip', ['-batch', batch]);
  await eventually(async () => !(await listAll()).some((x) => x.target.startsWith(`${P}xq`) || x.target === host), 'the burst removed', 60_000, 100);
});

test('200 links created at once (ip -batch) are all attached, and each is removed (REMOVED) when its link is deleted', async () => {
  const N = 200;
  const names = Array.from({ length: N }, (_, i) => `${P}xb${i}`);
  const batch = join(dl.tmp, 'links.batch');
  writeFileSync(batch, names.map((n, i) => `link add ${n} type veth peer name ${P}pb${i}\n`).join(''));
  const from = cp.events.length;
  dl.host.exec('ip', ['-batch', batch]);
  const listed = await eventually(async () => {
    const all = (await listAll()).filter((x) => names.includes(x.target));
    return all.length === N ? all : undefined;
  }, `${N} auto attachments`, 60_000, 100);
  expect(listed.every((x) => x.auto_rule === `interface:${P}x*` && x.metadata.vm === x.target)).toBe(true);
  expect((await listAll()).some((x) => x.target.startsWith(`${P}pb`))).toBe(false); // the peers match no rule
  for (const i of [0, N >> 1, N - 1]) expect(tcxProgIds(dl.host, names[i]!)).toHaveLength(1);
  const ids = new Set(listed.map((x) => x.id));
  await eventually(() => cp.events.slice(from).filter((e) => e.msg.event === 'subscribed' && ids.has(e.msg.subscribed!.id)).length === N, `${N} Subscribed`, 30_000);

  writeFileSync(batch, names.map((n) => `link del ${n}\n`).join(''));
  const gone = cp.events.length;
  dl.host.exec('ip', ['-batch', batch]);
  await eventually(async () => !(await listAll()).some((x) => ids.has(x.id)), 'every auto attachment removed', 60_000, 100);
  const removed = cp.events.slice(gone).filter((e) => e.msg.event === 'unsubscribed' && ids.has(e.msg.unsubscribed!.id));
  const unsubscribed = () => cp.events.slice(gone).filter((e) => e.msg.event === 'unsubscribed' && ids.has(e.msg.unsubscribed!.id)).length;
  await eventually(() => unsubscribed() === N, `${N} Unsubscribed`, 30_000).catch((e: Error) => {
    // What the daemon said meanwhile, to tell a lost Unsubscribed from a slow one.
    const said = readFileSync(d.logFile, 'utf8').split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10);
    throw new Error(`${e.message} (${unsubscribed()} of ${N}; streams opened ${cp.events.filter((x) => x.msg.event === 'sync').length}); daemon warnings:\n${said.join('\n')}`);
  });
  expect(removed.every((e) => e.msg.unsubscribed!.reason === 'UNSUBSCRIBE_REASON_REMOVED')).toBe(true);
  await eventually(() => !pinnedIds(dl).some((id) => ids.has(id)), 'their pins removed');
  expect(savedIds(d).filter((id) => ids.has(id))).toEqual([]);
});

test('200 cgroups created at once are all attached (and removed when they go)', async () => {
  const N = 200;
  const paths = Array.from({ length: N }, (_, i) => join(jobs, `nfj${i}`));
  dl.lab.defer(() => {
    for (const p of paths) if (existsSync(p)) rmdirSync(p);
  });
  mkdirSync(join(jobs, 'other')); // matches no rule
  dl.lab.defer(() => rmdirSync(join(jobs, 'other')));
  for (const p of paths) mkdirSync(p);
  const listed = await eventually(async () => {
    const all = (await listAll()).filter((x) => paths.includes(x.target));
    return all.length === N ? all : undefined;
  }, `${N} cgroup auto attachments`, 60_000, 100);
  expect(listed.every((x) => x.auto_rule === `cgroup:${jobs}/nfj*` && x.metadata.job === x.target.slice(jobs.length + 1) && x.type === 'ATTACHMENT_TYPE_CGROUP')).toBe(true);
  for (const i of [0, N - 1]) expect(cgroupProgs(paths[i]!)).toHaveLength(9);
  expect(cgroupProgs(join(jobs, 'other'))).toEqual([]);
  const ids = new Set(listed.map((x) => x.id));
  const gone = cp.events.length;
  for (const p of paths) rmdirSync(p);
  await eventually(async () => !(await listAll()).some((x) => ids.has(x.id)), 'every cgroup auto attachment removed', 60_000, 100);
  await eventually(() => cp.events.slice(gone).filter((e) => e.msg.event === 'unsubscribed' && ids.has(e.msg.unsubscribed!.id) && e.msg.unsubscribed!.reason === 'UNSUBSCRIBE_REASON_REMOVED').length === N, `${N} Unsubscribed REMOVED`, 30_000);
});

test("a manual attachment's interface or cgroup going is seen at once by its event (no polling: target_watch_interval is 1h)", async () => {
  const v = dl.extraVeth();
  const cg = dl.cgroup('manual');
  const a = await d.api.attach({ interface_name: v.a });
  const c = await d.api.attach({ cgroup_path: cg.path });
  const from = cp.events.length;
  dl.host.exec('ip', ['link', 'del', v.a]);
  rmdirSync(cg.path);
  for (const id of [a.id, c.id]) {
    const un = await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === id, 10_000, `Unsubscribed ${id}`, from);
    expect(un.msg.unsubscribed!.reason).toBe('UNSUBSCRIBE_REASON_REMOVED');
  }
  expect((await listAll()).some((x) => x.id === a.id || x.id === c.id)).toBe(false);
});

test('rules set at run time take effect for new links; a bad list is refused whole and changes nothing', async () => {
  const rules = createRulesClient(d.socket);
  try {
    const set = await rules.set([{ interface: `${P}e*`, metadata: { set: 'runtime', vm: '{name}' } }, { interface: `${P}z*`, xdp: true }]);
    expect(set.rules).toHaveLength(2);
    expect(set.rules[0]).toMatchObject({ interface: `${P}e*`, kind: 'any', metadata: { set: 'runtime', vm: '{name}' }, xdp: false });
    dl.host.exec('ip', ['link', 'add', `${P}x9`, 'type', 'veth', 'peer', 'name', `${P}p9`]); // the old rule's name: no longer matched
    dl.host.exec('ip', ['link', 'add', `${P}e0`, 'type', 'veth', 'peer', 'name', `${P}p10`]);
    const e0 = await eventually(async () => (await listAll()).find((x) => x.target === `${P}e0`), 'the new rule applied');
    expect(e0).toMatchObject({ auto_rule: `interface:${P}e*`, metadata: { set: 'runtime', vm: `${P}e0` } });
    expect((await listAll()).some((x) => x.target === `${P}x9`)).toBe(false); // its event came first
    dl.host.exec('ip', ['link', 'add', `${P}z0`, 'type', 'veth', 'peer', 'name', `${P}p13`]);
    const z0 = await eventually(async () => (await listAll()).find((x) => x.target === `${P}z0`), 'the xdp rule applied');
    expect(z0).toMatchObject({ auto_rule: `interface:${P}z*`, hook: 'xdp', tc_direction: 'ingress' });

    const err = await rules.set([{ interface: `${P}f*` }, { interface: `${P}g*`, kind: 'bond' }]).then(
      () => undefined,
      (e: GrpcError) => e,
    );
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/NETFENCE_ERR_INVALID_ARGUMENT.*rules\[1\.kind\]/);
    expect((await rules.get()).rules.map((r) => r.interface)).toEqual([`${P}e*`, `${P}z*`]);
    dl.host.exec('ip', ['link', 'add', `${P}f0`, 'type', 'veth', 'peer', 'name', `${P}p11`]);
    dl.host.exec('ip', ['link', 'add', `${P}e1`, 'type', 'veth', 'peer', 'name', `${P}p12`]);
    await eventually(async () => (await listAll()).some((x) => x.target === `${P}e1`), 'e1 attached');
    expect((await listAll()).some((x) => x.target === `${P}f0`)).toBe(false);
  } finally {
    rules.close();
  }
});

// (A device carrying a default route is protected the same way; that is covered by the unit tests
// of defaultRouteDevices and matchInterface: the lab gives no namespace a default route.)
test('`*` never matches the loopback, and the loopback named exactly is refused as Attach refuses it (a daemon in a namespace of its own)', async () => {
  const ns = dl.lab.netns('d');
  const far = dl.lab.netns('e');
  const work = dl.lab.veth(ns, far).a;
  expect(linksOf(ns).sort()).toEqual(['lo', work].sort());
  const root = `${dl.bpffsRoot}-d`;
  dl.lab.defer(() => rmSync(root, { recursive: true, force: true }));
  const cfg = writeDaemonConfig(dl, 'star', { bpffs_root: root, dns: { listen_addr: '127.0.0.1' }, target_watch_interval: '1h', detach_on_exit: true, auto_attach: [{ interface: '*' }] });
  const star = await launchDaemon(cfg, (cmd, args, opts) => ns.spawn(cmd, args, opts));
  try {
    const listed = async () => (await star.api.listAll()).map((x) => x.target);
    // Every link that existed at start is judged in one pass: once the workload veth is listed, the rest are decided.
    await eventually(async () => (await listed()).includes(work), 'the workload veth attached by *');
    expect(await listed()).toEqual([work]);
    const rules = createRulesClient(star.socket);
    try {
      await rules.set([{ interface: '*' }, { interface: 'lo' }]);
      await sleep(300);
      expect(await listed()).toEqual([work]); // lo named exactly is refused, as Attach refuses it
    } finally {
      rules.close();
    }
  } finally {
    await star.stop();
  }
});

/** Interface names of a lab namespace. */
function linksOf(ns: LabNetns): string[] {
  return (JSON.parse(ns.exec('ip', ['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname);
}

interface RuleMsg {
  interface?: string;
  cgroup?: string;
  target?: string;
  kind?: string;
  metadata?: Record<string, string>;
  xdp?: boolean;
}

/** Get/SetAutoAttachRules with grpc-js from the proto files, as any client would call them. */
function createRulesClient(socket: string) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const protoLoader = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
  const def = protoLoader.loadSync(['netfence/v1/daemon.proto'], { includeDirs: [join(__dirname, '../../../proto')], keepCase: true, defaults: true, oneofs: true, enums: String });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const Svc = (grpc.loadPackageDefinition(def) as any).netfence.v1.DaemonService;
  const client = new Svc(`unix:${socket}`, grpc.credentials.createInsecure());
  const call = <T>(m: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => client[m](req, { deadline: Date.now() + 30_000 }, (e: GrpcError | null, r: T) => (e ? reject(e) : resolve(r))));
  return {
    get: () => call<{ rules: RuleMsg[] }>('GetAutoAttachRules', {}),
    set: (rules: RuleMsg[]) => call<{ rules: RuleMsg[] }>('SetAutoAttachRules', { rules }),
    close: () => client.close(),
  };
}
