// A new build of the programs replaces the old one on every live link, atomically, while traffic
// runs. Two builds of the same sources are compiled into temporary directories: A as the package
// builds it, B with the deadline clock read by bpf_ktime_get_ns instead of the coarse clock (same
// behaviour, other instructions: another program tag). A datapath on build A attaches a TC, an
// XDP and a cgroup target with a policy; then, with UDP flowing to an allowed and a denied
// address through each, a datapath on build B opens the same root: every link runs build B's
// program for its hook, the pinned programs are B's, no denied datagram arrived, no allowed one
// was lost or refused.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadCollection, openPinnedLink, openPinnedProgram, withNetns } from '@netfence/bpf-loader';
import { OBJECTS, objectPath, packageDir } from '@netfence/bpf-programs';
import type { KernelOp } from '@netfence/policy-engine';
import { createBpfDatapath, type BpfDatapath } from '../src/bpf-datapath';
import type { HostObject } from '../src/host-program-set';
import { createDaemonLab, sleep, type DaemonLab } from './support/daemon-lab';
import { sendUdpStream, startUdpSink } from './support/udp-traffic';

jest.setTimeout(120_000);

const ALLOWED = '203.0.113.10';
const DENIED = '203.0.113.20';
const SECS = 6;
const POLICY: KernelOp[] = [
  { op: 'add', map: 'allow', cidr: '203.0.113.0/24' },
  { op: 'add', map: 'deny', cidr: `${DENIED}/32` },
  { op: 'setMode', mode: 'allowlist', dryRun: false },
];

