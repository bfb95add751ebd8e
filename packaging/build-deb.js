#!/usr/bin/env node
// Builds the Debian package dist/netfence_<version>_<arch>.deb from this checkout: the built
// dist/ folders of the workspace packages and their production dependencies as installed in
// node_modules (nothing is downloaded), the files of packaging/debian/, and dpkg-deb.
//
//   node packaging/build-deb.js [--out DIR]      (`npm run package` builds every package first)
//
// What goes in:
// - /usr/lib/netfence/node_modules: the production dependency closure of @netfence/cli and
//   @netfence/dns-filter (`npm ls --omit=dev --all`, so no jest, typescript, swc, ...).
//   Workspace packages go in as real directories holding what `npm pack` would publish
//   (package.json "files": dist/ without stale output of deleted sources, README, LICENSE,
//   bpf-programs' compiled bpf/*.o); other
//   packages are copied whole, without their .bin, their published tests and nested
//   node_modules (nested packages of the closure are copied on their own). Native builds: only this architecture's glibc build
//   of koffi is kept (the musl one is dropped).
// - /usr/bin/netfenced, netfence, netfence-dns, netfence-controlplane: sh shims running the
//   packages' entry points with /usr/bin/node.
// - /etc/netfence/{config,policy}.yaml (conffiles), the systemd unit, a tmpfiles.d link for
//   the netfence.v1 socket path, docs and the copyright file, maintainer scripts, md5sums.
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const debianDir = path.join(__dirname, 'debian');
/** The packages whose production closure is shipped (the daemon brings the rest). */
const ROOTS = ['@netfence/cli', '@netfence/dns-filter'];
const LIB = 'usr/lib/netfence';
/** dpkg architecture -> Node's process.arch (the native builds in node_modules). */
const NODE_ARCH = { amd64: 'x64', arm64: 'arm64', armhf: 'arm', i386: 'ia32', riscv64: 'riscv64', ppc64el: 'ppc64', loong64: 'loong64' };
/** The commands in /usr/bin: name -> entry point below /usr/lib/netfence/node_modules. */
const COMMANDS = {
  netfenced: '@netfence/cli/dist/main.js',
  netfence: '@netfence/cli/dist/main.js',
  'netfence-dns': '@netfence/dns-filter/dist/cli.js',
  'netfence-controlplane': '@netfence/reference-controlplane/dist/cli.js',
};
/** READMEs shipped in /usr/share/doc/netfence (the config and policy files point at them). */
const DOCS = { 'README.md': 'README.md', 'daemon.md': 'packages/daemon/README.md', 'cli.md': 'packages/cli/README.md', 'dns-filter.md': 'packages/dns-filter/README.md', 'reference-controlplane.md': 'packages/reference-controlplane/README.md' };
const CONFFILES = ['/etc/netfence/config.yaml', '/etc/netfence/policy.yaml'];

class PackageError extends Error {}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts });
  } catch (e) {
    throw new PackageError(`${cmd} ${args.join(' ')} failed: ${String(e.stderr || e.message).trim()}`);
  }
}

/** Workspace directories (relative to the root) by package name. */
function workspaces() {
  const out = new Map();
  for (const pattern of JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).workspaces) {
    const dirs = pattern.endsWith('/*') ? fs.readdirSync(path.join(root, pattern.slice(0, -2))).map((d) => `${pattern.slice(0, -2)}/${d}`) : [pattern];
    for (const dir of dirs) {
      const pj = path.join(root, dir, 'package.json');
      if (fs.existsSync(pj)) out.set(JSON.parse(fs.readFileSync(pj, 'utf8')).name, dir);
    }
  }
  return out;
}

/**
 * The production closure of ROOTS as [source dir, destination below node_modules/, kind]:
 * `npm ls --omit=dev --all --parseable` lists every installed location it uses.
 */
