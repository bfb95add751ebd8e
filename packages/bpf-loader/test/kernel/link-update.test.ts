import { execFileSync } from 'node:child_process';
import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, type Lab, type LabCgroup, type LabNetns, type LabVeth } from '@netfence/lab';
import {
  AttachType,
  BpfError,
  attachCgroup,
  attachTcx,
  createArrayMap,
  codecs,
  loadCollection,
  openPinnedLink,
  openPinnedProgram,
  openProgramById,
  updateLink,
  type ArrayMapView,
  type BpfLink,
  type Collection,
} from '../../src/index';
import { assertKernelTestable, fixture, ifindexIn, makePinDir, pingOk, removePinDir, spawnInCgroup, errorCode } from './helpers';

const A = '10.200.53.1';
const B = '10.200.53.2';

const code = errorCode;

let lab: Lab;
let nsA: LabNetns;
let veth: LabVeth;
let tc: Collection;
let cg: Collection;
let seen: ArrayMapView<number>;

beforeAll(() => {
  assertKernelTestable();
  lab = createLab();
  nsA = lab.netns('a');
  const nsB = lab.netns('b');
  veth = lab.veth(nsA, nsB, { addrA: [`${A}/24`], addrB: [`${B}/24`] });
  tc = loadCollection(fixture('tcswap'));
  cg = loadCollection(fixture('cgstorage'));
  seen = createArrayMap(cg.map('seen'), codecs.u32);
});

afterAll(async () => {
  tc?.close();
  cg?.close();
  await lab?.close();
});

describe('program tag and ids', () => {
  test('two loads of one program share its tag; other code has another; the tag is what bpftool shows', () => {
    const again = loadCollection(fixture('tcswap'));
    try {
      const a = tc.program('tc_drop').info();
      const b = again.program('tc_drop').info();
      expect(a.tag).toMatch(/^[0-9a-f]{16}$/);
      expect(a.id).not.toBe(b.id);
      expect(b.tag).toBe(a.tag);
      expect(tc.program('tc_pass').info().tag).not.toBe(a.tag);
      const shown = JSON.parse(execFileSync('bpftool', ['prog', 'show', 'id', String(a.id), '--json'], { encoding: 'utf8' })) as { tag: string };
      expect(shown.tag).toBe(a.tag);
    } finally {
      again.close();
    }
  });

  test('a pinned program and one opened by id report the same id and tag; mapIds lists its maps', () => {
    const dir = makePinDir('tag');
    try {
      const prog = cg.program('cg_connect4');
      const info = prog.info();
      prog.pin(join(dir, 'prog'));
      using pinned = openPinnedProgram(join(dir, 'prog'));
      expect(pinned.info()).toEqual(info);
      using byId = openProgramById(info.id);
      expect(byId.info()).toEqual(info);
      expect([...info.mapIds].sort()).toEqual([cg.map('cg_slot').info().id, cg.map('seen').info().id].sort());
      expect(tc.program('tc_pass').info().mapIds).toEqual([]);
      expect(code(() => openProgramById(0))).toBe('BPF_ERR_INVALID_ARGUMENT');
      expect(code(() => openProgramById(0xfffffff0))).toBe('BPF_ERR_NOT_FOUND');
    } finally {
      removePinDir(dir);
    }
  });
});

describe('updateLink on a TCX link', () => {
  test('swaps the program atomically; a wrong expectedProgram changes nothing', () => {
    const pass = tc.program('tc_pass');
    const drop = tc.program('tc_drop');
    using link = attachTcx(pass, { ifname: veth.a, direction: 'egress', netnsPath: nsA.path, mode: 'tcx' });
    expect(link.info()).toMatchObject({ ifindex: ifindexIn(nsA.path, veth.a), attachType: AttachType.TCX_EGRESS, progId: pass.info().id });
    expect(pingOk(nsA.path, B)).toBe(true);

    updateLink(link, drop, { expectedProgram: pass });
    expect(link.info().progId).toBe(drop.info().id);
    expect(link.programInfo().tag).toBe(drop.info().tag);
    expect(pingOk(nsA.path, B)).toBe(false);

    // The link runs tc_drop, not tc_pass: the kernel refuses (EPERM) and nothing changes.
    const err = (() => {
      try {
        updateLink(link, pass, { expectedProgram: pass });
      } catch (e) {
        return e as BpfError;
      }
      return undefined;
    })();
    expect(err).toMatchObject({ code: 'BPF_ERR_CONFLICT', errno: 1 });
    expect(err?.message).toMatch(/not the expected 'tc_pass'/);
    expect(link.info().progId).toBe(drop.info().id);
    expect(pingOk(nsA.path, B)).toBe(false);

    updateLink(link, pass); // no expectation: unconditional
    expect(link.info().progId).toBe(pass.info().id);
    expect(pingOk(nsA.path, B)).toBe(true);
  });

  test('a pinned link reopened from its pin can be updated; the pin keeps the new program after close', () => {
    const dir = makePinDir('upd');
    try {
      const link = attachTcx(tc.program('tc_pass'), { ifname: veth.a, direction: 'egress', netnsPath: nsA.path, mode: 'tcx' });
      link.pin(join(dir, 'link'));
      link.close();
      const again = openPinnedLink(join(dir, 'link'));
      updateLink(again, tc.program('tc_drop'), { expectedProgram: tc.program('tc_pass') });
      again.close();
      expect(pingOk(nsA.path, B)).toBe(false);
      const last = openPinnedLink(join(dir, 'link'));
      expect(last.info().progId).toBe(tc.program('tc_drop').info().id);
      last.detach();
      expect(pingOk(nsA.path, B)).toBe(true);
    } finally {
      removePinDir(dir);
    }
  });

  test('the kernel refuses a program of another type on a TCX link', () => {
    // On a veth pair left down no packet can run whatever the link holds, whatever the kernel does.
    nsA.exec('ip', ['link', 'add', 'nfdown0', 'type', 'veth', 'peer', 'name', 'nfdown1']);
    using link = attachTcx(tc.program('tc_pass'), { ifname: 'nfdown0', direction: 'ingress', netnsPath: nsA.path, mode: 'tcx' });
    expect(() => updateLink(link, cg.program('cg_connect4'))).toThrow(/BPF_ERR_TYPE_MISMATCH.*CGROUP_SOCK_ADDR.*SCHED_CLS.*EINVAL/);
    expect(link.info().progId).toBe(tc.program('tc_pass').info().id);
  });
});

