import fc from 'fast-check';
import { cidrContains, createCidrTable, parseAddress, parseCidr, type Cidr } from './index';

describe('parseCidr', () => {
  test.each([
    ['10.0.0.0/16', '10.0.0.0/16', 4, 16],
    ['10.1.2.3/16', '10.1.0.0/16', 4, 16],
    ['10.1.2.3', '10.1.2.3/32', 4, 32],
    ['0.0.0.0/0', '0.0.0.0/0', 4, 0],
    ['255.255.255.255/1', '128.0.0.0/1', 4, 1],
    ['198.51.100.77/25', '198.51.100.0/25', 4, 25],
    ['2001:db8::/32', '2001:db8::/32', 6, 32],
    ['2001:DB8::1', '2001:db8::1/128', 6, 128],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1/128', 6, 128],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1/128', 6, 128],
    ['2001:db8:ffff::/33', '2001:db8:8000::/33', 6, 33],
    ['::/0', '::/0', 6, 0],
    ['::', '::/128', 6, 128],
    ['::1', '::1/128', 6, 128],
    ['1::', '1::/128', 6, 128],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1/128', 6, 128],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0/128', 6, 128],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0/128', 6, 128],
    ['::ffff:203.0.113.7', '203.0.113.7/32', 4, 32],
    ['::FFFF:cb00:7107', '203.0.113.7/32', 4, 32],
    ['::ffff:203.0.113.0/120', '203.0.113.0/24', 4, 24],
    ['::ffff:0.0.0.0/96', '0.0.0.0/0', 4, 0],
    ['::ffff:0:0/95', '::fffe:0:0/95', 6, 95],
    ['::203.0.113.7', '::cb00:7107/128', 6, 128],
    ['64:ff9b::203.0.113.7/128', '64:ff9b::cb00:7107/128', 6, 128],
    ['1:2:3:4:5:6:203.0.113.7', '1:2:3:4:5:6:cb00:7107/128', 6, 128],
  ])('%s -> %s', (input, text, family, len) => {
    const c = parseCidr(input);
    expect(c.text).toBe(text);
    expect(c.family).toBe(family);
    expect(c.prefixLen).toBe(len);
    expect(c.bytes).toHaveLength(family === 4 ? 4 : 16);
    expect(parseCidr(c.text).text).toBe(c.text);
  });

  test.each([
    '',
    '10.0.0',
    '10.0.0.0.0',
    '10.0.0.256',
    '10.0.0.01',
    '10.0.0.-1',
    '10.0.0.0/33',
    '10.0.0.0/',
    '10.0.0.0/08',
    '10.0.0.0/-1',
    '10.0.0.0/1/2',
    ' 10.0.0.0',
    'example.com',
    '2001:db8::/129',
    '2001:db8:::1',
    '2001:db8::1::1',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '12345::',
    'fe80::1%eth0',
    ':1::',
    '1::2.3.4',
    '::ffff:1.2.3.4.5',
    'g::',
  ])('refuses %j naming it', (input) => {
    expect(() => parseCidr(input)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_CIDR', input }));
    try {
      parseCidr(input);
    } catch (e) {
      expect((e as Error).message).toContain(JSON.stringify(input));
    }
  });

  test('parseAddress accepts hosts only', () => {
    expect(parseAddress('203.0.113.7').text).toBe('203.0.113.7/32');
    expect(parseAddress('203.0.113.7/32').text).toBe('203.0.113.7/32');
    expect(parseAddress('::ffff:203.0.113.7').text).toBe('203.0.113.7/32');
    expect(parseAddress('2001:db8::7').text).toBe('2001:db8::7/128');
    expect(() => parseAddress('203.0.113.0/24')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_CIDR' }));
  });

  test('property: canonical text round-trips and masks host bits', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, len) => {
        const c = parseCidr(`${ip}/${len}`);
        expect(parseCidr(c.text)).toEqual(c);
        expect(cidrContains(c, parseAddress(ip))).toBe(true);
        const mapped = parseCidr(`::ffff:${ip}/${96 + len}`);
        expect(mapped).toEqual(c);
      }),
    );
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, len) => {
        const c = parseCidr(`${ip}/${len}`);
        expect(parseCidr(c.text)).toEqual(c);
        expect(c.text).toBe(c.text.toLowerCase());
        if (c.family === 6) expect(cidrContains(c, parseCidr(ip))).toBe(true);
      }),
    );
  });
});

