import { normalizeDomain, parseDomainPattern, PolicyError } from './index';

describe('normalizeDomain', () => {
  test.each([
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com.', 'example.com'],
    ['EXAMPLE.com.', 'example.com'],
    ['_dmarc.example.com', '_dmarc.example.com'],
    ['a-b.c_d.e', 'a-b.c_d.e'],
    ['localhost', 'localhost'],
    ['Bücher.de', 'xn--bcher-kva.de'],
    ['bücher.de.', 'xn--bcher-kva.de'],
    ['例え.テスト', 'xn--r8jz45g.xn--zckzah'],
    ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
    [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`],
    // 4 * 63 + 3 dots = 255 > 253; 3 * 63 + 61 + 3 = 253
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`],
  ])('%s -> %s', (input, out) => {
    expect(normalizeDomain(input)).toBe(out);
  });

  test.each([
    ['', 'empty'],
    ['.', 'empty'],
    ['example.com..', 'trailing'],
    ['a..b', 'empty label'],
    ['.example.com', 'empty label'],
    ['exa\\.mple.com', 'backslash'],
    ['ex\\046ample.com', 'backslash'],
    ['exa mple.com', 'not allowed'],
    ['exa*mple.com', 'not allowed'],
    ['*.example.com', 'not allowed'],
    ['exa/mple.com', 'not allowed'],
    ['exa@mple.com', 'not allowed'],
    [`${'a'.repeat(64)}.com`, 'longer than 63'],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`, 'longer than 253'],
    ['bü..cher.de', 'empty label'],
  ])('refuses %j (%s)', (input, why) => {
    let err: unknown;
    try {
      normalizeDomain(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    const pe = err as PolicyError;
    expect(pe.code).toBe('NETFENCE_ERR_INVALID_DOMAIN');
    expect(pe.message).toContain('NETFENCE_ERR_INVALID_DOMAIN');
    expect(pe.message).toContain(JSON.stringify(input).slice(1, -1).slice(0, 40));
    expect(pe.message).toContain(why);
    expect(pe.input).toBe(input);
  });

  test('non-strings are refused', () => {
    expect(() => normalizeDomain(42 as unknown as string)).toThrow(/NETFENCE_ERR_INVALID_DOMAIN/);
  });
});

describe('parseDomainPattern', () => {
  test.each([
    ['*.pypi.org', undefined, { domain: 'pypi.org', includeSubdomains: true }],
    ['*.PyPI.org.', false, { domain: 'pypi.org', includeSubdomains: true }],
    ['pypi.org', undefined, { domain: 'pypi.org', includeSubdomains: false }],
    ['pypi.org', true, { domain: 'pypi.org', includeSubdomains: true }],
  ])('%s (%s)', (input, sub, out) => {
    expect(parseDomainPattern(input, sub)).toEqual(out);
  });

  test.each(['*', '*.', '*.*.pypi.org', 'a.*.pypi.org', 'pypi*.org', '**.pypi.org'])('refuses %j', (input) => {
    expect(() => parseDomainPattern(input)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_DOMAIN', input }));
  });
});
