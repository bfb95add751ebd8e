import { mkdirSync, rmdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, type Lab, type LabCgroup, type LabNetns } from '@netfence/lab';
import {
  MapType,
  UpdateFlags,
  attachCgroup,
  codecs,
  createArrayMap,
  createHashMap,
  createMap,
  loadCollection,
  type ArrayMapView,
  type BpfLink,
  type Collection,
  type HashMapView,
} from '../../src/index';
import { assertKernelTestable, fixture, spawnInCgroup, errorCode } from './helpers';

const A = '10.200.54.1';
const B = '10.200.54.2';
// Bits the fixture's programs set in seen[slot they read].
const CONNECT4 = 1 << 0;
const EGRESS = 1 << 1;

const code = errorCode;

let lab: Lab;
let nsA: LabNetns;
let coll: Collection;
let seen: ArrayMapView<number>;
/** cg_slot: u64 cgroup id -> {u32 slot; u32 pad} read as a u64 (slot = low 32 bits). */
let slots: HashMapView<bigint, bigint>;

const cgroupId = (path: string): bigint => statSync(path, { bigint: true }).ino;

beforeAll(() => {
  assertKernelTestable();
  lab = createLab();
  nsA = lab.netns('a');
  lab.veth(nsA, lab.netns('b'), { addrA: [`${A}/24`], addrB: [`${B}/24`] });
  coll = loadCollection(fixture('cgstorage'));
  seen = createArrayMap(coll.map('seen'), codecs.u32);
  slots = createHashMap(coll.map('cg_slot'), { key: codecs.u64, value: codecs.u64 });
});

afterAll(async () => {
  coll?.close();
  await lab?.close();
});

function clearSeen(): void {
  seen.setMany(Array.from({ length: seen.length }, (_, i) => [i, 0] as const));
}

/** seen as {slot: bits} for the slots some program read. */
function seenBySlot(): Record<number, number> {
  return Object.fromEntries([...seen.entries()].filter(([, bits]) => bits !== 0));
}

/** From a process in `cg`: a UDP connect (connect4) and one datagram out (cgroup_skb egress). */
async function trafficFrom(cg: LabCgroup | string): Promise<void> {
  const path = typeof cg === 'string' ? cg : cg.path;
  const script = `const s = require('dgram').createSocket('udp4'); s.connect(9, '${B}', () => s.send('x', () => { s.close(); console.log('ok'); }));`;
  const child = spawnInCgroup(path, nsA.path, process.execPath, ['-e', script]);
  lab.defer(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((r) => child.once('exit', r));
  expect(out.trim()).toBe('ok');
}

describe('CGROUP_STORAGE from user space', () => {
  test('the map reports its type; createHashMap accepts it; createMap makes one with max_entries 0', () => {
    expect(coll.map('cg_slot')).toMatchObject({ type: MapType.CGROUP_STORAGE, keySize: 8, valueSize: 8, maxEntries: 0 });
    using own = createMap({ name: 'nf_cgs', type: MapType.CGROUP_STORAGE, keySize: 8, valueSize: 8, maxEntries: 0 });
    expect(own.info()).toMatchObject({ type: MapType.CGROUP_STORAGE, maxEntries: 0 });
    expect(code(() => createMap({ name: 'nf_cgs', type: MapType.CGROUP_STORAGE, keySize: 8, valueSize: 8, maxEntries: 1 }))).toBe('BPF_ERR_ERRNO');
  });

  test('no storage before a program using the map is attached: writing is BPF_ERR_NOT_FOUND and says why', () => {
    const cg = lab.cgroup('before');
    const id = cgroupId(cg.path);
    expect(slots.get(id)).toBeUndefined();
    expect(() => slots.set(id, 7n)).toThrow(new RegExp(`BPF_ERR_NOT_FOUND: map 'cg_slot' \\(CGROUP_STORAGE\\) has no storage for cgroup id ${id}.*attached.*ENOENT`));
  });

  test('programs of two attach types in one cgroup share one storage (u64 key): both read what user space wrote', async () => {
    const cg = lab.cgroup('shared');
    const id = cgroupId(cg.path);
    const links: BpfLink[] = [];
    try {
      links.push(attachCgroup(coll.program('cg_egress'), { cgroup: cg.path }));
      expect(slots.get(id)).toBe(0n); // created zeroed at the first attach
      slots.set(id, 7n, UpdateFlags.EXIST);
      links.push(attachCgroup(coll.program('cg_connect4'), { cgroup: cg.path }));
      expect(slots.get(id)).toBe(7n); // the second attach type reuses the storage
      expect([...slots.keys()].filter((k) => k === id)).toEqual([id]); // one element for the cgroup

      clearSeen();
      await trafficFrom(cg);
      expect(seenBySlot()).toEqual({ 7: CONNECT4 | EGRESS });

      slots.set(id, 9n); // BPF_ANY overwrites in place
      clearSeen();
      await trafficFrom(cg);
      expect(seenBySlot()).toEqual({ 9: CONNECT4 | EGRESS });

      expect(() => slots.set(id, 1n, UpdateFlags.NOEXIST)).toThrow(/BPF_ERR_INVALID_ARGUMENT.*only UpdateFlags.ANY or EXIST.*EINVAL/);
      expect(() => slots.delete(id)).toThrow(/BPF_ERR_INVALID_ARGUMENT.*does not delete cgroup storage.*EINVAL/);
      expect(slots.get(id)).toBe(9n);
    } finally {
      for (const l of links) l.close();
    }
  });

  test('nested cgroups: each attached ancestor judges with the storage of the cgroup its link is on', async () => {
    const parent = lab.cgroup('nest');
    const child = join(parent.path, 'child');
    mkdirSync(child);
    lab.defer(() => {
      if (existsSync(child)) rmdirSync(child);
    });
    const links: BpfLink[] = [];
    try {
      links.push(attachCgroup(coll.program('cg_connect4'), { cgroup: parent.path }));
      links.push(attachCgroup(coll.program('cg_connect4'), { cgroup: child }));
      slots.set(cgroupId(parent.path), 5n);
      slots.set(cgroupId(child), 6n);
      clearSeen();
      await trafficFrom(child);
      expect(seenBySlot()).toEqual({ 5: CONNECT4, 6: CONNECT4 }); // both links ran, each with its own slot
      clearSeen();
      await trafficFrom(parent);
      expect(seenBySlot()).toEqual({ 5: CONNECT4 });
    } finally {
      for (const l of links) l.close();
    }
  });

  test('the storage outlives the links (still readable and writable after all detach) and goes with the cgroup', async () => {
    const parent = lab.cgroup('life');
    const cg = join(parent.path, 'c');
    mkdirSync(cg);
    lab.defer(() => {
      if (existsSync(cg)) rmdirSync(cg);
    });
    const id = cgroupId(cg);
    const link = attachCgroup(coll.program('cg_connect4'), { cgroup: cg });
    slots.set(id, 3n);
    link.close();
    expect(slots.get(id)).toBe(3n);
    slots.set(id, 4n);
    // Attached again: the old storage (slot 4) is reused, not a zeroed one.
    const again = attachCgroup(coll.program('cg_egress'), { cgroup: cg });
    expect(slots.get(id)).toBe(4n);
    again.close();
    rmdirSync(cg);
    // The kernel frees it when it releases the cgroup's BPF state (asynchronously).
    for (let i = 0; i < 100 && slots.get(id) !== undefined; i++) await new Promise((r) => setTimeout(r, 20));
    expect(slots.get(id)).toBeUndefined();
  });
});