let dl: DaemonLab;
let tmp: string;
beforeAll(async () => {
  dl = await createDaemonLab();
  tmp = mkdtempSync(join(tmpdir(), 'nf-upgrade-'));
});
afterAll(async () => {
  await dl?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Compiles the filter objects from the package's sources into `dir`, with `defines` added. */
function build(dir: string, defines: readonly string[]): (name: HostObject) => string {
  const pkg = packageDir();
  for (const name of ['tc_filter', 'xdp_filter', 'cgroup_filter']) {
    execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I/usr/include/x86_64-linux-gnu', ...defines, '-Isrc', '-c', `src/${name}.bpf.c`, '-o', join(dir, `${name}.bpf.o`)], {
      cwd: pkg,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  }
  return (name) => (name === 'sever' ? objectPath('sever') : join(dir, `${OBJECTS[name].file}`));
}

/** Program tag by function name, as the kernel computes it for this build's objects. */
function tagsOf(path: (name: HostObject) => string): Map<string, string> {
  const out = new Map<string, string>();
  for (const o of ['tc', 'xdp', 'cgroup'] as const) {
    const c = loadCollection(path(o));
    try {
      for (const [name, p] of c.programs) out.set(name, p.info().tag);
    } finally {
      c.close();
    }
  }
  return out;
}

/** For every link pinned under the root: [attachment/link, program name and tag it runs]. */
function linkPrograms(root: string): Map<string, { id: number; tag: string }> {
  const out = new Map<string, { id: number; tag: string }>();
  for (const id of readdirSync(root).filter((n) => n.startsWith('att-'))) {
    for (const f of readdirSync(join(root, id)).filter((n) => n.startsWith('link_'))) {
      const l = openPinnedLink(join(root, id, f));
      try {
        const p = l.programInfo();
        out.set(`${id}/${f}`, { id: p.id, tag: p.tag });
      } finally {
        l.close();
      }
    }
  }
  return out;
}

test('a second build replaces the programs on every link while traffic runs, with no datagram judged wrongly', async () => {
  const root = dl.bpffsRoot;
  const buildA = build(mkdtempSync(join(tmp, 'a-')), []);
  const buildB = build(mkdtempSync(join(tmp, 'b-')), ['-DNF_MONO_NS()=bpf_ktime_get_ns()']);
  const tagsA = tagsOf(buildA);
  const tagsB = tagsOf(buildB);
  const changed = [...tagsB].filter(([n, t]) => tagsA.get(n) !== t).map(([n]) => n);
  expect(changed).toEqual(expect.arrayContaining(['netfence_tc_ingress', 'netfence_xdp', 'netfence_connect4', 'netfence_egress'])); // the judging programs differ

  const cg = dl.cgroup('upgrade');
  const ifindex = dl.host.ifindex(dl.wlVeth.a);
  // A second workload behind its own veth, filtered at XDP on the host end.
  const xw = dl.lab.netns('x');
  const xv = dl.lab.veth(dl.host, xw, { addrA: ['10.200.3.1/24'], addrB: ['10.200.3.2/24'] });
  xw.exec('ip', ['route', 'add', '203.0.113.0/24', 'via', '10.200.3.1']);
  dl.net.exec('ip', ['route', 'add', '10.200.3.0/24', 'via', '10.200.2.1']);
  const inHost = <T>(fn: () => T): T => withNetns(dl.host.path, fn);
  const open = (objectPath: (n: HostObject) => string): BpfDatapath =>
    createBpfDatapath({ root, objectPath, mapSizes: { allow: 64, deny: 64, ringbufBytes: 4096 }, onEvent: () => undefined, logger: pino({ level: 'silent' }) });
  const tcParams = { kind: 'tc' as const, id: 'att-uptc', numericId: 1, ifindex, direction: 'ingress' as const, l3: false };
  const cgParams = { kind: 'cgroup' as const, id: 'att-upcg', numericId: 2, cgroupPath: cg.path };
  const xdpParams = { kind: 'tc' as const, id: 'att-upxdp', numericId: 3, ifindex: dl.host.ifindex(xv.a), direction: 'ingress' as const, l3: false, xdp: true };

  const a = open(buildA);
  for (const p of [tcParams, xdpParams, cgParams]) {
    let attached!: ReturnType<BpfDatapath['attach']>;
    inHost(() => void (attached = a.attach(p))); // the attach's work is synchronous: made in the host namespace
    const at = await attached;
    expect([p.id, at.hook]).toEqual([p.id, p.kind === 'cgroup' ? 'cgroup' : 'xdp' in p ? 'xdp' : 'tc']);
    at.apply(POLICY);
  }
  await a.close(); // the pins keep enforcing build A
  const before = linkPrograms(root);
  expect(before.size).toBe(11);
  for (const [link, p] of before) expect([link, p.tag]).toEqual([link, expect.any(String)]);

  const sink = await startUdpSink(dl, [ALLOWED, DENIED], SECS + 4);
  const tc = sendUdpStream(dl, { ns: dl.wl }, 'tc', [ALLOWED, DENIED], SECS);
  const cgTraffic = sendUdpStream(dl, { ns: dl.host, cgroup: cg }, 'cg', [ALLOWED, DENIED], SECS);
  const xdpTraffic = sendUdpStream(dl, { ns: xw }, 'xdp', [ALLOWED, DENIED], SECS);
  await sleep(1500);
  const b = open(buildB);
  let afterB = new Map<string, { id: number; tag: string }>();
  try {
    b.warm(['tc', 'cgroup']); // loads build B against the pinned host maps: every link gets its program
    const atts = [inHost(() => b.reopen(tcParams)), inHost(() => b.reopen(xdpParams)), b.reopen(cgParams)];
    const r = { tc: await tc, cg: await cgTraffic, xdp: await xdpTraffic, sink: await sink.counts };
    process.stderr.write(`[upgrade] traffic: ${JSON.stringify(r)}\n`);
    for (const tag of ['tc', 'cg', 'xdp'] as const) {
      const sent = r[tag];
      expect(sent[ALLOWED]!.sent).toBeGreaterThan(500);
      expect([tag, 'allowed refused', sent[ALLOWED]!.failed]).toEqual([tag, 'allowed refused', 0]);
      expect([tag, 'allowed lost', sent[ALLOWED]!.sent - (r.sink[`${tag}@${ALLOWED}`] ?? 0)]).toEqual([tag, 'allowed lost', 0]);
      expect([tag, 'denied delivered', r.sink[`${tag}@${DENIED}`] ?? 0]).toEqual([tag, 'denied delivered', 0]);
    }

    // Every link runs build B's program for its hook; those whose code changed are new programs.
    const after = (afterB = linkPrograms(root));
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    const hookProgram = (link: string) => {
      const key = link.slice(link.indexOf('/link_') + 6);
      if (key === 'filter') return OBJECTS.tc.programs.ingress.name;
      if (key === 'xdp') return OBJECTS.xdp.programs.filter.name;
      return OBJECTS.cgroup.programs[key as keyof typeof OBJECTS.cgroup.programs].name;
    };
    for (const [link, p] of after) {
      const name = hookProgram(link);
      expect([link, p.tag]).toEqual([link, tagsB.get(name)]);
      if (changed.includes(name)) expect([link, p.id]).not.toEqual([link, before.get(link)!.id]);
      else expect([link, p.id]).toEqual([link, before.get(link)!.id]);
    }
    // The pins name build B's programs, and the policy is as it was.
    for (const name of changed) {
      const pinned = openPinnedProgram(join(root, '_host', `prog_${name}`));
      expect([name, pinned.info().tag]).toEqual([name, tagsB.get(name)]);
      pinned.close();
    }
    for (const at of atts) expect(at.readView()).toEqual({ mode: 'allowlist', dryRun: false, allow: new Set(['203.0.113.0/24']), deny: new Set([`${DENIED}/32`]) });
    for (const at of atts) at.close();
  } finally {
    await b.close();
  }

  // The same build again changes nothing.
  const again = open(buildB);
  try {
    again.warm(['tc', 'cgroup']);
    expect(linkPrograms(root)).toEqual(afterB);
    for (const p of [inHost(() => again.reopen(tcParams)), inHost(() => again.reopen(xdpParams)), again.reopen(cgParams)]) p.destroy();
  } finally {
    await again.close();
  }
  expect(existsSync(root)).toBe(false); // the last attachment gone, the host pins went with it
});
