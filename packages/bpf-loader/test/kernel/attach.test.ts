import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, type Lab, type LabCgroup, type LabNetns, type LabVeth } from '@netfence/lab';
import {
  BpfError,
  NotSupportedError,
  attachCgroup,
  attachTcx,
  codecs,
  createHashMap,
  createLpmTrieMap,
  ifindexOf,
  loadCollection,
  openPinnedLink,
  openPinnedMap,
  withNetns,
  type Collection,
  type LpmTrieMapView,
} from '../../src/index';
import { assertKernelTestable, fixture, ifindexIn, makePinDir, pingOk, removePinDir, runTsChild, spawnInCgroup } from './helpers';

const A = '10.200.51.1';
const B = '10.200.51.2';
const addr = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));

let lab: Lab;
let nsA: LabNetns;
let nsB: LabNetns;
let veth: LabVeth;
let coll: Collection;
let deny: LpmTrieMapView<number>;

beforeAll(() => {
  assertKernelTestable();
  lab = createLab();
  nsA = lab.netns('a');
  nsB = lab.netns('b');
  veth = lab.veth(nsA, nsB, { addrA: [`${A}/24`], addrB: [`${B}/24`] });
  coll = loadCollection(fixture('maps'));
  deny = createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 });
});

afterAll(async () => {
  coll?.close();
  await lab?.close();
});

