#!/usr/bin/env node
// Fails when a package's shipped code (src/, tests excluded) imports a netfence package
// that DESIGN.md's arrows do not allow, or reaches into another package by relative path,
// or when package.json does not declare what src/ imports.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ALLOWED = {
  proto: [],
  'policy-engine': [],
  'bpf-loader': [],
  'bpf-programs': [],
  'dns-filter': ['policy-engine'],
  'controlplane-client': ['proto'],
  'policy-wire': ['proto', 'policy-engine'],
  'reference-controlplane': ['proto', 'policy-engine'],
  daemon: ['proto', 'policy-engine', 'policy-wire', 'bpf-loader', 'bpf-programs', 'dns-filter', 'controlplane-client', 'reference-controlplane'],
  cli: ['daemon', 'proto'],
};
const root = path.join(__dirname, '..');
const dirs = { proto: path.join(root, 'proto') };
for (const d of fs.readdirSync(path.join(root, 'packages'))) dirs[d] = path.join(root, 'packages', d);

function* files(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (/\.ts$/.test(e.name) && !/\.test\.ts$/.test(e.name)) yield p;
  }
}

const problems = [];
for (const [name, dir] of Object.entries(dirs)) {
  const allowed = ALLOWED[name];
  if (!allowed) {
    problems.push(`${name}: a package DESIGN.md does not name (add its arrows to tools/check-arrows.js)`);
    continue;
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const declared = new Set(Object.keys(pkg.dependencies ?? {}));
  for (const file of files(path.join(dir, 'src'))) {
    const text = fs.readFileSync(file, 'utf8');
    const rel = path.relative(root, file);
    for (const m of text.matchAll(/(?:from\s+|require\(|import\()\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      const ours = /^@netfence\/([a-z-]+)/.exec(spec);
      if (ours) {
        if (!allowed.includes(ours[1])) problems.push(`${rel}: imports @netfence/${ours[1]}, which ${name} may not import (allowed: ${allowed.join(', ') || 'none'})`);
        else if (!declared.has(`@netfence/${ours[1]}`)) problems.push(`${rel}: imports @netfence/${ours[1]}, not in ${name}'s dependencies`);
      } else if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(file), spec);
        if (!target.startsWith(dir + path.sep) && target !== dir) problems.push(`${rel}: reaches outside its package with ${JSON.stringify(spec)}`);
      }
    }
  }
}
if (problems.length) {
  console.error(`import arrows: ${problems.length} problem(s)\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`import arrows: ${Object.keys(dirs).length} packages follow DESIGN.md`);
