// The shipped objects are what the sources build to (no drift), and every
// object, rebuilt or shipped, loads into this kernel with all its programs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCollection, readObjectSpec } from '@netfence/bpf-loader';
import { objectDir, objectPath, OBJECTS, type ObjectName } from '@netfence/bpf-programs';
import { assertKernelTestable } from './helpers';

jest.setTimeout(60_000);

describe('bpf objects', () => {
  let out: string;

  beforeAll(() => {
    assertKernelTestable();
    out = mkdtempSync(join(tmpdir(), 'nf-bpf-programs-'));
    execFileSync('bash', [join(__dirname, '..', '..', 'scripts', 'build-bpf.sh'), out], {
      env: { ...process.env, NETFENCE_BPF_BUILD_DIR: join(out, 'build') },
      stdio: 'pipe',
    });
  });
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  const names = Object.keys(OBJECTS) as ObjectName[];

  it.each(names)('%s: the shipped object is byte-identical to a fresh build of the sources', (name) => {
    const file = OBJECTS[name].file;
    expect(readFileSync(join(out, file)).equals(readFileSync(join(objectDir(), file)))).toBe(true);
  });

  it.each(names)('%s: a fresh build loads with every program and map of the manifest', (name) => {
    const o = OBJECTS[name];
    const coll = loadCollection(join(out, o.file));
    try {
      for (const p of Object.values(o.programs)) expect(coll.program(p.name).section).toBe(p.section);
      for (const m of Object.values(o.maps)) {
        const map = coll.map(m.name);
        expect([map.type, map.keySize, map.valueSize, map.maxEntries, map.flags]).toEqual([m.type, m.keySize, m.valueSize, m.defaultMaxEntries, m.flags]);
      }
    } finally {
      coll.close();
    }
  });

  it.each(names)('%s: the shipped object loads and has exactly the manifest programs', (name) => {
    const o = OBJECTS[name];
    const spec = readObjectSpec(objectPath(name));
    expect(spec.programs.map((p) => p.name).sort()).toEqual(Object.values(o.programs).map((p) => p.name).sort());
    loadCollection(spec).close();
  });
});