function closure(ws) {
  const lines = run('npm', ['ls', '--omit=dev', '--all', '--parseable', ...ROOTS.flatMap((r) => ['-w', r])]).split('\n').filter(Boolean);
  const byDir = new Map([...ws].map(([name, dir]) => [dir, name]));
  const out = new Map();
  for (const abs of lines) {
    const rel = path.relative(root, abs);
    if (rel === '') continue;
    let entry;
    const wsName = rel.startsWith('node_modules/@netfence/') ? rel.slice('node_modules/'.length) : undefined;
    if (wsName && ws.has(wsName)) entry = { src: ws.get(wsName), dest: wsName, workspace: true };
    else if (rel.startsWith('node_modules/')) entry = { src: rel, dest: rel.slice('node_modules/'.length), workspace: false };
    else {
      const owner = [...byDir.keys()].find((d) => rel.startsWith(`${d}/node_modules/`));
      if (!owner) throw new PackageError(`npm ls listed ${rel}, which is neither in node_modules nor below a workspace`);
      entry = { src: rel, dest: `${byDir.get(owner)}/node_modules/${rel.slice(owner.length + '/node_modules/'.length)}`, workspace: false };
    }
    out.set(entry.dest, entry);
  }
  for (const r of ROOTS) if (!out.has(r)) throw new PackageError(`npm ls did not list ${r}: run npm ci first`);
  return [...out.values()];
}

/** What `npm pack` would publish of each workspace package: name -> relative file paths. */
function packedFiles(names) {
  const json = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', ...names.flatMap((n) => ['-w', n])]));
  return new Map(json.map((p) => [p.name, p.files.map((f) => f.path)]));
}

/**
 * A file tsc once wrote to dist/ (every package builds src/ into dist/) whose source is gone:
 * tsc never deletes those, and npm pack would ship them. Left out (and counted).
 */
let staleSkipped = 0;
function isStaleOutput(pkgDir, file) {
  const m = /^dist\/(.+?)\.(js|d\.ts)(\.map)?$/.exec(file);
  if (!m || fs.existsSync(path.join(root, pkgDir, 'src', `${m[1]}.ts`))) return false;
  staleSkipped += 1;
  return true;
}

function copyWorkspace(entry, files, dest) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, entry.src, 'package.json'), 'utf8'));
  if (pkg.private) throw new PackageError(`${entry.dest} is private and cannot be shipped`);
  for (const f of [pkg.main, ...Object.values(pkg.bin ?? {})].filter(Boolean))
    if (!files.includes(path.normalize(f))) throw new PackageError(`${entry.dest}: ${f} is not built: run \`npx nx run-many -t build\` (or \`npm run package\`) first`);
  if (!files.includes('LICENSE')) throw new PackageError(`${entry.dest}: no LICENSE among its published files`);
  for (const f of files.filter((x) => !isStaleOutput(entry.src, x))) {
    fs.mkdirSync(path.dirname(path.join(dest, f)), { recursive: true });
    fs.copyFileSync(path.join(root, entry.src, f), path.join(dest, f));
  }
}

/** Test suites some packages publish (pino, zod, ...): never loaded at run time. */
const TEST_DIR = /^(test|tests|__tests__)$/;
const TEST_FILE = /\.(test|spec)\.([cm]?[jt]sx?|d\.[cm]?ts)(\.map)?$/;

/**
 * A third-party package without its .bin, nested node_modules and published tests; only this
 * arch's glibc native build of koffi.
 */
function copyThirdParty(entry, dest, nodeArch) {
  const src = path.join(root, entry.src);
  const skip = new Set([path.join(src, 'node_modules'), path.join(src, '.bin')]);
  const keep = (s) => !skip.has(s) && !TEST_FILE.test(path.basename(s)) && !(TEST_DIR.test(path.basename(s)) && fs.statSync(s).isDirectory());
  fs.cpSync(src, dest, { recursive: true, dereference: true, filter: keep });
  if (/^@koromix\/koffi-/.test(entry.dest)) {
    for (const d of fs.readdirSync(dest)) if (/^(linux|musl)_/.test(d) && d !== `linux_${nodeArch}`) fs.rmSync(path.join(dest, d), { recursive: true });
    if (!fs.existsSync(path.join(dest, `linux_${nodeArch}`))) throw new PackageError(`${entry.dest} has no linux_${nodeArch} build`);
  }
}

