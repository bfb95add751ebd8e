// The built .deb, read without installing it: control fields, file list, conffiles, maintainer
// scripts, and `systemd-analyze verify` on the unit it carries.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDeb, ROOT, run, sh, unitValues, VERSION } from './support';

let dir = '';
let deb = '';
/** path (without the leading "."), mode string, owner/group */
let entries: { path: string; mode: string; owner: string }[] = [];
const extracted = () => join(dir, 'root');
const control = () => join(dir, 'control');

beforeAll(() => {
  ({ dir, deb } = buildDeb());
  entries = sh('dpkg-deb', ['-c', deb])
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(/\s+/);
      return { mode: f[0]!, owner: f[1]!, path: f.slice(5).join(' ').replace(/^\./, '').replace(/ -> .*$/, '') };
    });
  sh('dpkg-deb', ['-x', deb, extracted()]);
  sh('dpkg-deb', ['-e', deb, control()]);
}, 240_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Lines calling systemctl, deb-systemd-invoke or systemd-tmpfiles outside an `if [ -d /run/systemd/system ]` block. */
function unguardedSystemdCalls(text: string): string[] {
  const open: string[] = [];
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (l.startsWith('#')) continue;
    if (/^if\b/.test(l)) open.push(l);
    else if (/^fi\b/.test(l)) open.pop();
    else if (/systemctl|deb-systemd-invoke|systemd-tmpfiles/.test(l) && !open.some((o) => o.startsWith('if [ -d /run/systemd/system ]'))) out.push(l);
  }
  return out;
}

const paths = () => new Set(entries.map((e) => e.path));

test('the file name and control fields name the package, the version of the CLI and this architecture', () => {
  const arch = sh('dpkg', ['--print-architecture']).trim();
  expect(deb).toBe(join(dir, `netfence_${VERSION}_${arch}.deb`));
  const field = (f: string) => sh('dpkg-deb', ['-f', deb, f]).trim();
  expect(field('Package')).toBe('netfence');
  expect(field('Version')).toBe(VERSION);
  expect(field('Architecture')).toBe(arch);
  expect(field('Depends').split(/,\s*/)).toEqual(['nodejs (>= 20)', 'libbpf1', 'iproute2']);
  expect(field('Description')).toMatch(/eBPF egress firewall/);
  expect(Number(field('Installed-Size'))).toBeGreaterThan(1000);
});

test('it holds the commands, the default config, the unit, the packages with their eBPF objects and licenses', () => {
  const p = paths();
  const lib = '/usr/lib/netfence/node_modules';
  const expected = [
    '/usr/bin/netfenced',
    '/usr/bin/netfence',
    '/usr/bin/netfence-dns',
    '/usr/bin/netfence-controlplane',
    '/etc/netfence/config.yaml',
    '/etc/netfence/policy.yaml',
    '/lib/systemd/system/netfenced.service',
    '/usr/lib/tmpfiles.d/netfence.conf',
    '/usr/share/doc/netfence/copyright',
    '/usr/share/doc/netfence/README.md',
    `${lib}/@netfence/bpf-programs/bpf/tc_filter.bpf.o`,
    `${lib}/@netfence/bpf-programs/bpf/cgroup_filter.bpf.o`,
    `${lib}/@netfence/bpf-programs/bpf/sever.bpf.o`,
    `${lib}/@netfence/cli/dist/main.js`,
    `${lib}/@netfence/dns-filter/dist/cli.js`,
    `${lib}/@netfence/proto/netfence/v1/daemon.proto`,
    `${lib}/koffi/package.json`,
    `${lib}/@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`,
    `${lib}/pino/package.json`,
    `${lib}/zod/package.json`,
  ];
  for (const name of ['proto', 'policy-engine', 'policy-wire', 'bpf-loader', 'bpf-programs', 'dns-filter', 'controlplane-client', 'reference-controlplane', 'daemon', 'cli'])
    for (const f of ['package.json', 'dist/index.js', 'README.md', 'LICENSE']) expected.push(`${lib}/@netfence/${name}/${f}`);
  expect(expected.filter((f) => !p.has(f))).toEqual([]);
  // Workspace packages are real directories, not links into a checkout.
  expect(entries.filter((e) => e.mode.startsWith('l'))).toEqual([]);
  expect(entries.filter((e) => e.owner !== 'root/root')).toEqual([]);
});

