import dns2 from 'dns2';
import fc from 'fast-check';

import {
  QTYPE,
  RCODE,
  addressBytes,
  buildAddressResponse,
  buildEmptyResponse,
  followChain,
  formatIPv6,
  parseQuery,
  parseResponse,
  readName,
  rebuildResponse,
  rewriteTtls,
  skipName,
} from './wire';

const { Packet } = dns2;

function query(name: string, type: number = QTYPE.A, id = 0x1234): Buffer {
  const p = new Packet();
  p.header.id = id;
  p.header.rd = 1;
  p.questions.push({ name, type, class: 1 } as never);
  return p.toBuffer();
}

function response(
  name: string,
  type: number,
  answers: { name: string; type: number; ttl?: number; [k: string]: unknown }[],
  id = 0x1234,
): Buffer {
  const req = Packet.parse(query(name, type, id));
  const res = Packet.createResponseFromRequest(req);
  for (const a of answers) res.answers.push({ class: 1, ttl: 300, ...a } as never);
  return res.toBuffer();
}

describe('parseQuery', () => {
  test('parses a dns2-built query, lower-cases the name', () => {
    const r = parseQuery(query('Files.PyPI.org', QTYPE.AAAA));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.query).toMatchObject({ id: 0x1234, name: 'files.pypi.org', nameClean: true, qtype: QTYPE.AAAA, qclass: 1, edns: false });
    expect(r.query.questionEnd).toBe(12 + 16 + 4);
  });

  test('EDNS0 OPT: size and DO bit', () => {
    const b = Buffer.concat([query('a.test'), Buffer.from([0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0])]);
    b.writeUInt16BE(1, 10);
    const r = parseQuery(b);
    expect(r.ok && r.query).toMatchObject({ edns: true, ednsUdpSize: 4096, ednsDo: true, end: b.length });
  });

  test('responses and short packets are dropped, not answered', () => {
    const resp = query('a.test');
    resp[2]! |= 0x80;
    expect(parseQuery(resp)).toEqual({ ok: false, kind: 'drop' });
    expect(parseQuery(Buffer.alloc(11))).toEqual({ ok: false, kind: 'drop' });
  });
});

describe('names', () => {
  test('compression pointers must point strictly backwards into the message', () => {
    const b = Buffer.concat([Buffer.alloc(12), Buffer.from([1, 0x61, 0, 1, 0x62, 0xc0, 12])]);
    expect(readName(b, 15)).toBe('b.a');
    expect(skipName(b, 15)).toBe(19);
    b[18] = 15; // points at itself
    expect(readName(b, 15)).toBeNull();
    b[18] = 2; // into the header
    expect(readName(b, 15)).toBeNull();
  });
});

describe('responses', () => {
  test('the question must match exactly', () => {
    const r = response('a.test', QTYPE.A, [{ name: 'a.test', type: QTYPE.A, address: '203.0.113.1' }]);
    expect(parseResponse(r, 'a.test', QTYPE.A, 1)).not.toBeNull();
    expect(parseResponse(r, 'b.test', QTYPE.A, 1)).toBeNull();
    expect(parseResponse(r, 'a.test', QTYPE.AAAA, 1)).toBeNull();
  });

  test('CNAME chain from the question name; foreign records flagged and stripped', () => {
    const buf = response('www.a.test', QTYPE.A, [
      { name: 'www.a.test', type: QTYPE.CNAME, domain: 'cdn.b.test' },
      { name: 'cdn.b.test', type: QTYPE.CNAME, domain: 'edge.c.test' },
      { name: 'edge.c.test', type: QTYPE.A, address: '203.0.113.5', ttl: 20 },
      { name: 'evil.test', type: QTYPE.A, address: '203.0.113.66' },
    ]);
    const p = parseResponse(buf, 'www.a.test', QTYPE.A, 1)!;
    const chain = followChain(buf, 'www.a.test', p.answers);
    expect(chain.names).toEqual(['www.a.test', 'cdn.b.test', 'edge.c.test']);
    expect(chain.addresses).toEqual(['203.0.113.5']);
    expect(chain.minTtl).toBe(20);
    expect(chain.foreign).toBe(true);
    const rebuilt = rebuildResponse(buf, p.questionEnd, p.answers, chain.chainRecords, false);
    const d = Packet.parse(rebuilt);
    expect(d.answers.map((a) => `${a.name} ${a.type}`)).toEqual(['www.a.test 5', 'cdn.b.test 5', 'edge.c.test 1']);
    expect(d.answers[1]).toMatchObject({ domain: 'edge.c.test' });
  });

  test('a CNAME loop terminates', () => {
    const buf = response('a.test', QTYPE.A, [
      { name: 'a.test', type: QTYPE.CNAME, domain: 'b.test' },
      { name: 'b.test', type: QTYPE.CNAME, domain: 'a.test' },
    ]);
    const p = parseResponse(buf, 'a.test', QTYPE.A, 1)!;
    const chain = followChain(buf, 'a.test', p.answers);
    expect(chain.names).toEqual(['a.test', 'b.test']);
    expect(chain.addresses).toEqual([]);
  });

  test('TTL rewrite in place is read back by dns2', () => {
    const buf = response('a.test', QTYPE.A, [{ name: 'a.test', type: QTYPE.A, address: '203.0.113.1', ttl: 9999 }]);
    const p = parseResponse(buf, 'a.test', QTYPE.A, 1)!;
    rewriteTtls(buf, p.answers, [0], 77);
    expect(Packet.parse(buf).answers[0]!.ttl).toBe(77);
  });

  test('SOA minimum gives the negative TTL', () => {
    const req = Packet.parse(query('nx.test'));
    const res = Packet.createResponseFromRequest(req);
    res.header.rcode = 3;
    res.authorities.push({ name: 'test', type: QTYPE.SOA, class: 1, ttl: 900, primary: 'ns.test', admin: 'h.test', serial: 1, refresh: 2, retry: 3, expiration: 4, minimum: 120 } as never);
    const p = parseResponse(res.toBuffer(), 'nx.test', QTYPE.A, 1)!;
    expect(p.rcode).toBe(3);
    expect(p.soaTtl).toBe(120);
  });
});

