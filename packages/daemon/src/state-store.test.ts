import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { applyCommand, emptyState, LearnedTable } from '@netfence/policy-engine';
import { createStateStore, serializeRecordChunks, type AttachmentRecord } from './state-store';

function record(allow: string[]): AttachmentRecord {
  let policy = applyCommand(emptyState(), { type: 'setMode', mode: 'allowlist' }, 0);
  for (const cidr of allow) policy = applyCommand(policy, { type: 'allowCidr', entry: { cidr } }, 0);
  return {
    version: 1,
    id: 'att-000000000001',
    numericId: 1,
    kind: 'cgroup',
    target: '/sys/fs/cgroup/nf-x',
    identity: { cgroupId: '1' },
    metadata: {},
    dnsAddress: '127.0.0.1:11000',
    attachedAt: new Date(0).toISOString(),
    policy,
  };
}

describe('state store', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nf-state-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const saved = (): string[] => {
    const file = join(dir, 'attachments', 'att-000000000001.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as AttachmentRecord).policy.allowCidrs.map((r) => r.cidr);
  };

  it('a background save that finishes after a newer synchronous save does not put the older record back', async () => {
    const store = createStateStore(dir, 'nfd-test');
    const wider = store.saveAsync(record(['203.0.113.7/32', '198.51.100.0/24']));
    store.save(record(['198.51.100.0/24'])); // a narrowing, saved synchronously while the wider write is in flight
    await wider;
    expect(saved()).toEqual(['198.51.100.0/24']);
    expect(readdirSync(join(dir, 'attachments')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // and a later background save still lands
    await store.saveAsync(record(['198.51.100.0/24', '203.0.113.9/32']));
    expect(saved()).toEqual(['198.51.100.0/24', '203.0.113.9/32']);
  });

  it('a background save in flight when the record is removed does not bring it back', async () => {
    const store = createStateStore(dir, 'nfd-test');
    store.save(record([]));
    const late = store.saveAsync(record(['203.0.113.7/32']));
    store.remove('att-000000000001');
    await late;
    expect(readdirSync(join(dir, 'attachments'))).toEqual([]);
    expect(store.loadAll().records).toEqual([]);
  });

  it('write(): the record is there at once, before its flush; flushed() resolves once it is synced, also after a removal', async () => {
    const errors: unknown[] = [];
    const store = createStateStore(dir, 'nfd-test', (e) => errors.push(e));
    store.write(record(['203.0.113.7/32']));
    expect(saved()).toEqual(['203.0.113.7/32']); // visible to the next start right away (the page cache holds it)
    expect(store.loadAll().records.map((r) => r.id)).toEqual(['att-000000000001']);
    const many = Array.from({ length: 40 }, (_, i) => ({ ...record([]), id: `att-${String(i + 2).padStart(12, '0')}` }));
    for (const r of many) store.write(r);
    store.remove(many[0]!.id); // removed before its flush: nothing to sync, not an error
    await store.flushed();
    expect(errors).toEqual([]);
    expect(store.loadAll().records).toHaveLength(40);
    expect(readdirSync(join(dir, 'attachments')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await store.flushed(); // nothing dirty: resolves at once
  });

  it('a failed flush is reported, rejects flushed(), and is retried with the next write', async () => {
    const errors: unknown[] = [];
    const store = createStateStore(dir, 'nfd-test', (e) => errors.push(e));
    store.write(record(['203.0.113.7/32']));
    rmSync(join(dir, 'attachments'), { recursive: true }); // the directory cannot be synced any more
    await expect(store.flushed()).rejects.toThrow(/ENOENT/);
    expect(errors).toHaveLength(1);
    mkdirSync(join(dir, 'attachments'));
    store.write(record(['198.51.100.0/24']));
    await store.flushed(); // the failed file (gone) and the new one: no error this time
    expect(errors).toHaveLength(1);
    expect(saved()).toEqual(['198.51.100.0/24']);
  });
});

describe('serializeRecordChunks', () => {
  const text = async (r: AttachmentRecord) => Buffer.concat(await serializeRecordChunks(r)).toString('utf8');
  test('is JSON.stringify of the record, in slices, also with odd metadata (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3000 }), fc.dictionary(fc.string(), fc.string()), fc.integer({ min: 0, max: 50 }), async (n, metadata, more) => {
        const t = new LearnedTable();
        for (let i = 0; i < n; i++) t.apply(t.plan({ name: `h${i % 40}.example.test`, addresses: [`10.${(i >> 8) & 255}.${i & 255}.1`], ttlSec: i }, 1_000));
        const base = { ...record(['203.0.113.0/24']), metadata };
        const r1 = { ...base, policy: { ...base.policy, learned: t.list() } };
        expect(await text(r1)).toBe(JSON.stringify(r1));
        for (let i = 0; i < more; i++) t.apply(t.plan({ name: 'more.example.test', addresses: [`203.0.113.${i}`], ttlSec: 5 }, 2_000));
        const r2 = { ...base, policy: { ...base.policy, learned: t.list() } };
        expect(await text(r2)).toBe(JSON.stringify(r2));
      }),
      { numRuns: 30 },
    );
  });
});
