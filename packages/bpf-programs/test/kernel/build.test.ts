// The shipped objects are what the sources build to (no drift), every
// object, rebuilt or shipped, loads into this kernel with all its programs,
// and only the sever object carries CO-RE relocations (the filters load
// without libbpf parsing the kernel's BTF).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCollection, readObjectSpec } from '@netfence/bpf-loader';
import { objectDir, objectPath, OBJECTS, type ObjectName } from '@netfence/bpf-programs';
import { assertKernelTestable } from './helpers';

jest.setTimeout(60_000);

/** Bytes of CO-RE relocation records in an object's .BTF.ext (ELF64 little-endian); -1 without .BTF.ext. */
function coreReloBytes(file: string): number {
  const b = readFileSync(file);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: b.readUInt32LE(o), off: Number(b.readBigUInt64LE(o + 0x18)) };
  };
  const strtab = section(b.readUInt16LE(0x3e)).off;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (b.toString('latin1', strtab + s.name, b.indexOf(0, strtab + s.name)) !== '.BTF.ext') continue;
    const hdrLen = b.readUInt32LE(s.off + 4); // magic u16, version u8, flags u8, hdr_len u32, ...
    return hdrLen >= 32 ? b.readUInt32LE(s.off + 28) : 0; // core_relo_len
  }
  return -1;
}

/** What a loaded program's translated code calls, by name (bpftool prog dump xlated: `call <fn>#<n>`; a subprogram is `pc`). */
function xlatedCalls(id: number): string[] {
  const text = execFileSync('bpftool', ['prog', 'dump', 'xlated', 'id', String(id)], { encoding: 'utf8' });
  return [...text.matchAll(/\bcall ([A-Za-z_]\w*)/g)].map((m) => m[1] as string);
}

describe('bpf objects', () => {
  let out: string;

  beforeAll(() => {
    assertKernelTestable();
    out = mkdtempSync(join(tmpdir(), 'nf-bpf-programs-'));
    // Built from a copy at another path: the bytes must not depend on where
    // the checkout lives (CI clones elsewhere than a developer does).
    const pkg = join(__dirname, '..', '..');
    const copy = join(out, 'elsewhere', 'bpf-programs');
    for (const dir of ['src', 'scripts']) cpSync(join(pkg, dir), join(copy, dir), { recursive: true });
    execFileSync('bash', [join(copy, 'scripts', 'build-bpf.sh'), out], {
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

  it.each(names)('%s: CO-RE relocations only in the sever object', (name) => {
    const bytes = coreReloBytes(objectPath(name));
    if (name === 'sever') expect(bytes).toBeGreaterThan(0);
    else expect([name, bytes]).toEqual([name, 0]);
  });

  // A map look-up the verifier cannot pin to one map stays the generic helper, which reaches the
  // map's code through an indirect call (a retpoline here): ~10 ns a packet when clang merged the
  // IPv4 and IPv6 trie look-ups into one call (NF_OWN_CALL_SITE in netfence_common.h).
  it.each(names)('%s: every map look-up is inlined or a direct call of its map type, none left to the generic helper', (name) => {
    const o = OBJECTS[name];
    const coll = loadCollection(objectPath(name));
    try {
      const calls = Object.values(o.programs).map((p) => ({ program: p.name, calls: xlatedCalls(coll.program(p.name).info().id) }));
      for (const c of calls) expect({ program: c.program, generic: c.calls.filter((f) => f === 'bpf_map_lookup_elem') }).toEqual({ program: c.program, generic: [] });
      // the dump names what is called: the rules look-ups show up as direct calls of the trie's code
      if (name === 'tc' || name === 'xdp' || name === 'cgroup' || name === 'sever') expect(calls.flatMap((c) => c.calls)).toContain('trie_lookup_elem');
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
