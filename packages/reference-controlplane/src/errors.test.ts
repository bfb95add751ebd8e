import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROL_PLANE_ERROR_CODES, ControlPlaneError, formatIssue } from './errors';

describe('ControlPlaneError', () => {
  it('puts the code in the message, keeps the cause, and from() wraps anything', () => {
    const cause = new Error('boom');
    const e = new ControlPlaneError('NETFENCE_ERR_LISTEN', 'cannot listen', { cause });
    expect(e.message).toBe('NETFENCE_ERR_LISTEN: cannot listen');
    expect(e.cause).toBe(cause);
    expect(ControlPlaneError.from(e)).toBe(e);
    const w = ControlPlaneError.from('text', 'NETFENCE_ERR_TLS');
    expect(w).toMatchObject({ code: 'NETFENCE_ERR_TLS', cause: 'text' });
    expect(formatIssue({ file: 'f.yaml', line: 3, column: 5, key: 'policies[0].mode', message: 'bad' })).toBe('f.yaml:3:5: policies[0].mode: bad');
    expect(formatIssue({ file: '<inline>', line: 0, column: 0, key: '', message: 'bad' })).toBe('<inline>: (root): bad');
  });

  it('every code is listed in the README error table, and the codes in the source are exactly the declared set', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    for (const code of CONTROL_PLANE_ERROR_CODES) expect(readme).toMatch(new RegExp(`^\\| \`${code}\` \\|`, 'm'));
    const src = ['errors.ts', 'control-plane.ts', 'admin.ts', 'policy-file.ts', 'cli.ts', 'listen-address.ts']
      .map((f) => readFileSync(join(__dirname, f), 'utf8'))
      .join('\n');
    const used = new Set([...src.matchAll(/'(NETFENCE_ERR_[A-Z_]+)'/g)].map((m) => m[1]));
    for (const code of used) {
      if (code!.startsWith('NETFENCE_ERR_INVALID_') && !CONTROL_PLANE_ERROR_CODES.includes(code as never)) continue; // policy-engine codes surfaced as-is
      expect(CONTROL_PLANE_ERROR_CODES).toContain(code);
    }
  });
});
