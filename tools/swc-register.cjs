// The one require hook for benchmarks and for test child processes: compiles .ts with
// @swc/core and maps @netfence/<pkg> to the package's src/index.ts (as the jest preset
// does), so nothing needs a build. `node -r <repo>/tools/swc-register.cjs file.ts`
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const swc = require('@swc/core');

const root = path.join(__dirname, '..');
const origResolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const m = /^@netfence\/([a-z-]+)$/.exec(request);
  if (m) {
    const dir = m[1] === 'lab' ? path.join(root, 'tools', 'lab') : m[1] === 'proto' ? path.join(root, 'proto') : path.join(root, 'packages', m[1]);
    return path.join(dir, 'src', 'index.ts');
  }
  return origResolve.call(this, request, ...rest);
};
require.extensions['.ts'] = (module, filename) => {
  const src = fs.readFileSync(filename, 'utf8');
  const { code } = swc.transformSync(src, {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
