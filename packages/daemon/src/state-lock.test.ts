import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DaemonError } from './daemon-error';
import { LOCK_FILE, lockStateDir } from './state-lock';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nfstatelock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function refusal(dataDir: string): DaemonError {
  try {
    lockStateDir(dataDir).release();
  } catch (e) {
    return e as DaemonError;
  }
  throw new Error('the lock was granted twice');
}

test('a second holder is refused, naming the directory and the holder pid; released, it can be taken again', () => {
  const data = join(dir, 'data');
  const held = lockStateDir(data);
  expect(readFileSync(join(data, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
  const e = refusal(data);
  expect(e.code).toBe('NETFENCE_ERR_ALREADY_EXISTS');
  expect(e.message).toContain(`pid ${process.pid}`);
  expect(e.message).toContain(data);
  held.release();
  held.release(); // idempotent
  lockStateDir(data).release();
});

test('the lock of a process killed with SIGKILL does not block the next one', async () => {
  const data = join(dir, 'data');
  const script = `require(${JSON.stringify(join(__dirname, 'state-lock.ts'))}).lockStateDir(${JSON.stringify(data)}); console.log('locked'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-r', join(__dirname, '../../../tools/swc-register.cjs'), '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve());
    child.once('exit', (c) => reject(new Error(`child exited ${c}`)));
  });
  expect(refusal(data).message).toContain(`pid ${child.pid}`);
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const lock = lockStateDir(data);
  expect(readFileSync(join(data, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
  lock.release();
});
