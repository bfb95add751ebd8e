import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON_ERROR_CODES } from '@netfence/daemon';

const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');

test('the README error table lists every code the daemon defines, and no other', () => {
  const table = readme.slice(readme.indexOf('## Error codes'), readme.indexOf('## Metrics'));
  const listed = [...table.matchAll(/^\| `(NETFENCE_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
  expect([...listed].sort()).toEqual([...DAEMON_ERROR_CODES].sort());
});

test('the README shows benchmark figures', () => {
  expect(readme).toMatch(/attach, cgroup targets, 200 sequential: p50 [\d.]+ ms/);
  expect(readme).toMatch(/daemon VmRSS: [\d.]+ MB/);
});