/** /usr/share/doc/netfence/copyright (machine-readable format), bundled modules with their licenses. */
function copyright(bundled) {
  const stanzas = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: netfence\n',
    'Files: *\nCopyright: Netfence contributors\nLicense: Apache-2.0\n',
  ];
  for (const e of bundled.filter((b) => !b.workspace).sort((a, b) => a.dest.localeCompare(b.dest))) {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, e.src, 'package.json'), 'utf8'));
    const license = typeof pkg.license === 'string' ? pkg.license : (pkg.license?.type ?? 'see the package');
    stanzas.push(`Files: ${LIB}/node_modules/${e.dest}/*\nComment: ${pkg.name} ${pkg.version}; its license text is in that directory\nLicense: ${license}\n`);
  }
  stanzas.push('License: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0 (and in each package directory as LICENSE).\n');
  return stanzas.join('\n');
}

function writeFile(stage, rel, text, mode) {
  const p = path.join(stage, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  fs.chmodSync(p, mode);
}

/**
 * Gives the tree Debian's permissions (directories 0755, files 0644 or 0755 if executable;
 * config.yaml 0640: it may hold a token) and lists its files (relative paths, sorted) with their
 * sizes: one walk for both.
 */
function normalizeModes(stage) {
  const files = [];
  const visit = (dir) => {
    fs.chmodSync(dir, 0o755);
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile()) {
        const st = fs.statSync(p);
        fs.chmodSync(p, st.mode & 0o111 ? 0o755 : 0o644);
        files.push({ rel: path.relative(stage, p), size: st.size });
      }
    }
  };
  visit(stage);
  fs.chmodSync(path.join(stage, 'etc/netfence/config.yaml'), 0o640);
  return files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

function stageTree(stage, { version, arch, nodeArch }) {
  const ws = workspaces();
  const bundled = closure(ws);
  const packed = packedFiles(bundled.filter((e) => e.workspace).map((e) => e.dest));
  for (const e of bundled) {
    const dest = path.join(stage, LIB, 'node_modules', e.dest);
    if (e.workspace) copyWorkspace(e, packed.get(e.dest) ?? [], dest);
    else copyThirdParty(e, dest, nodeArch);
  }
  for (const [cmd, entry] of Object.entries(COMMANDS)) {
    if (!fs.existsSync(path.join(stage, LIB, 'node_modules', entry))) throw new PackageError(`/usr/bin/${cmd}: ${entry} is not in the package`);
    writeFile(stage, `usr/bin/${cmd}`, `#!/bin/sh\n# Installed by the netfence package.\nexec /usr/bin/node /${LIB}/node_modules/${entry} "$@"\n`, 0o755);
  }
  const copy = (from, to) => writeFile(stage, to, fs.readFileSync(path.join(debianDir, from)), 0o644);
  copy('config.yaml', 'etc/netfence/config.yaml');
  copy('policy.yaml', 'etc/netfence/policy.yaml');
  copy('netfenced.service', 'lib/systemd/system/netfenced.service');
  copy('netfence.tmpfiles', 'usr/lib/tmpfiles.d/netfence.conf');
  for (const [to, from] of Object.entries(DOCS)) writeFile(stage, `usr/share/doc/netfence/${to}`, fs.readFileSync(path.join(root, from)), 0o644);
  writeFile(stage, 'usr/share/doc/netfence/copyright', copyright(bundled), 0o644);
  const files = normalizeModes(stage);
  const installedKiB = Math.ceil(files.reduce((n, f) => n + f.size, 0) / 1024);
  const md5 = files.map((f) => `${crypto.createHash('md5').update(fs.readFileSync(path.join(stage, f.rel))).digest('hex')}  ${f.rel}\n`).join('');
  fs.mkdirSync(path.join(stage, 'DEBIAN'));
  writeFile(stage, 'DEBIAN/control', control({ version, arch, installedKiB }), 0o644);
  writeFile(stage, 'DEBIAN/conffiles', `${CONFFILES.join('\n')}\n`, 0o644);
  writeFile(stage, 'DEBIAN/md5sums', md5, 0o644);
  for (const s of ['postinst', 'prerm', 'postrm']) writeFile(stage, `DEBIAN/${s}`, fs.readFileSync(path.join(debianDir, s)), 0o755);
  return bundled;
}