describe('built responses parse with dns2', () => {
  test('REFUSED copies id, question and RD; OPT when asked', () => {
    const q = query('x.test', QTYPE.AAAA, 0xbeef);
    const r = parseQuery(q);
    if (!r.ok) throw new Error('parse');
    const d = Packet.parse(buildEmptyResponse(q, r.query.questionEnd, RCODE.REFUSED, true));
    expect(d.header).toMatchObject({ id: 0xbeef, qr: 1, rcode: 5, rd: 1 });
    expect(d.questions[0]).toMatchObject({ name: 'x.test', type: QTYPE.AAAA });
    expect(d.additionals[0]?.type).toBe(41);
  });

  test('synthesised A and AAAA answers', () => {
    const q = query('x.test', QTYPE.AAAA);
    const r = parseQuery(q);
    if (!r.ok) throw new Error('parse');
    const out = buildAddressResponse(q, r.query.questionEnd, QTYPE.AAAA, [addressBytes('2001:db8::7')!], 60, false);
    const d = Packet.parse(out);
    expect(d.answers[0]).toMatchObject({ name: 'x.test', type: QTYPE.AAAA, ttl: 60 });
    expect(String((d.answers[0] as { address?: string }).address)).toMatch(/^2001:(0)?db8:/);
  });
});

describe('addresses', () => {
  test('formatIPv6 matches the WHATWG URL serialiser (RFC 5952)', () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const b = addressBytes(ip);
        expect(b).not.toBeNull();
        const want = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
        const got = formatIPv6(b!, 0);
        if (!got.startsWith('::ffff:') || !got.includes('.')) expect(got).toBe(want);
        expect(addressBytes(got)).toEqual(b);
      }),
      { numRuns: 300 },
    );
  });
  test('IPv4', () => {
    expect(addressBytes('203.0.113.255')).toEqual(Uint8Array.of(203, 0, 113, 255));
    expect(addressBytes('256.1.1.1')).toBeNull();
    expect(addressBytes('::ffff:10.200.0.1')).toEqual(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 200, 0, 1));
  });
});

// ---- fuzzing: never throws; agrees with dns2 on valid packets ----

const label = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,14}$/);
const dnsName = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));

describe('fuzz', () => {
  test('parsers never throw on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.string(), (bytes, name) => {
        const b = Buffer.from(bytes);
        parseQuery(b);
        parseResponse(b, name, 1, 1);
        for (let i = 0; i < Math.min(b.length, 40); i++) {
          readName(b, i);
          skipName(b, i);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('mutated valid packets never throw, and a parse that succeeds stays in bounds', () => {
    fc.assert(
      fc.property(dnsName, fc.array(v4, { maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.nat(255))), (name, ips, flips) => {
        const buf = response(name, QTYPE.A, ips.map((address) => ({ name, type: QTYPE.A, address })));
        for (const [pos, val] of flips) buf[pos % buf.length] = val;
        const p = parseResponse(buf, name, QTYPE.A, 1);
        if (p) {
          for (const a of p.answers) expect(a.rdOffset + a.rdLength).toBeLessThanOrEqual(buf.length);
          followChain(buf, name, p.answers);
        }
        parseQuery(buf);
      }),
      { numRuns: 2000 },
    );
  });

  test('cross-check with dns2 on valid responses', () => {
    fc.assert(
      fc.property(
        dnsName,
        fc.array(fc.oneof(v4.map((a) => ({ type: QTYPE.A, address: a })), dnsName.map((d) => ({ type: QTYPE.CNAME, domain: d }))), { maxLength: 6 }),
        fc.array(fc.nat(0x7fffffff), { minLength: 6, maxLength: 6 }),
        (name, recs, ttls) => {
          const buf = response(name, QTYPE.A, recs.map((r, i) => ({ name, ttl: ttls[i]!, ...r })));
          const theirs = Packet.parse(buf);
          const ours = parseResponse(buf, name, QTYPE.A, 1);
          expect(ours).not.toBeNull();
          expect(ours!.answers.map((a) => [a.owner, a.type, a.ttl])).toEqual(theirs.answers.map((a) => [a.name, a.type, a.ttl]));
          const q = parseQuery(query(name));
          expect(q.ok && q.query.name).toBe(theirs.questions[0]!.name);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
