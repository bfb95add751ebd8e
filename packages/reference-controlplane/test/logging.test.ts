// The control plane logs like the daemon (packages/daemon/src/logger.ts): pino JSON on stderr,
// ISO time, base {service}, and no key written twice on a line.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startFromArgv } from '../src/cli';
import { createControlPlane } from '@netfence/reference-controlplane';
import type { Logger } from '@netfence/reference-controlplane';

/** Every top-level key of a one-line JSON object, in order, repeats included (JSON.parse hides repeats). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(line.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

function capture(stream: NodeJS.WriteStream): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const spy = jest.spyOn(stream, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  }) as typeof stream.write);
  return { lines, restore: () => spy.mockRestore() };
}

function expectDaemonFormat(line: string, service: string): Record<string, unknown> {
  const keys = topLevelKeys(line);
  expect(keys.slice(0, 3)).toEqual(['level', 'time', 'service']);
  expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]); // no repeated key
  const rec = JSON.parse(line) as Record<string, unknown>;
  expect(rec.service).toBe(service);
  expect(new Date(rec.time as string).toISOString()).toBe(rec.time); // ISO 8601, UTC, ms
  return rec;
}

describe('control plane logs', () => {
  it('the CLI writes pino JSON lines with ISO time to stderr, nothing to stdout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-log-'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'policies:\n  - name: all\n    mode: block_all\n');
    const err = capture(process.stderr);
    const out = capture(process.stdout);
    let started: Awaited<ReturnType<typeof startFromArgv>> | undefined;
    try {
      started = await startFromArgv(['node', 'netfence-controlplane', '--listen', '127.0.0.1:0', '--policy', policy], {});
    } finally {
      err.restore();
      out.restore();
      await started?.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(out.lines).toEqual([]);
    const listening = err.lines.find((l) => l.includes('"msg":"control plane listening"'));
    const ready = err.lines.find((l) => l.includes('"msg":"netfence-controlplane ready"'));
    expect(listening).toBeDefined();
    expect(ready).toBeDefined();
    expect(expectDaemonFormat(listening!, 'netfence-controlplane')).toMatchObject({ level: 30, component: 'reference-controlplane' });
    expect(expectDaemonFormat(ready!, 'netfence-controlplane')).toMatchObject({ level: 30, policies: 1 });
  });

  it('keeps an embedder\'s component binding instead of writing the key twice', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        cb();
      },
    });
    // The daemon's root logger (createLogger in packages/daemon/src/logger.ts) and its embedding child.
    const root = pino({ level: 'info', base: { service: 'netfenced' }, timestamp: pino.stdTimeFunctions.isoTime }, sink);
    const cp = createControlPlane({ policy: { policies: [] }, logger: root.child({ component: 'embedded-controlplane' }) as unknown as Logger });
    try {
      await cp.listen('127.0.0.1:0');
    } finally {
      await cp.close();
    }
    const line = lines.find((l) => l.includes('"msg":"control plane listening"'));
    expect(line).toBeDefined();
    expect(expectDaemonFormat(line!, 'netfenced')).toMatchObject({ component: 'embedded-controlplane' });
  });
});
