import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROLPLANE_CLIENT_ERROR_CODES, ControlPlaneClientError } from './index';

test('README lists every error code, and only those', () => {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const listed = new Set(readme.match(/NETFENCE_ERR_[A-Z_]+/g) ?? []);
  for (const code of CONTROLPLANE_CLIENT_ERROR_CODES) expect(listed).toContain(code);
  // Codes the README mentions that this package does not define are allowed only as
  // examples of handler codes (they come from the daemon).
  const foreign = [...listed].filter((c) => !(CONTROLPLANE_CLIENT_ERROR_CODES as readonly string[]).includes(c));
  expect(foreign.sort()).toEqual(['NETFENCE_ERR_INVALID_CIDR']);
});

test('errors carry the code in the message and keep the cause', () => {
  const cause = new Error('inner');
  const e = new ControlPlaneClientError('NETFENCE_ERR_CLOSED', 'closed', { cause });
  expect(e.message).toBe('NETFENCE_ERR_CLOSED: closed');
  expect(e.cause).toBe(cause);
  expect(ControlPlaneClientError.from(e)).toBe(e);
  expect(ControlPlaneClientError.from('str').code).toBe('NETFENCE_ERR_RPC');
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  expect(ControlPlaneClientError.from(refused).code).toBe('NETFENCE_ERR_UNAVAILABLE');
});
