// --version on every binary, printed from its package.json on stdout with exit 0: the actual
// entry points, run as child processes through the shared require hook.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const REPO = join(__dirname, '..', '..', '..');
const REGISTER = join(REPO, 'tools', 'swc-register.cjs');

const BINARIES = [
  ['netfenced', 'packages/cli/src/main.ts', 'packages/cli/package.json'],
  ['netfence-dns', 'packages/dns-filter/src/cli.ts', 'packages/dns-filter/package.json'],
  ['netfence-controlplane', 'packages/reference-controlplane/src/cli.ts', 'packages/reference-controlplane/package.json'],
] as const;

test.each(BINARIES)('%s --version prints its package version', (_name, entry, pkg) => {
  const r = spawnSync(process.execPath, ['-r', REGISTER, join(REPO, entry), '--version'], { encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toBe(`${(require(join(REPO, pkg)) as { version: string }).version}\n`);
});
