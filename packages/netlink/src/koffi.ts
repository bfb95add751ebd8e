// koffi ships ESM type declarations ("type": "module") with a CommonJS entry (index.cjs);
// this package compiles to CommonJS, so load it with require and borrow the ESM types.
import type * as KoffiNs from 'koffi' with { 'resolution-mode': 'import' };

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const koffi = require('koffi') as typeof KoffiNs;
