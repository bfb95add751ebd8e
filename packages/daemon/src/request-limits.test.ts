import { DaemonError } from './daemon-error';
import { checkAttachRequest, checkId, checkPageToken, ECHO_CHARS, quoteInput, REQUEST_LIMITS } from './request-limits';

const MiB = 'x'.repeat(1 << 20);

function codeOf(fn: () => void): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    return { code: (e as DaemonError).code, message: (e as Error).message };
  }
  throw new Error('accepted');
}

test('a 1 MiB id, page token, path, interface name or direction: INVALID_ARGUMENT naming the field, the echo cut short', () => {
  const cases: [string, () => void][] = [
    ['id', () => checkId(MiB)],
    ['page_token', () => checkPageToken(MiB)],
    ['cgroup_path', () => checkAttachRequest({ cgroupPath: `/${MiB}` })],
    ['interface_name', () => checkAttachRequest({ interfaceName: MiB })],
    ['tc_direction', () => checkAttachRequest({ tcDirection: MiB })],
    ['metadata key', () => checkAttachRequest({ metadata: { [MiB]: 'v' } })],
    ['metadata value', () => checkAttachRequest({ metadata: { k: MiB } })],
  ];
  for (const [field, fn] of cases) {
    const { code, message } = codeOf(fn);
    expect(code).toBe('NETFENCE_ERR_INVALID_ARGUMENT');
    expect(message).toContain(field);
    expect(message.length).toBeLessThan(600);
  }
});

test('metadata: more pairs than allowed is refused; exactly the bounds are accepted', () => {
  const many = Object.fromEntries(Array.from({ length: REQUEST_LIMITS.metadataPairs + 1 }, (_, i) => [`k${i}`, 'v']));
  expect(codeOf(() => checkAttachRequest({ metadata: many })).message).toMatch(/65 pairs; at most 64/);
  const atLimit = Object.fromEntries(
    Array.from({ length: REQUEST_LIMITS.metadataPairs }, (_, i) => [`${i}`.padEnd(REQUEST_LIMITS.metadataKeyBytes, 'k'), 'v'.repeat(REQUEST_LIMITS.metadataValueBytes)]),
  );
  expect(() => checkAttachRequest({ metadata: atLimit, cgroupPath: `/${'a'.repeat(REQUEST_LIMITS.cgroupPathBytes - 1)}` })).not.toThrow();
  expect(() => checkId('x'.repeat(REQUEST_LIMITS.idBytes))).not.toThrow();
  expect(() => checkId('x'.repeat(REQUEST_LIMITS.idBytes + 1))).toThrow(/at most 128/);
});

test('bounds are in UTF-8 bytes, not characters', () => {
  expect(() => checkId('é'.repeat(REQUEST_LIMITS.idBytes / 2))).not.toThrow();
  expect(() => checkId('é'.repeat(REQUEST_LIMITS.idBytes / 2 + 1))).toThrow(/130 bytes/);
});

test('quoteInput: short input whole, long input cut with its size', () => {
  expect(quoteInput('eth0')).toBe('"eth0"');
  const q = quoteInput(MiB);
  expect(q.startsWith(JSON.stringify('x'.repeat(ECHO_CHARS)))).toBe(true);
  expect(q).toContain(`(${1 << 20} bytes)`);
});