/** DEBFULLNAME / DEBEMAIL (the Debian tools' convention) name the maintainer; the default is a placeholder. */
function maintainer() {
  const name = process.env.DEBFULLNAME || 'Netfence maintainers';
  const email = process.env.DEBEMAIL || 'netfence@invalid';
  if (/[\n<>]/.test(name) || !/^[^\s<>@]+@[^\s<>@]+$/.test(email)) throw new PackageError(`DEBFULLNAME/DEBEMAIL: ${JSON.stringify(`${name} <${email}>`)} is not "Name <email>"`);
  return `${name} <${email}>`;
}

function control({ version, arch, installedKiB }) {
  return [
    'Package: netfence',
    `Version: ${version}`,
    `Architecture: ${arch}`,
    `Maintainer: ${maintainer()}`,
    `Installed-Size: ${installedKiB}`,
    'Depends: nodejs (>= 20), libbpf1, iproute2',
    'Section: net',
    'Priority: optional',
    'Description: eBPF egress firewall for VMs and containers',
    ' Netfence attaches eBPF filters to network interfaces (TC) or cgroups, runs a',
    ' filtering DNS server per attachment that writes the allowed answers into the',
    ' eBPF allowlist before releasing them, and takes its rules from a netfence.v1',
    ' control plane or a local policy file. This package holds the netfenced daemon',
    ' and its systemd unit, the netfence CLI, netfence-dns and netfence-controlplane,',
    ' with their Node.js dependencies and the compiled eBPF objects.',
    '',
  ].join('\n');
}

/** Builds the package into `outDir`; returns its path. */
function buildDeb(outDir = path.join(root, 'dist')) {
  const version = JSON.parse(fs.readFileSync(path.join(root, 'packages/cli/package.json'), 'utf8')).version;
  if (!/^\d+\.\d+\.\d+([~+.][0-9A-Za-z.~+]+)?$/.test(version)) throw new PackageError(`packages/cli/package.json: version ${JSON.stringify(version)} is not a Debian upstream version`);
  const arch = run('dpkg', ['--print-architecture']).trim();
  const nodeArch = NODE_ARCH[arch];
  if (!nodeArch) throw new PackageError(`dpkg architecture ${arch}: no Node.js architecture known for it`);
  if (nodeArch !== process.arch) throw new PackageError(`dpkg architecture ${arch} is not this Node's ${process.arch}`);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'nf-deb-'));
  try {
    stageTree(stage, { version, arch, nodeArch });
    fs.mkdirSync(outDir, { recursive: true });
    const deb = path.join(outDir, `netfence_${version}_${arch}.deb`);
    const env = { ...process.env };
    if (!env.SOURCE_DATE_EPOCH) {
      try {
        env.SOURCE_DATE_EPOCH = run('git', ['log', '-1', '--format=%ct']).trim();
      } catch {
        /* not a git checkout: dpkg-deb uses the current time */
      }
    }
    run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { env });
    if (staleSkipped) console.error(`package: left out ${staleSkipped} file(s) of dist/ whose source is gone (stale build output)`);
    return deb;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

module.exports = { buildDeb, COMMANDS, CONFFILES, PackageError };

if (require.main === module) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--out');
  if (args.some((a, k) => a !== '--out' && k !== i + 1) || (i >= 0 && !args[i + 1])) {
    console.error('usage: node packaging/build-deb.js [--out DIR]');
    process.exit(2);
  }
  try {
    console.log(buildDeb(i >= 0 ? path.resolve(args[i + 1]) : undefined));
  } catch (e) {
    if (!(e instanceof PackageError)) throw e;
    console.error(`package: ${e.message}`);
    process.exit(1);
  }
}
