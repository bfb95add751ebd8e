import { CAP, capabilityWarnings, checkCapabilities, isPermissionError, missingCapabilities, parseCapEff, withCapabilityHint } from './capabilities';
import { DaemonError } from './daemon-error';

const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
const bit = (n: number) => 1n << BigInt(n);
const hex = (v: bigint) => v.toString(16).padStart(16, '0');

test('root (all capabilities): nothing missing', () => {
  expect(parseCapEff(status('000001ffffffffff'))).toBe(0x1ffffffffffn);
  expect(missingCapabilities(parseCapEff(status('000001ffffffffff')))).toEqual([]);
  expect(() => checkCapabilities(status('000001ffffffffff'))).not.toThrow();
});

test('an unprivileged process: every needed capability is named', () => {
  expect(() => checkCapabilities(status('0000000000000000'))).toThrow(/NETFENCE_ERR_PERMISSION: netfenced lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN/);
});

test('exactly the missing ones are named', () => {
  const all = bit(CAP.BPF) | bit(CAP.NET_ADMIN) | bit(CAP.PERFMON) | bit(CAP.SYS_ADMIN);
  expect(missingCapabilities(all)).toEqual([]);
  expect(missingCapabilities(all & ~bit(CAP.BPF))).toEqual(['CAP_BPF']);
  expect(missingCapabilities(all & ~bit(CAP.NET_ADMIN) & ~bit(CAP.SYS_ADMIN))).toEqual(['CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
  let err: unknown;
  try {
    checkCapabilities(status(hex(all & ~bit(CAP.PERFMON))));
  } catch (e) {
    err = e;
  }
  expect((err as DaemonError).code).toBe('NETFENCE_ERR_PERMISSION');
  expect((err as Error).message).toMatch(/lacks CAP_PERFMON \(/);
});

test('no CapEff line: an error, never a pass', () => {
  expect(() => checkCapabilities('Name:\tnode\n')).toThrow(/CapEff/);
});

test('an EPERM from the kernel (wrapped) is re-told naming the capabilities; other errors are unchanged', () => {
  const libbpf = Object.assign(new Error('BPF_ERR_PERMISSION: bpf_link_create: EPERM'), { code: 'BPF_ERR_PERMISSION', errno: 1 });
  const wrapped = new DaemonError('NETFENCE_ERR_DATAPATH', `attaching: ${libbpf.message}`, { cause: libbpf });
  expect(isPermissionError(wrapped)).toBe(true);
  const told = withCapabilityHint(wrapped);
  expect(told.code).toBe('NETFENCE_ERR_PERMISSION');
  expect(told.message).toMatch(/CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN/);
  expect(told.cause).toBe(wrapped);
  const verifier = new DaemonError('NETFENCE_ERR_DATAPATH', 'x', { cause: Object.assign(new Error('rejected'), { errno: 13 }) });
  expect(withCapabilityHint(verifier)).toBe(verifier);
});

test('CAP_SYS_PTRACE is recommended, not required: missing, start goes on with a warning naming it', () => {
  const required = bit(CAP.BPF) | bit(CAP.NET_ADMIN) | bit(CAP.PERFMON) | bit(CAP.SYS_ADMIN);
  expect(() => checkCapabilities(status(hex(required)))).not.toThrow();
  expect(capabilityWarnings(status(hex(required)))).toEqual([expect.stringMatching(/^CAP_SYS_PTRACE is missing: .*not reset.*still dropped/)]);
  expect(capabilityWarnings(status(hex(required | bit(CAP.SYS_PTRACE))))).toEqual([]);
});
