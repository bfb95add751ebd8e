// 200 attachments on one host (cgroups: cheaper than 200 veths), attached one after the
// other through the gRPC API with the embedded reference control plane, listed, detached.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabCgroup } from '@netfence/lab';
import { cgroupProgs, createDaemonLab, pinnedIds, savedIds, startDaemon, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';

jest.setTimeout(120_000);

const N = 200;
let dl: DaemonLab;
let d: DaemonProcess;

beforeAll(async () => {
  dl = await createDaemonLab();
  const policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, 'version: 1\npolicies:\n  - name: scale\n    match: { tenant: scale }\n    mode: allowlist\n    rules:\n      - ALLOW 203.0.113.30/32\n');
  d = await startDaemon(dl, writeDaemonConfig(dl, 'scale', { policy_file: policy, log_level: 'info' }));
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

test(`${N} cgroup attachments: all attach, List shows ${N}, all detach and leave nothing`, async () => {
  const cgs: LabCgroup[] = Array.from({ length: N }, (_, i) => dl.cgroup(`s${i}`));
  const ids: string[] = [];
  const times: number[] = [];
  for (const cg of cgs) {
    const t0 = performance.now();
    const r = await d.api.attach({ cgroup_path: cg.path, metadata: { tenant: 'scale' } });
    times.push(performance.now() - t0);
    ids.push(r.id);
  }
  times.sort((a, b) => a - b);
  // Figures for the reader; `npm run bench` is where they are measured properly.
  process.stderr.write(`[scale] ${N} sequential cgroup attaches: p50 ${times[N >> 1]!.toFixed(1)} ms, max ${times[N - 1]!.toFixed(1)} ms\n`);

  const listed = await d.api.listAll();
  expect(listed).toHaveLength(N);
  expect(new Set(listed.map((a) => a.id))).toEqual(new Set(ids));
  expect(new Set(listed.map((a) => a.dns_address)).size).toBe(N);
  expect(listed.every((a) => a.mode === 'POLICY_MODE_ALLOWLIST')).toBe(true);
  expect((await d.api.list(0)).total_count).toBe(N);
  expect((await d.api.status()).attachment_count).toBe(N);
  expect(pinnedIds(dl)).toHaveLength(N);
  expect(savedIds(d)).toHaveLength(N);
  // Spot-check the kernel: every sampled cgroup carries the programs.
  for (const i of [0, N >> 1, N - 1]) expect(cgroupProgs(cgs[i]!.path).length).toBeGreaterThanOrEqual(5);
  // And the filter works on one of them.
  expect(await dl.canConnect('203.0.113.30', { cgroup: cgs[N - 1] })).toBe(true);
  expect(await dl.canConnect('203.0.113.20', { cgroup: cgs[N - 1] })).toBe(false);

  for (const id of ids) await d.api.detach(id);
  expect(await d.api.listAll()).toEqual([]);
  expect(pinnedIds(dl)).toEqual([]);
  expect(savedIds(d)).toEqual([]);
  for (const i of [0, N >> 1, N - 1]) expect(cgroupProgs(cgs[i]!.path)).toEqual([]);
});