describe('withNetns', () => {
  test('runs fn in the namespace and restores the original one, also on throw', () => {
    const before = execFileSync('readlink', ['/proc/thread-self/ns/net'], { encoding: 'utf8' });
    expect(withNetns(nsA.path, () => ifindexOf(veth.a))).toBe(ifindexIn(nsA.path, veth.a));
    expect(ifindexOf(veth.a, nsA.path)).toBe(ifindexIn(nsA.path, veth.a));
    expect(() => ifindexOf(veth.a)).toThrow(/BPF_ERR_NOT_FOUND/); // not in the root netns
    expect(() =>
      withNetns(nsA.path, () => {
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(() => withNetns(nsA.path, () => Promise.resolve(1))).toThrow(/BPF_ERR_INVALID_ARGUMENT/);
    expect(() => ifindexOf(veth.a)).toThrow(/BPF_ERR_NOT_FOUND/);
    expect(execFileSync('readlink', ['/proc/thread-self/ns/net'], { encoding: 'utf8' })).toBe(before);
  });
});

describe('TCX', () => {
  test('egress link in a lab netns, attached from the root netns, drops denied traffic', () => {
    deny.clear();
    expect(pingOk(nsA.path, B)).toBe(true);
    deny.set({ prefixLen: 32, data: addr(B) }, 1);
    const prog = coll.program('tc_filter');
    const link = attachTcx(prog, { ifname: veth.a, direction: 'egress', netnsPath: nsA.path });
    try {
      expect(link.kind).toBe('bpf-link');
      expect(link.info()).toMatchObject({ type: 11 /* BPF_LINK_TYPE_TCX */, progId: prog.info().id });
      expect(pingOk(nsA.path, B)).toBe(false);
      const links = nsA.exec('bpftool', ['link', 'show', 'id', String(link.info().id)]);
      expect(links).toMatch(new RegExp(`type 11 +prog ${prog.info().id}\\b`));
      // The same program twice on one hook is EEXIST.
      expect(() => attachTcx(prog, { ifindex: ifindexIn(nsA.path, veth.a), direction: 'egress', netnsPath: nsA.path })).toThrow(/BPF_ERR_EXISTS/);
      // Map changes apply to the live datapath.
      deny.delete({ prefixLen: 32, data: addr(B) });
      expect(pingOk(nsA.path, B)).toBe(true);
      deny.set({ prefixLen: 32, data: addr(B) }, 1);
      expect(pingOk(nsA.path, B)).toBe(false);
    } finally {
      link.close();
      link.close();
    }
    expect(pingOk(nsA.path, B)).toBe(true); // close() detached it
    deny.clear();
  });

  test('ingress, and mode "tcx" on a kernel with TCX', () => {
    deny.set({ prefixLen: 32, data: addr(B) }, 1);
    // Ingress on B's end sees packets from A to B arriving.
    using link = attachTcx(coll.program('tc_filter'), { ifname: veth.b, direction: 'ingress', netnsPath: nsB.path, mode: 'tcx' });
    expect(link.kind).toBe('bpf-link');
    expect(pingOk(nsA.path, B)).toBe(false);
    link.close();
    expect(pingOk(nsA.path, B)).toBe(true);
    deny.clear();
  });

  test('clsact fallback mode attaches a tc filter and removes it on close', () => {
    deny.set({ prefixLen: 32, data: addr(B) }, 1);
    const link = attachTcx(coll.program('tc_filter'), { ifname: veth.a, direction: 'egress', netnsPath: nsA.path, mode: 'clsact' });
    try {
      expect(link.kind).toBe('tc-clsact');
      expect(nsA.exec('tc', ['filter', 'show', 'dev', veth.a, 'egress'])).toMatch(/tc_filter/);
      expect(pingOk(nsA.path, B)).toBe(false);
      expect(() => link.pin('/sys/fs/bpf/never')).toThrow(NotSupportedError);
    } finally {
      link.close();
    }
    expect(nsA.exec('tc', ['filter', 'show', 'dev', veth.a, 'egress'])).not.toMatch(/tc_filter/);
    expect(pingOk(nsA.path, B)).toBe(true);
    deny.clear();
  });

  test('a pinned link and map outlive the process that made them; reopened, they still work', () => {
    const dir = makePinDir('link');
    try {
      const r = runTsChild(join(__dirname, 'pin-creator.ts'), [fixture('maps'), dir, nsA.path, veth.a, B]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const { linkId } = JSON.parse(r.stdout) as { linkId: number };
      // The creator has exited: the filter still drops.
      expect(pingOk(nsA.path, B)).toBe(false);
      const link = openPinnedLink(join(dir, 'link'));
      expect(link.info().id).toBe(linkId);
      const m = openPinnedMap(join(dir, 'deny_v4'), { keySize: 8, valueSize: 4 });
      const pinnedDeny = createLpmTrieMap(m, { dataSize: 4, value: codecs.u32 });
      expect(pinnedDeny.lookup(addr(B))).toBe(1);
      pinnedDeny.delete({ prefixLen: 32, data: addr(B) });
      expect(pingOk(nsA.path, B)).toBe(true);
      pinnedDeny.set({ prefixLen: 32, data: addr(B) }, 1);
      expect(pingOk(nsA.path, B)).toBe(false);
      // Closing a pinned link keeps it attached; detach() ends it and removes the pin.
      link.close();
      expect(pingOk(nsA.path, B)).toBe(false);
      const again = openPinnedLink(join(dir, 'link'));
      again.detach();
      expect(again.closed).toBe(true);
      expect(existsSync(join(dir, 'link'))).toBe(false);
      expect(pingOk(nsA.path, B)).toBe(true);
      m.close();
    } finally {
      removePinDir(dir);
    }
  });
});

describe('cgroup connect4', () => {
  let cg: LabCgroup;
  let server: ChildProcess;

  beforeAll(async () => {
    cg = lab.cgroup('cg');
    server = nsB.spawn(process.execPath, ['-e', `require('net').createServer((s) => s.end()).listen(8080, '${B}', () => console.log('ready'))`]);
    await new Promise<void>((resolve, reject) => {
      server.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      server.once('exit', () => reject(new Error('server exited')));
    });
  });

  const client = `const s = require('net').connect(8080, '${B}'); s.on('connect', () => { console.log('connected'); s.destroy(); }); s.on('error', (e) => console.log(e.code));`;
  async function tryConnect(inCgroup: boolean): Promise<string> {
    const child = inCgroup ? spawnInCgroup(cg.path, nsA.path, process.execPath, ['-e', client]) : nsA.spawn(process.execPath, ['-e', client]);
    lab.defer(() => void child.kill('SIGKILL'));
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.once('exit', r));
    return out.trim();
  }

  test('a connect4 program refuses connects from processes in the cgroup only', async () => {
    const c = loadCollection(fixture('cgroup'));
    try {
      const denyAddr = createHashMap(c.map('deny_addr'), { key: codecs.bytes(4), value: codecs.u32 });
      denyAddr.set(addr(B), 1);
      expect(await tryConnect(true)).toBe('connected');
      const link = attachCgroup(c.program('connect4_deny'), { cgroup: cg.path });
      try {
        expect(link.info().type).toBe(3); // BPF_LINK_TYPE_CGROUP
        expect(await tryConnect(true)).toBe('EPERM');
        expect(await tryConnect(false)).toBe('connected');
        denyAddr.delete(addr(B));
        expect(await tryConnect(true)).toBe('connected');
        denyAddr.set(addr(B), 1);
      } finally {
        link.close();
      }
      expect(await tryConnect(true)).toBe('connected');
    } finally {
      c.close();
    }
  });

  test('a wrong attach type is refused by the kernel', () => {
    const c = loadCollection(fixture('cgroup'));
    try {
      expect(() => attachCgroup(c.program('connect4_deny'), { cgroup: cg.path, attachType: 1 })).toThrow(BpfError);
    } finally {
      c.close();
    }
  });
});
