import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfError,
  ProgType,
  attachIter,
  codecs,
  createLpmTrieMap,
  createRingBufferConsumer,
  linkFromFd,
  loadCollection,
  loadCollectionAsync,
  openPinnedProgram,
  programFromFd,
  readIterator,
  readIteratorAsync,
  setLibbpfLogger,
  type Collection,
} from '../../src/index';
import { assertKernelTestable, fixture, makePinDir, removePinDir } from './helpers';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

/** An Ethernet + IPv4 header frame to `dst` (60 bytes). */
function ipv4Frame(dst: readonly number[]): Buffer {
  const f = Buffer.alloc(60);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(46, 16);
  f[22] = 64;
  f[23] = 17;
  f.set([10, 200, 9, 1], 26);
  f.set(dst, 30);
  return f;
}

let coll: Collection;
beforeAll(() => {
  assertKernelTestable();
  coll = loadCollection(fixture('maps'));
});
afterAll(() => coll?.close());

describe('BPF_PROG_TEST_RUN', () => {
  test('retval, duration and data out', () => {
    const deny = createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 });
    deny.clear();
    deny.set({ prefixLen: 24, data: Uint8Array.of(10, 200, 7, 0) }, 1);
    const prog = coll.program('tc_filter');
    expect(prog.type).toBe(ProgType.SCHED_CLS);
    const pass = prog.testRun({ data: ipv4Frame([10, 200, 8, 1]) });
    expect(pass.retval).toBe(TC_ACT_OK);
    expect(pass.data).toEqual(ipv4Frame([10, 200, 8, 1]));
    const drop = prog.testRun({ data: ipv4Frame([10, 200, 7, 5]), repeat: 100 });
    expect(drop.retval).toBe(TC_ACT_SHOT);
    expect(drop.durationNs).toBeGreaterThan(0);
    // A frame too short for Ethernet is refused by the kernel.
    expect(() => prog.testRun({ data: Buffer.alloc(4) })).toThrow(BpfError);
    deny.clear();
  });
});

describe('verifier errors', () => {
  test('a rejected program throws BPF_ERR_VERIFIER with the verifier log', () => {
    let err: BpfError | undefined;
    try {
      loadCollection(fixture('bad'));
    } catch (e) {
      err = e as BpfError;
    }
    expect(err?.code).toBe('BPF_ERR_VERIFIER');
    expect(err?.errno).toBe(13);
    expect(err?.verifierLog).toMatch(/invalid access to packet/);
    expect(err?.message).toMatch(/invalid access to packet/);
    expect(err?.libbpfLog).toMatch(/unchecked_read/);
  });

  test('a failed load closes every fd it opened', () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    loadCollection(fixture('maps')).close(); // warm up libbpf's own one-time fds
    const before = fds();
    for (let i = 0; i < 3; i++) expect(() => loadCollection(fixture('bad'))).toThrow(/BPF_ERR_VERIFIER/);
    expect(() => loadCollection(fixture('maps'), { mapSizes: { hash_map: 0 } })).toThrow(BpfError);
    expect(fds()).toBe(before);
  });

  test('libbpf messages reach a logger when one is set', () => {
    const seen: string[] = [];
    const push = (_o: object, m?: string): void => void seen.push(m ?? '');
    setLibbpfLogger({ warn: push, info: push, debug: push });
    try {
      expect(() => loadCollection(fixture('bad'))).toThrow(/BPF_ERR_VERIFIER/);
    } finally {
      setLibbpfLogger(undefined);
    }
    expect(seen.join('\n')).toMatch(/BEGIN PROG LOAD LOG/);
  });
});

describe('loadCollectionAsync', () => {
  test('loads on a worker thread: same collection, the event loop keeps running, verifier logs kept', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    let c: Collection | undefined;
    try {
      const loads = Array.from({ length: 4 }, () => loadCollectionAsync(fixture('maps')));
      const colls = await Promise.all(loads);
      c = colls[0];
      for (const x of colls.slice(1)) x.close();
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
    expect([...c!.programs.keys()].sort()).toEqual([...coll.programs.keys()].sort());
    expect([...c!.maps.keys()].sort()).toEqual([...coll.maps.keys()].sort());
    c!.close();
    let err: BpfError | undefined;
    try {
      await loadCollectionAsync(fixture('bad'));
    } catch (e) {
      err = e as BpfError;
    }
    expect(err?.code).toBe('BPF_ERR_VERIFIER');
    expect(err?.verifierLog).toMatch(/invalid access to packet/);
  });

  test('a failed async load closes every fd it opened', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    (await loadCollectionAsync(fixture('maps'))).close();
    const before = fds();
    for (let i = 0; i < 3; i++) await expect(loadCollectionAsync(fixture('bad'))).rejects.toThrow(/BPF_ERR_VERIFIER/);
    await expect(loadCollectionAsync(fixture('maps'), { mapSizes: { hash_map: 0 } })).rejects.toThrow(BpfError);
    // Across awaits the runtime may close an fd of its own meanwhile; a leak would only add.
    expect(fds()).toBeLessThanOrEqual(before);
  });
});

