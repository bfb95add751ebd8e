#!/usr/bin/env node
// The npm registry this project installs from serves only the Linux builds of packages that
// ship per-platform binaries (swc, nx, buf, ...): `npm install` then leaves the other
// platforms' optional packages out of package-lock.json, and `npm ci` refuses the lock as
// out of sync. This adds the missing entries with their os/cpu/libc, so `npm ci` accepts
// the lock and skips them on this platform, as it would with a complete lock.
// Run after `npm install` changes the lock: node tools/lockfile-platforms.js
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const file = path.join(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const OS = ['darwin', 'win32', 'linux', 'freebsd', 'android', 'openharmony', 'sunos', 'aix'];
const CPU = { x64: 'x64', arm64: 'arm64', ia32: 'ia32', arm: 'arm', armv7: 'arm', ppc64: 'ppc64', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.map((p) => CPU[p]).find(Boolean);
  if (!os || !cpu) return undefined;
  const out = { os: [os], cpu: [cpu] };
  if (os === 'linux') out.libc = [parts.some((p) => p.startsWith('musl')) ? 'musl' : 'glibc'];
  return out;
}

let added = 0;
for (const [key, entry] of Object.entries(lock.packages)) {
  for (const [dep, range] of Object.entries(entry.optionalDependencies ?? {})) {
    // Where npm would place it: next to the dependent, or hoisted to the root.
    const nested = `${key ? `${key}/` : ''}node_modules/${dep}`;
    const hoisted = `node_modules/${dep}`;
    if (lock.packages[nested] || lock.packages[hoisted]) continue;
    const platform = platformOf(dep);
    if (!platform) continue; // not a per-platform binary: leave it for npm to report
    lock.packages[hoisted] = { version: range.replace(/^[\^~=]/, ''), dev: entry.dev || undefined, optional: true, ...platform };
    added++;
  }
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
lock.packages = sorted;
fs.writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} foreign-platform optional package(s) recorded`);
