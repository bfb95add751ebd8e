// Shared jest settings: TypeScript through @swc/jest (type-checking is the
// separate `typecheck` target), and @netfence/* imports resolved to the
// sibling package's src/ so tests never depend on a stale dist/.
const path = require('node:path');

module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } }],
  },
  moduleNameMapper: {
    '^@netfence/proto$': path.join(__dirname, 'proto/src/index.ts'),
    '^@netfence/lab$': path.join(__dirname, 'tools/lab/src/index.ts'),
    '^@netfence/([a-z-]+)$': path.join(__dirname, 'packages/$1/src/index.ts'),
  },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  setupFiles: [path.join(__dirname, 'tools/jest-setup.js')],
};
