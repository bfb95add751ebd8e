// This package's version, for netfence_cp_build_info and `netfence-controlplane --version`.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const NAME = '@netfence/reference-controlplane';

/**
 * Read from the nearest package.json named like this package, looking upwards from this file:
 * '../package.json' is right for src/ and dist/, but the benchmark runs this file compiled under
 * node_modules/.cache/, and importing the package by its own name is an import arrow the
 * structure check forbids.
 */
function packageVersion(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === NAME && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no (readable) package.json here: look further up
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}

export const VERSION: string = packageVersion();
