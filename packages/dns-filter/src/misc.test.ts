import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { createDnsFilter, DNS_FILTER_ERROR_CODES, DnsFilterError, isPrivateAddress, parseUpstream } from './index';

test('README lists every error code', () => {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  for (const code of DNS_FILTER_ERROR_CODES) expect(readme).toContain(code);
});

test('DnsFilterError: code in the message, cause kept, from()', () => {
  const cause = new Error('boom');
  const e = new DnsFilterError('NETFENCE_ERR_DNS_LISTEN_FAILED', 'x', { cause });
  expect(e.message).toBe('NETFENCE_ERR_DNS_LISTEN_FAILED: x');
  expect(e.cause).toBe(cause);
  expect(DnsFilterError.from(e)).toBe(e);
  expect(DnsFilterError.from('y').code).toBe('NETFENCE_ERR_DNS_INVALID_OPTIONS');
});

test('private / rebinding ranges', () => {
  for (const a of ['10.200.0.1', '172.16.0.1', '192.168.1.1', '127.0.0.53', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00:ec2::254', 'fc00::1', '::ffff:10.0.0.1']) {
    expect([a, isPrivateAddress(a)]).toEqual([a, true]);
  }
  for (const a of ['203.0.113.7', '198.51.100.1', '172.32.0.1', '2001:db8::1', '::ffff:203.0.113.7']) {
    expect([a, isPrivateAddress(a)]).toEqual([a, false]);
  }
});

test('parseUpstream', () => {
  expect(parseUpstream('10.200.0.1')).toMatchObject({ host: '10.200.0.1', port: 53, family: 4 });
  expect(parseUpstream('127.0.0.1:5353').text).toBe('127.0.0.1:5353');
  expect(parseUpstream('[2001:0db8::1]:5353')).toMatchObject({ host: '2001:db8::1', port: 5353, family: 6, text: '[2001:db8::1]:5353' });
  expect(() => parseUpstream('dns.example:53')).toThrow(/NETFENCE_ERR_DNS_INVALID_OPTIONS/);
  expect(() => parseUpstream('10.0.0.1:99999')).toThrow(/bad port/);
});

test('invalid options are refused before anything listens', async () => {
  await expect(createDnsFilter({ mode: 'allowlist', allow: ['*.'] })).rejects.toThrow(/NETFENCE_ERR_DNS_INVALID_OPTIONS.*allow\[0\]/);
  await expect(createDnsFilter({ mode: 'allowlist', minTtlSec: 10, maxTtlSec: 5 })).rejects.toThrow(/minTtlSec/);
  await expect(createDnsFilter({ mode: 'allowlist', address: 'localhost' })).rejects.toThrow(/not an IP address/);
  await expect(createDnsFilter({ mode: 'allowlist', maxTcpConnectionsPerClient: 0 })).rejects.toThrow(/maxTcpConnectionsPerClient/);
  await expect(createDnsFilter({ mode: 'allowlist', logRateLimit: { perSecond: 0 } })).rejects.toThrow(/logRateLimit.perSecond/);
});

test('a listen address that is not local fails with LISTEN_FAILED', async () => {
  // 203.0.113.1 (TEST-NET-3) is on no interface of this machine: bind gives EADDRNOTAVAIL
  await expect(createDnsFilter({ mode: 'disabled', address: '203.0.113.1' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_DNS_LISTEN_FAILED' });
});

test('listening twice on one fixed port fails with ADDRESS_IN_USE (a code, not a message to match); [Symbol.asyncDispose] closes', async () => {
  const a = await createDnsFilter({ mode: 'disabled' });
  try {
    await expect(createDnsFilter({ mode: 'disabled', port: a.address.port })).rejects.toMatchObject({ code: 'NETFENCE_ERR_DNS_ADDRESS_IN_USE' });
  } finally {
    await a[Symbol.asyncDispose]();
  }
  // the port is free again
  const b = await createDnsFilter({ mode: 'disabled', port: a.address.port });
  await b.close();
});
