#!/usr/bin/env node
// Fails when a package's shipped code (src/, tests excluded) or its bench/ imports a netfence
// package that the arrows of docs/DESIGN.md do not allow, reaches into another package by
// relative path, imports a package its package.json does not declare, or when the modules
// inside one package import each other in a cycle. The arrows are read from the ```arrows
// block of docs/DESIGN.md: that block is their only copy.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const designPath = path.join(root, 'docs', 'DESIGN.md');

/** { src: {pkg: [allowed]}, bench: {pkg: [extra allowed]} } from the ```arrows block. */
function readArrows(text) {
  const m = /^```arrows\n([\s\S]*?)^```/m.exec(text);
  if (!m) throw new Error(`${designPath}: no \`\`\`arrows block`);
  const src = {};
  const bench = {};
  for (const [i, raw] of m[1].split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const lm = /^(bench\s+)?([a-z-]+):\s*([a-z-]+(?:\s*,\s*[a-z-]+)*)?$/.exec(line);
    if (!lm) throw new Error(`${designPath}: arrows line ${i + 1} is not "pkg: dep, dep": ${JSON.stringify(raw)}`);
    const deps = lm[3] ? lm[3].split(',').map((s) => s.trim()) : [];
    (lm[1] ? bench : src)[lm[2]] = deps;
  }
  for (const [name, deps] of [...Object.entries(src), ...Object.entries(bench)])
    for (const d of deps) if (!(d in src)) throw new Error(`${designPath}: ${name} -> ${d}, a package the arrows do not define`);
  for (const name of Object.keys(bench)) if (!(name in src)) throw new Error(`${designPath}: bench line for ${name}, a package the arrows do not define`);
  return { src, bench };
}

function* files(dir, keep) {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* files(p, keep);
    else if (keep(e.name)) yield p;
  }
}
const shipped = (n) => /\.ts$/.test(n) && !/\.test\.ts$/.test(n);

const IMPORT_RE = /(?:from\s+|require\(|import\()\s*['"]([^'"]+)['"]/g;

/** The .ts file a relative import names, if it is one. */
function resolveLocal(from, spec) {
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base, `${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  return undefined;
}

/** Every cycle in a module graph (each reported once, from its smallest member). */
function cycles(graph) {
  const out = [];
  const seen = new Set();
  const state = new Map(); // 1 = on stack, 2 = done
  const stack = [];
  const visit = (n) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 1) {
        const cyc = stack.slice(stack.indexOf(m));
        const start = cyc.indexOf([...cyc].sort()[0]);
        const norm = [...cyc.slice(start), ...cyc.slice(0, start)];
        const key = norm.join('>');
        if (!seen.has(key)) {
          seen.add(key);
          out.push([...norm, norm[0]]);
        }
      } else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return out;
}

function main() {
  const arrows = readArrows(fs.readFileSync(designPath, 'utf8'));
  const dirs = { proto: path.join(root, 'proto'), lab: path.join(root, 'tools', 'lab') };
  for (const d of fs.readdirSync(path.join(root, 'packages'))) dirs[d] = path.join(root, 'packages', d);

  const problems = [];
  for (const [name, dir] of Object.entries(dirs)) {
    const allowed = arrows.src[name];
    if (!allowed) {
      problems.push(`${name}: a package docs/DESIGN.md does not name (add it to the arrows block)`);
      continue;
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const declared = new Set(Object.keys(pkg.dependencies ?? {}));
    const devDeclared = new Set([...declared, ...Object.keys(pkg.devDependencies ?? {})]);
    const benchAllowed = [...allowed, name, 'lab', ...(arrows.bench[name] ?? [])];
    const graph = new Map();
    const check = (file, ok, decl, where) => {
      const rel = path.relative(root, file);
      const text = fs.readFileSync(file, 'utf8');
      const edges = [];
      for (const m of text.matchAll(IMPORT_RE)) {
        const spec = m[1];
        const ours = /^@netfence\/([a-z-]+)/.exec(spec);
        if (ours) {
          if (ours[1] === name && where === 'bench') continue;
          if (!ok.includes(ours[1])) problems.push(`${rel}: imports @netfence/${ours[1]}, which ${name}'s ${where} may not import (allowed: ${ok.join(', ') || 'none'})`);
          // @netfence/lab is the workspace's private test lab: benches reach it through the workspace, undeclared
          else if (ours[1] !== 'lab' && !decl.has(`@netfence/${ours[1]}`)) problems.push(`${rel}: imports @netfence/${ours[1]}, not in ${name}'s ${where === 'src' ? 'dependencies' : 'dependencies or devDependencies'}`);
        } else if (spec.startsWith('.')) {
          const target = path.resolve(path.dirname(file), spec);
          if (!target.startsWith(dir + path.sep) && target !== dir) problems.push(`${rel}: reaches outside its package with ${JSON.stringify(spec)}`);
          else if (where === 'src') {
            const t = resolveLocal(file, spec);
            if (t && shipped(path.basename(t))) edges.push(t);
          }
        }
      }
      if (where === 'src') graph.set(file, edges);
    };
    for (const f of files(path.join(dir, 'src'), shipped)) check(f, allowed, declared, 'src');
    for (const f of files(path.join(dir, 'bench'), (n) => /\.ts$/.test(n))) check(f, benchAllowed, devDeclared, 'bench');
    for (const c of cycles(graph)) problems.push(`${name}: import cycle ${c.map((f) => path.relative(dir, f)).join(' -> ')}`);
  }
  if (problems.length) {
    console.error(`import arrows: ${problems.length} problem(s)\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`import arrows: ${Object.keys(dirs).length} packages follow docs/DESIGN.md, no cycle inside any`);
}

main();
