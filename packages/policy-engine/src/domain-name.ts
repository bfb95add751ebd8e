import { domainToASCII } from 'node:url';
import { PolicyError, inputText, quote } from './policy-error';

const MAX_NAME = 253;
const MAX_LABEL = 63;

function invalid(input: unknown, why: string): PolicyError {
  return new PolicyError('NETFENCE_ERR_INVALID_DOMAIN', `invalid domain name ${quote(input)}: ${why}`, {
    input: inputText(input),
  });
}

/**
 * Normalise a domain name: lower case, one trailing dot removed, IDN converted to
 * punycode (A-labels). Then validate it: no empty labels, no backslash escapes,
 * labels 1..63 bytes, whole name at most 253 bytes, only letters, digits, '-' and
 * '_' in labels. Throws PolicyError NETFENCE_ERR_INVALID_DOMAIN naming the input.
 */
export function normalizeDomain(input: string): string {
  if (typeof input !== 'string') throw invalid(input, 'not a string');
  if (input.length === 0) throw invalid(input, 'empty');
  // Fast path: plain ASCII LDH(+_) name. One pass: lower-case, check, count labels.
  let out = fastAscii(input, true);
  if (out !== undefined) return out;
  // Slow path: explain the problem or convert the IDN.
  if (input.includes('\\')) throw invalid(input, 'escaped characters (backslash) are not allowed');
  let s = input.endsWith('.') ? input.slice(0, -1) : input;
  if (s.length === 0) throw invalid(input, 'empty');
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    // check empty labels before conversion: domainToASCII would hide some of them
    if (s.split(/[.\u3002\uff0e\uff61]/).some((l) => l.length === 0)) throw invalid(input, 'empty label');
    const ascii = domainToASCII(s);
    if (ascii === '') throw invalid(input, 'not a valid internationalised domain name');
    s = ascii;
  }
  s = s.toLowerCase();
  out = fastAscii(s, false);
  if (out !== undefined) return out;
  // find the exact reason
  if (s.endsWith('.')) throw invalid(input, 'more than one trailing dot (empty label)');
  const labels = s.split('.');
  for (const label of labels) {
    if (label.length === 0) throw invalid(input, 'empty label');
    if (label.length > MAX_LABEL) throw invalid(input, `label ${quote(label)} is longer than ${MAX_LABEL} bytes`);
    const bad = /[^a-z0-9_-]/.exec(label);
    if (bad) throw invalid(input, `character ${quote(bad[0])} is not allowed (letters, digits, '-', '_' only)`);
  }
  if (s.length > MAX_NAME) throw invalid(input, `longer than ${MAX_NAME} bytes`);
  throw invalid(input, 'not a valid domain name');
}

/** Returns the normalised name if `input` is a valid ASCII name (one trailing dot allowed), else undefined. */
function fastAscii(input: string, allowTrailingDot: boolean): string | undefined {
  let len = input.length;
  if (allowTrailingDot && input.charCodeAt(len - 1) === 46 /* . */) len--;
  if (len === 0 || len > MAX_NAME) return undefined;
  let labelLen = 0;
  let hasUpper = false;
  for (let i = 0; i < len; i++) {
    const c = input.charCodeAt(i);
    if (c === 46) {
      if (labelLen === 0) return undefined;
      labelLen = 0;
      continue;
    }
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95) {
      // ok
    } else if (c >= 65 && c <= 90) {
      hasUpper = true;
    } else {
      return undefined;
    }
    if (++labelLen > MAX_LABEL) return undefined;
  }
  if (labelLen === 0) return undefined;
  const s = len === input.length ? input : input.slice(0, len);
  return hasUpper ? s.toLowerCase() : s;
}

/**
 * Parse a user-written domain pattern: `*.pypi.org` = {domain:'pypi.org', includeSubdomains:true};
 * any other name is normalised and keeps `includeSubdomains` (default false).
 */
export function parseDomainPattern(
  input: string,
  includeSubdomains = false,
): { domain: string; includeSubdomains: boolean } {
  if (typeof input !== 'string') throw invalid(input, 'not a string');
  if (input.startsWith('*.')) {
    const rest = input.slice(2);
    if (rest.length === 0 || rest === '.') throw invalid(input, 'a wildcard needs a domain after "*."');
    if (rest.includes('*')) throw invalid(input, 'only one leading "*." wildcard is allowed');
    return { domain: normalizeDomain(rest), includeSubdomains: true };
  }
  if (input.includes('*')) throw invalid(input, 'a wildcard is only allowed as a leading "*."');
  return { domain: normalizeDomain(input), includeSubdomains: Boolean(includeSubdomains) };
}
