// Replays the hostile packets in test/corpus/ (compression loops, bad label
// lengths, pointers past the end, oversize, escaped dots...) against the
// parser and against a live server over UDP and TCP; the server must answer
// as expected and keep serving.

import dgram from 'node:dgram';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

import { createDnsFilter, type DnsFilter } from '@netfence/dns-filter';

import { parseQuery, parseResponse } from '../src/wire';
import { Packet, answer, dig, sleep, startFakeUpstream, type FakeUpstream } from './helpers';

jest.setTimeout(30000);

const dir = join(__dirname, 'corpus');
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<string, string>;
const files = readdirSync(dir).filter((f) => f.endsWith('.bin'));

test('every corpus file has an expectation', () => {
  expect(files.sort()).toEqual(Object.keys(expected).sort());
  expect(files.length).toBeGreaterThanOrEqual(20);
});

describe.each(files)('parser: %s', (file) => {
  test('classified as expected, never throws', () => {
    const buf = readFileSync(join(dir, file));
    const r = parseQuery(buf);
    parseResponse(buf, 'a.test', 1, 1);
    const want = expected[file];
    if (want === 'drop' || want === 'formerr' || want === 'notimp') expect(r.ok ? 'ok' : r.kind).toBe(want);
    if (want === 'unclean') expect(r.ok && r.query.nameClean).toBe(false);
    if (want === 'ok') expect(r.ok).toBe(true);
  });
});

describe('live server', () => {
  let up: FakeUpstream;
  let f: DnsFilter;
  beforeAll(async () => {
    up = await startFakeUpstream((req) => answer(req, [{ name: req.questions[0]!.name, type: Packet.TYPE.A, address: '203.0.113.1' }]));
    f = await createDnsFilter({ mode: 'allowlist', allow: ['files.pypi.org', '*.test'], upstreams: [up.upstream], cacheSize: 0 });
  });
  afterAll(async () => {
    await f?.close();
    await up?.stop();
  });

  test('UDP: expected rcodes, nothing unexpected forwarded, still serving', async () => {
    const sock = dgram.createSocket('udp4');
    const got = new Map<number, Buffer>();
    sock.on('message', (m) => got.set(m.readUInt16BE(0), m));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (const file of files) {
      const buf = readFileSync(join(dir, file));
      await new Promise<void>((r) => sock.send(buf, f.address.port, f.address.address, () => r()));
    }
    await sleep(300);
    sock.close();
    const rcodeOf = (file: string): number | undefined => {
      const b = readFileSync(join(dir, file));
      const m = b.length >= 2 ? got.get(b.readUInt16BE(0)) : undefined;
      return m ? m[3]! & 0xf : undefined;
    };
    for (const file of files) {
      const want = expected[file];
      if (want === 'formerr') expect([file, rcodeOf(file)]).toEqual([file, 1]);
      if (want === 'notimp') expect([file, rcodeOf(file)]).toEqual([file, 4]);
      if (want === 'unclean') expect([file, rcodeOf(file)]).toEqual([file, 5]); // never matches a rule
    }
    expect(rcodeOf('class-chaos.bin')).toBe(5);
    expect(rcodeOf('axfr.bin')).toBe(5);
    expect(rcodeOf('root-name.bin')).toBe(5);
    // the escaped-dot name must not have been forwarded as "files.pypi.org"
    expect(up.seen.map((s) => s.name)).not.toContain('files.pypi.org');
    expect(up.seen.map((s) => s.name)).toEqual(['a.test']); // only the valid oversized query
    expect((await dig(f.address.address, f.address.port, 'ok.test')).answers[0]?.data).toBe('203.0.113.1');
  });

  test('TCP: every corpus frame on one connection, then a valid query still answered', async () => {
    const frames = files
      .map((file) => readFileSync(join(dir, file)))
      .filter((b) => b.length <= 0xffff)
      .map((b) => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(b.length);
        return Buffer.concat([len, b]);
      });
    await new Promise<void>((resolve) => {
      const c = net.connect(f.address.port, f.address.address, () => {
        c.write(Buffer.concat(frames));
        setTimeout(() => {
          c.destroy();
          resolve();
        }, 300);
      });
      c.on('error', () => resolve());
    });
    expect((await dig(f.address.address, f.address.port, 'ok2.test', 'A', ['+tcp'])).status).toBe('NOERROR');
  });
});
