import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_ERROR_CODES, BpfError, NotSupportedError, codeForErrno, errnoName } from './errors';

describe('BpfError', () => {
  test('code is in the message, errno kept positive, cause kept', () => {
    const cause = new Error('inner');
    const e = new BpfError('BPF_ERR_MAP_FULL', 'no room', { errno: -7, cause });
    expect(e.message).toBe('BPF_ERR_MAP_FULL: no room');
    expect(e.errno).toBe(7);
    expect(e.cause).toBe(cause);
    expect(e).toBeInstanceOf(Error);
  });

  test('fromErrno maps errno to distinct codes', () => {
    expect(BpfError.fromErrno(-2, 'x').code).toBe('BPF_ERR_NOT_FOUND');
    expect(BpfError.fromErrno(-7, 'x').code).toBe('BPF_ERR_MAP_FULL');
    expect(BpfError.fromErrno(-28, 'x').code).toBe('BPF_ERR_MAP_FULL');
    expect(BpfError.fromErrno(-17, 'x').code).toBe('BPF_ERR_EXISTS');
    expect(BpfError.fromErrno(-1, 'x').code).toBe('BPF_ERR_PERMISSION');
    expect(BpfError.fromErrno(-524, 'x').code).toBe('BPF_ERR_NOT_SUPPORTED');
    expect(BpfError.fromErrno(-22, 'op').message).toBe('BPF_ERR_ERRNO: op: EINVAL');
    expect(codeForErrno(9)).toBe('BPF_ERR_CLOSED');
    expect(errnoName(524)).toBe('ENOTSUPP');
  });

  test('from() passes BpfErrors through and wraps the rest', () => {
    const e = new BpfError('BPF_ERR_CLOSED', 'gone');
    expect(BpfError.from(e)).toBe(e);
    const fsErr = Object.assign(new Error('ENOENT: no such file'), { errno: -2, code: 'ENOENT' });
    const w = BpfError.from(fsErr);
    expect(w.code).toBe('BPF_ERR_NOT_FOUND');
    expect(w.cause).toBe(fsErr);
    expect(BpfError.from('weird').code).toBe('BPF_ERR_ERRNO');
  });

  test('NotSupportedError carries feature and minKernel', () => {
    const e = new NotSupportedError('TCX links', '6.6');
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('BPF_ERR_NOT_SUPPORTED');
    expect([e.feature, e.minKernel]).toEqual(['TCX links', '6.6']);
    expect(e.message).toMatch(/^BPF_ERR_NOT_SUPPORTED: TCX links .*6\.6/);
  });

  test('the README lists every error code', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const listed = new Set([...readme.matchAll(/^\| `(BPF_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]));
    expect([...listed].sort()).toEqual([...BPF_ERROR_CODES].sort());
  });
});
