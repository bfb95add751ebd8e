import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { POLICY_ERROR_CODES, PolicyError } from './index';

describe('PolicyError', () => {
  test('code in the message, input and cause kept', () => {
    const cause = new Error('inner');
    const e = new PolicyError('NETFENCE_ERR_INVALID_CIDR', 'bad', { input: 'x', cause });
    expect(e.message).toBe('NETFENCE_ERR_INVALID_CIDR: bad');
    expect(e.code).toBe('NETFENCE_ERR_INVALID_CIDR');
    expect(e.input).toBe('x');
    expect(e.cause).toBe(cause);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('PolicyError');
  });

  test('from() keeps a PolicyError and wraps anything else with its cause', () => {
    const e = new PolicyError('NETFENCE_ERR_INVALID_TTL', 'bad');
    expect(PolicyError.from(e)).toBe(e);
    const inner = new TypeError('boom');
    const w = PolicyError.from(inner);
    expect(w.code).toBe('NETFENCE_ERR_INVALID_COMMAND');
    expect(w.cause).toBe(inner);
    expect(w.message).toContain('boom');
    expect(PolicyError.from('str').message).toContain('str');
  });

  test('the codes are a closed, unique, NETFENCE_ERR_* set', () => {
    expect(new Set(POLICY_ERROR_CODES).size).toBe(POLICY_ERROR_CODES.length);
    for (const c of POLICY_ERROR_CODES) expect(c).toMatch(/^NETFENCE_ERR_[A-Z_]+$/);
    expect(Object.isFrozen(POLICY_ERROR_CODES)).toBe(true);
  });

  test('README lists every error code, and only those', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Error codes'));
    const listed = new Set([...section.matchAll(/^\| `(NETFENCE_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]));
    expect([...listed].sort()).toEqual([...POLICY_ERROR_CODES].sort());
  });

  test('every code is produced somewhere in the sources', () => {
    const dir = __dirname;
    const src = ['domain-name.ts', 'cidr.ts', 'rule-line.ts', 'attachment-state.ts', 'policy-error.ts', 'domain-rules.ts', 'kernel-plan.ts']
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('\n');
    for (const c of POLICY_ERROR_CODES) expect(src).toContain(`new PolicyError('${c}'`);
  });
});
