// Runs the TypeScript bench (and the package sources) without a build: a
// require hook compiling .ts with @swc/core, and @netfence/* mapped to each
// sibling package's src/index.ts (as the jest preset does).
'use strict';
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const swc = require('@swc/core');

const root = path.resolve(__dirname, '../../..');
const origResolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@netfence\/([a-z-]+)$/.exec(request);
  if (m) request = path.join(root, 'packages', m[1], 'src/index.ts');
  return origResolve.call(this, request, parent, ...rest);
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
