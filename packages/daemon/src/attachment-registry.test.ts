// The registry's bookkeeping around a teardown, on in-memory parts (the kernel side of attach and
// removal is covered end to end in test/).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { UnsubscribeReason } from '@netfence/proto';
import type { ControlPlaneClient } from '@netfence/controlplane-client';
import { AttachmentRegistry } from './attachment-registry';
import { loadConfig } from './config';
import type { Datapath } from './datapath';
import { createStateStore } from './state-store';
import { createWorkloadLog } from './workload-log';
import { memoryDatapath } from '../test/support/memory-datapath';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nf-registry-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function registryWith(opts: { destroyFails?: boolean } = {}) {
  const logger = pino({ level: 'silent' });
  const unsubscribed: [string, UnsubscribeReason][] = [];
  const attaches: { id: string; mode: string | undefined }[] = [];
  const link = {
    subscribe: () => new Promise(() => undefined), // the ack never comes: an auto attach stays awaiting
    unsubscribe: (id: string, reason: UnsubscribeReason) => void unsubscribed.push([id, reason]),
  } as unknown as ControlPlaneClient;
  const datapath = {
    attach: (p: { id: string }, mode?: string) => {
      attaches.push({ id: p.id, mode });
      const { dp } = memoryDatapath();
      return Promise.resolve(opts.destroyFails ? { ...dp, destroy: () => { throw new Error('EIO removing the pins'); } } : dp);
    },
    removePins: () => undefined,
  } as unknown as Datapath;
  const registry = new AttachmentRegistry({
    config: loadConfig({ env: {}, overrides: { data_dir: dir, dns: { listen_addr: '127.0.0.1', port_min: 20000, port_max: 20010 } } }),
    logger,
    store: createStateStore(dir, 'nfd-test'),
    now: Date.now,
    workloadLog: createWorkloadLog(logger),
    startDnsServer: (p) => Promise.resolve({ address: `${p.host}:${p.port}`, update: () => undefined, counters: () => ({ allowed: 0n, blocked: 0n }), close: () => Promise.resolve() }),
    datapath: () => datapath,
    link: () => link,
  });
  return { registry, unsubscribed, attaches };
}

const tap = { kind: 'tc' as const, target: 'nftap0', identity: { ifindex: 4242 }, direction: 'ingress' as const, l3: false };

test('an auto attach makes its filter in BLOCK_ALL before attachAuto returns (the rest of its attach comes later)', async () => {
  const { registry, attaches } = registryWith();
  const started = registry.attachAuto(tap, {}, 'interface:nftap*');
  expect(attaches).toEqual([{ id: started.id, mode: 'BLOCK_ALL' }]); // synchronously, in BLOCK_ALL
  expect(registry.size).toBe(0); // not held (listed) yet
  await started.finish();
  expect(registry.size).toBe(1);
});

test('a removed target whose teardown fails is still said Unsubscribed (REMOVED): the control plane is never left believing it held', async () => {
  const { registry, unsubscribed } = registryWith({ destroyFails: true });
  const started = registry.attachAuto(tap, {}, 'interface:nftap*');
  await started.finish();
  expect(registry.size).toBe(1);
  registry.interfaceGone(4242);
  await new Promise((r) => setTimeout(r, 50));
  expect(registry.size).toBe(0);
  expect(unsubscribed).toEqual([[started.id, UnsubscribeReason.REMOVED]]);
});