describe('CidrTable', () => {
  test('exact get/set/delete and longest-prefix match', () => {
    const t = createCidrTable<string>();
    t.set('10.0.0.0/8', 'a');
    t.set('10.1.0.0/16', 'b');
    t.set('10.1.2.0/24', 'c');
    t.set('0.0.0.0/0', 'default4');
    t.set('2001:db8::/32', 'v6');
    t.set('::ffff:10.1.2.3', 'host');
    expect(t.size).toBe(6);
    expect(t.get('10.1.0.0/16')).toBe('b');
    expect(t.get('10.1.0.0/17')).toBeUndefined();
    expect(t.lookup('10.1.2.3')?.value).toBe('host');
    expect(t.lookup('10.1.2.4')?.value).toBe('c');
    expect(t.lookup('10.1.3.4')?.cidr.text).toBe('10.1.0.0/16');
    expect(t.lookup('10.2.3.4')?.value).toBe('a');
    expect(t.lookup('11.0.0.1')?.value).toBe('default4');
    expect(t.lookup('2001:db8::1')?.value).toBe('v6');
    expect(t.lookup('2001:db9::1')).toBeUndefined();
    expect(t.lookup('10.1.0.0/12')?.value).toBe('a');
    t.set('10.1.0.0/16', 'B');
    expect(t.size).toBe(6);
    expect(t.lookup('10.1.3.4')?.value).toBe('B');
    expect(t.delete('10.1.2.0/24')).toBe(true);
    expect(t.delete('10.1.2.0/24')).toBe(false);
    expect(t.lookup('10.1.2.4')?.value).toBe('B');
    expect(t.size).toBe(5);
    expect([...t.entries()].map(([c, v]) => [c.text, v])).toEqual(
      expect.arrayContaining([
        ['0.0.0.0/0', 'default4'],
        ['10.0.0.0/8', 'a'],
        ['10.1.0.0/16', 'B'],
        ['10.1.2.3/32', 'host'],
        ['2001:db8::/32', 'v6'],
      ]),
    );
    expect(() => t.lookup('nope')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_CIDR' }));
  });

  // brute force reference
  function bruteLookup(prefixes: Cidr[], addr: Cidr): Cidr | undefined {
    let best: Cidr | undefined;
    for (const p of prefixes) if (cidrContains(p, addr) && (!best || p.prefixLen > best.prefixLen)) best = p;
    return best;
  }

  const v4prefix = fc
    .tuple(fc.constantFrom(10, 198, 203), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 32 }))
    .map(([a, b, c, d, len]) => parseCidr(`${a}.${b}.${c}.${d}/${len}`));
  const v6prefix = fc
    .tuple(fc.constantFrom('2001:db8', '2001:db9'), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 128 }))
    .map(([a, b, c, d, len]) => parseCidr(`${a}:${b}::${c.toString(16)}:${d.toString(16)}/${len}`));
  const prefix = fc.oneof(v4prefix, v6prefix);
  const address = fc.oneof(v4prefix, v6prefix).map((c) => parseAddress(c.text.split('/')[0]!));

  test('property: lookup == brute force, with deletes', () => {
    fc.assert(
      fc.property(fc.array(prefix, { maxLength: 60 }), fc.array(prefix, { maxLength: 20 }), fc.array(address, { minLength: 1, maxLength: 40 }), (ins, del, addrs) => {
        const t = createCidrTable<string>();
        const live = new Map<string, Cidr>();
        for (const p of ins) {
          t.set(p, p.text);
          live.set(p.text, p);
        }
        for (const p of del) {
          expect(t.delete(p)).toBe(live.delete(p.text));
        }
        expect(t.size).toBe(live.size);
        const all = [...live.values()];
        // also probe with the stored prefixes' own addresses, so hits are common
        const probes = [...addrs, ...all.map((p) => parseAddress(p.text.split('/')[0]!))];
        for (const a of probes) {
          const want = bruteLookup(all, a);
          const got = t.lookup(a);
          expect(got?.cidr.text).toBe(want?.text);
          if (want) expect(got?.value).toBe(want.text);
        }
      }),
      { numRuns: 300 },
    );
  });
});
