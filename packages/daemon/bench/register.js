// Runs the TypeScript benchmark without a build step: a require hook compiling .ts with
// @swc/core, and @netfence/<pkg> mapped to the sibling package's src/index.ts (as the jest
// preset does). The daemon under test itself runs from the built CLI (packages/cli/dist).
'use strict';
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const swc = require('@swc/core');

const root = path.resolve(__dirname, '../../..');
const origResolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const m = /^@netfence\/([a-z-]+)$/.exec(request);
  if (m) {
    const dir = m[1] === 'lab' ? path.join(root, 'tools', 'lab') : m[1] === 'proto' ? path.join(root, 'proto') : path.join(root, 'packages', m[1]);
    request = path.join(dir, 'src', 'index.ts');
  }
  return origResolve.call(this, request, ...rest);
};
require.extensions['.ts'] = (module, filename) => {
  const out = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
    sourceMaps: false,
  });
  module._compile(out.code, filename);
};