describe('updateLink on a cgroup link', () => {
  let cgroup: LabCgroup;
  beforeAll(() => {
    cgroup = lab.cgroup('upd');
  });

  /** A UDP connect (connect4 hook) from a process in the cgroup; resolves when it exited. */
  async function connectFromCgroup(): Promise<void> {
    const script = `const s = require('dgram').createSocket('udp4'); s.connect(9, '${B}', () => { s.close(); console.log('ok'); });`;
    const child = spawnInCgroup(cgroup.path, nsA.path, process.execPath, ['-e', script]);
    lab.defer(() => void child.kill('SIGKILL'));
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.once('exit', r));
    expect(out.trim()).toBe('ok');
  }

  const bitsSeen = (): number => {
    let bits = 0;
    for (const [, b] of seen.entries()) bits |= b;
    return bits;
  };

  test('the new program runs with the storage the link already had; wrong expectedProgram and unfit programs are refused', async () => {
    const v1 = cg.program('cg_connect4');
    const v2 = cg.program('cg_connect4_v2');
    let link: BpfLink | undefined;
    try {
      link = attachCgroup(v1, { cgroup: cgroup.path });
      expect(link.info()).toMatchObject({ attachType: AttachType.CGROUP_INET4_CONNECT, progId: v1.info().id });
      seen.setMany(Array.from({ length: seen.length }, (_, i) => [i, 0] as const));
      await connectFromCgroup();
      expect(bitsSeen()).toBe(1 << 0);

      updateLink(link, v2, { expectedProgram: v1 });
      expect(link.info().progId).toBe(v2.info().id);
      seen.setMany(Array.from({ length: seen.length }, (_, i) => [i, 0] as const));
      await connectFromCgroup();
      expect(bitsSeen()).toBe(1 << 2); // only v2 ran, and it read the storage (seen[0]) without fault

      expect(code(() => updateLink(link as BpfLink, v1, { expectedProgram: v1 }))).toBe('BPF_ERR_CONFLICT');
      expect(link.info().progId).toBe(v2.info().id);
      // The kernel refuses (EINVAL) another program type, and a program of the same type made
      // for another attach type; the error says which.
      expect(() => updateLink(link as BpfLink, tc.program('tc_pass'))).toThrow(/BPF_ERR_TYPE_MISMATCH.*SCHED_CLS.*CGROUP_SOCK_ADDR.*EINVAL/);
      expect(() => updateLink(link as BpfLink, cg.program('cg_sendmsg4'))).toThrow(/BPF_ERR_TYPE_MISMATCH.*made for CGROUP_UDP4_SENDMSG.*CGROUP_INET4_CONNECT.*EINVAL/);
      expect(link.info().progId).toBe(v2.info().id);
    } finally {
      link?.close();
    }
  });

  test('the kernel refuses to switch between a program without cgroup storage and one with it, both ways', () => {
    const plain = cg.program('cg_connect4_plain');
    const withStorage = cg.program('cg_connect4');
    using link = attachCgroup(plain, { cgroup: cgroup.path });
    expect(() => updateLink(link, withStorage)).toThrow(/BPF_ERR_TYPE_MISMATCH.*uses CGROUP_STORAGE map 'cg_slot'.*uses no cgroup storage.*EINVAL/);
    expect(link.info().progId).toBe(plain.info().id);
    using link2 = attachCgroup(withStorage, { cgroup: cgroup.path });
    expect(() => updateLink(link2, plain)).toThrow(/BPF_ERR_TYPE_MISMATCH.*uses no cgroup storage.*uses CGROUP_STORAGE map 'cg_slot'.*EINVAL/);
    expect(link2.info().progId).toBe(withStorage.info().id);
  });

  test('a link whose cgroup is gone is defunct (cgroupId 0): updateLink says so', async () => {
    const gone = join(cgroup.path, 'gone');
    mkdirSync(gone);
    let link: BpfLink | undefined;
    try {
      link = attachCgroup(cg.program('cg_connect4'), { cgroup: gone });
      expect(link.info().cgroupId).toBe(statSync(gone, { bigint: true }).ino);
    } finally {
      rmdirSync(gone);
    }
    try {
      // The kernel releases the cgroup's BPF state asynchronously, then auto-detaches the link.
      for (let i = 0; i < 100 && link.info().cgroupId !== 0n; i++) await new Promise((r) => setTimeout(r, 20));
      expect(link.info().cgroupId).toBe(0n);
      expect(() => updateLink(link as BpfLink, cg.program('cg_connect4_v2'))).toThrow(/BPF_ERR_NOT_FOUND.*defunct.*ENOLINK/);
    } finally {
      link.close();
    }
  });
});