describe('program handles', () => {
  test('load only selected programs; pin, reopen, dup; closed programs refuse', () => {
    const c = loadCollection(fixture('maps'), { programs: ['tc_filter'] });
    const dir = makePinDir('prog');
    try {
      const p = c.takeProgram('tc_filter');
      c.close();
      p.pin(join(dir, 'prog'));
      const again = openPinnedProgram(join(dir, 'prog'));
      expect(again.info()).toEqual(p.info());
      expect(again.info().name).toBe('tc_filter');
      const dup = programFromFd(p.fd);
      expect(dup.testRun({ data: ipv4Frame([1, 2, 3, 4]) }).retval).toBe(TC_ACT_OK);
      p.unpin();
      p.close();
      p.close();
      expect(() => p.testRun({ data: ipv4Frame([1, 2, 3, 4]) })).toThrow(/BPF_ERR_CLOSED/);
      again.close();
      dup.close();
    } finally {
      removePinDir(dir);
    }
  });
});

describe('iterators', () => {
  test('an iter/bpf_map program lists the ids of our maps', () => {
    const it = loadCollection(fixture('iter'));
    try {
      using link = attachIter(it.program('dump_maps'));
      expect(link.info().type).toBe(4); // BPF_LINK_TYPE_ITER
      const out = readIterator(link).toString();
      const ids = new Set([...out.matchAll(/^map (\d+)$/gm)].map((m) => Number(m[1])));
      expect(ids.has(coll.map('hash_map').info().id)).toBe(true);
      expect(ids.has(coll.map('deny_v4').info().id)).toBe(true);
      // It can run again, also through a link opened from its fd.
      expect(readIterator(link).length).toBeGreaterThan(0);
      const dup = linkFromFd(link.fd);
      expect(dup.fd).not.toBe(link.fd);
      expect(dup.info().id).toBe(link.info().id);
      expect(readIterator(dup).toString()).toMatch(/^map \d+$/m);
      dup.close();
    } finally {
      it.close();
    }
  });

  test('readIteratorAsync reads the same output off the event loop', async () => {
    const it = loadCollection(fixture('iter'));
    try {
      using link = attachIter(it.program('dump_maps'));
      const sync = readIterator(link).toString();
      const out = (await readIteratorAsync(link)).toString();
      const ids = (t: string) => new Set([...t.matchAll(/^map (\d+)$/gm)].map((m) => Number(m[1])));
      // The iterator lists every map of the system, and other tests create and free maps
      // meanwhile: compare on the maps this suite holds.
      for (const name of ['hash_map', 'deny_v4']) {
        const id = coll.map(name).info().id;
        expect(ids(sync).has(id)).toBe(true);
        expect(ids(out).has(id)).toBe(true);
      }
      link.close();
      await expect(readIteratorAsync(link)).rejects.toThrow(/open iterator link/);
    } finally {
      it.close();
    }
  });
});

describe('ring buffer', () => {
  test('delivers copies of records from the timer, without blocking', async () => {
    const deny = createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 });
    deny.set({ prefixLen: 32, data: Uint8Array.of(10, 200, 7, 7) }, 1);
    const got: Buffer[] = [];
    const rb = createRingBufferConsumer(coll.map('events'), (r) => got.push(r), { intervalMs: 10 });
    try {
      rb.consume(); // drain what earlier tests left
      got.length = 0;
      coll.program('tc_filter').testRun({ data: ipv4Frame([10, 200, 7, 7]), repeat: 3 });
      const deadline = Date.now() + 2000;
      while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(got).toHaveLength(3);
      for (const [i, r] of got.entries()) {
        expect(r.length).toBe(16);
        expect([...r.subarray(0, 4)]).toEqual([10, 200, 7, 7]);
        expect(r.readUInt32LE(4)).toBe(60);
        if (i > 0) expect(r.readBigUInt64LE(8)).toBe((got[i - 1] as Buffer).readBigUInt64LE(8) + 1n);
      }
      expect(rb.consume()).toBe(0);
    } finally {
      rb.close();
      rb.close();
      deny.clear();
    }
    expect(rb.closed).toBe(true);
    expect(() => rb.consume()).toThrow(/BPF_ERR_CLOSED/);
  });

  test('a throwing callback is reported, and consume() throws it', () => {
    const deny = createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 });
    deny.set({ prefixLen: 32, data: Uint8Array.of(10, 200, 7, 8) }, 1);
    const boom = new Error('boom');
    using rb = createRingBufferConsumer(coll.map('events'), () => {
      throw boom;
    }, { intervalMs: 60_000 });
    coll.program('tc_filter').testRun({ data: ipv4Frame([10, 200, 7, 8]) });
    expect(() => rb.consume()).toThrow(boom);
    deny.clear();
  });

  test('refuses a map that is not a RINGBUF', () => {
    expect(() => createRingBufferConsumer(coll.map('hash_map'), () => undefined)).toThrow(/BPF_ERR_TYPE_MISMATCH/);
  });
});