test('it holds no dev dependency, test, TypeScript source, .bin or other platform build', () => {
  const list = [...paths()];
  const lib = '/usr/lib/netfence/node_modules/';
  const topLevel = new Set(list.filter((f) => f.startsWith(lib)).map((f) => /^((@[^/]+\/)?[^/]+)/.exec(f.slice(lib.length))?.[1]));
  for (const dev of ['jest', 'typescript', '@swc', '@types', 'nx', 'fast-check', '@bufbuild/buf', 'protobufjs', '@grpc', 'dns-packet', '@netfence/lab', '@netfence/packaging'])
    expect([...topLevel].filter((t) => t === dev || t?.startsWith(`${dev}/`))).toEqual([]);
  expect(list.filter((f) => /\/(test|tests|__tests__)\/|\.(test|spec)\.[cm]?[jt]s/.test(f))).toEqual([]);
  expect(list.filter((f) => /^\/usr\/lib\/netfence\/node_modules\/@netfence\/[^/]+\/src\/.*\.ts$/.test(f))).toEqual([]);
  expect(list.filter((f) => f.includes('/.bin/'))).toEqual([]);
  expect(list.filter((f) => /\/(musl|linux)_[a-z0-9]+\//.test(f) && !f.includes(`/linux_${process.arch}/`))).toEqual([]);
  expect(list.filter((f) => /@koromix\/koffi-/.test(f) && !f.includes(`koffi-linux-${process.arch}`))).toEqual([]);
});

test('every compiled file of a netfence package comes from a source file of the checkout (no stale build output)', () => {
  const dirs: Record<string, string> = { proto: 'proto' };
  const stale = [...paths()].flatMap((f) => {
    const m = /^\/usr\/lib\/netfence\/node_modules\/@netfence\/([a-z-]+)\/dist\/(.+?)\.(js|d\.ts)(\.map)?$/.exec(f);
    if (!m) return [];
    const src = join(ROOT, dirs[m[1]!] ?? `packages/${m[1]}`, 'src', `${m[2]}.ts`);
    return existsSync(src) ? [] : [f];
  });
  expect(stale).toEqual([]);
});

test('commands are executable shims running the entry points with /usr/bin/node; config.yaml is not world-readable', () => {
  for (const cmd of ['netfenced', 'netfence', 'netfence-dns', 'netfence-controlplane']) {
    const e = entries.find((x) => x.path === `/usr/bin/${cmd}`)!;
    expect(e.mode).toBe('-rwxr-xr-x');
    const text = readFileSync(join(extracted(), 'usr/bin', cmd), 'utf8');
    expect(text).toMatch(/^#!\/bin\/sh\n/);
    expect(text).toMatch(/exec \/usr\/bin\/node \/usr\/lib\/netfence\/node_modules\/@netfence\/[a-z-]+\/dist\/[a-z]+\.js "\$@"/);
  }
  expect(entries.find((x) => x.path === '/etc/netfence/config.yaml')!.mode).toBe('-rw-r-----');
  // The extracted commands run from the extracted tree (their node_modules resolve there).
  const main = join(extracted(), 'usr/lib/netfence/node_modules/@netfence/cli/dist/main.js');
  expect(sh('node', [main, '--version']).trim()).toBe(VERSION);
});

test('both files in /etc/netfence are conffiles, and md5sums cover every file', () => {
  expect(readFileSync(join(control(), 'conffiles'), 'utf8')).toBe('/etc/netfence/config.yaml\n/etc/netfence/policy.yaml\n');
  const sums = readFileSync(join(control(), 'md5sums'), 'utf8').split('\n').filter(Boolean);
  const files = entries.filter((e) => e.mode.startsWith('-')).map((e) => e.path.slice(1));
  expect(sums.map((l) => l.slice(34)).sort()).toEqual(files.sort());
  const bpf = sums.find((l) => l.endsWith('bpf/tc_filter.bpf.o'))!;
  expect(bpf.slice(0, 32)).toBe(sh('md5sum', [join(extracted(), bpf.slice(34))]).slice(0, 32));
});

test('the default config is netfence.v1 keys on the unit\'s directories, and the default policy blocks everything', () => {
  const config = readFileSync(join(extracted(), 'etc/netfence/config.yaml'), 'utf8');
  expect(config).toMatch(/^socket: \/run\/netfence\/netfence\.sock$/m);
  expect(config).toMatch(/^data_dir: \/var\/lib\/netfence$/m);
  expect(config).toMatch(/^policy_file: \/etc\/netfence\/policy\.yaml$/m);
  expect(config).not.toMatch(/^control_plane:/m);
  const policy = readFileSync(join(extracted(), 'etc/netfence/policy.yaml'), 'utf8');
  const live = policy.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  expect(live.map((l) => l.replace(/\s+#.*$/, ''))).toEqual(['version: 1', 'policies:', '  - name: default', '    mode: block_all']);
  // The tmpfiles.d entry keeps the netfence.v1 default socket path pointing at the unit's socket.
  expect(readFileSync(join(extracted(), 'usr/lib/tmpfiles.d/netfence.conf'), 'utf8')).toMatch(/^L \/run\/netfence\.sock - - - - \/run\/netfence\/netfence\.sock$/m);
});

test('maintainer scripts are valid sh and do what they must, never enabling the service or removing pinned filters', () => {
  const script = (s: string) => readFileSync(join(control(), s), 'utf8');
  for (const s of ['postinst', 'prerm', 'postrm']) {
    const r = run('sh', ['-n', join(control(), s)]);
    expect({ s, status: r.status, stderr: r.stderr }).toEqual({ s, status: 0, stderr: '' });
    expect(script(s)).toMatch(/^#!\/bin\/sh\n/);
    expect(script(s)).toMatch(/^set -e$/m);
    // systemctl only where systemd runs (a container without it must install cleanly).
    expect(unguardedSystemdCalls(script(s))).toEqual([]);
    expect(script(s)).not.toMatch(/rm [^\n]*\/sys\/fs\/bpf/);
    expect(script(s)).not.toMatch(/\b(enable|start)\b [^\n]*netfenced\.service/);
  }
  expect(script('postinst')).toMatch(/daemon-reload/);
  expect(script('postinst')).toMatch(/try-restart netfenced\.service/);
  expect(script('prerm')).toMatch(/remove\|deconfigure\)\n[\s\S]*stop netfenced\.service/);
  const purge = /\n {2}purge\)\n([\s\S]*?);;/.exec(script('postrm'))?.[1] ?? '';
  expect(purge).toMatch(/rm -rf \/etc\/netfence/);
  const remove = /\n {2}remove\)\n([\s\S]*?);;/.exec(script('postrm'))?.[1] ?? '';
  expect(remove).not.toMatch(/\/etc\/netfence/);
});

test('the unit verifies cleanly and has the hardening, state directory, bpffs dependency and restart policy', () => {
  const unitPath = join(extracted(), 'lib/systemd/system/netfenced.service');
  const unit = readFileSync(unitPath, 'utf8');
  // systemd-analyze checks the ExecStart binary exists: point it at the extracted tree.
  const copy = join(dir, 'netfenced.service');
  writeFileSync(copy, unit.replace('ExecStart=/usr/bin/netfenced', `ExecStart=${join(extracted(), 'usr/bin/netfenced')}`));
  const r = run('systemd-analyze', ['verify', copy]);
  expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: '' });

  const v = (k: string) => unitValues(unit, k);
  expect(v('ExecStart')).toEqual(['/usr/bin/netfenced start --config /etc/netfence/config.yaml']);
  expect(v('Type')).toEqual(['simple']);
  expect(v('Restart')).toEqual(['on-failure']);
  expect(v('StateDirectory')).toEqual(['netfence']);
  expect(v('RuntimeDirectory')).toEqual(['netfence']);
  expect(v('RequiresMountsFor').join(' ').split(' ')).toContain('/sys/fs/bpf');
  expect(v('ProtectSystem')).toEqual(['strict']);
  expect(v('ReadWritePaths')).toContain('/sys/fs/bpf');
  expect(v('ProtectHome')).toEqual(['yes']);
  expect(v('PrivateTmp')).toEqual(['yes']);
  expect(v('NoNewPrivileges')).toEqual(['yes']);
  expect(v('LimitMEMLOCK')).toEqual(['infinity']);
  // A stop signals the daemon alone (it leaves the pins); never SIGKILL the group first.
  expect(v('KillMode')).toEqual(['mixed']);
  expect(v('KillSignal')).toEqual(['SIGTERM']);
  expect(v('ExecStop')).toEqual([]);
  const caps = v('CapabilityBoundingSet')[0]!.split(' ').sort();
  expect(caps).toEqual(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']);
  expect(v('AmbientCapabilities')[0]!.split(' ').sort()).toEqual(caps);
  expect(v('WantedBy')).toEqual(['multi-user.target']);
});
