// The small YAML file `netfence-dns --config FILE` reads. Every key optional; errors name
// the key (and the entry of a list). Keys are snake_case like the daemon's config:
//
//   listen: 127.0.0.1:5353
//   upstreams: [127.0.0.53:53]
//   mode: allowlist            # disabled | allowlist | denylist (proxy needs a callback: library only)
//   allow: ['*.pypi.org', files.pythonhosted.org]
//   deny: [ads.pypi.org]
//   block_response: refused    # or nxdomain
//   min_ttl: 30                # seconds
//   max_ttl: 3600              # seconds
//   cache_size: 10000          # entries, 0 disables
//   rebinding_protection: false
//   rebinding_allowed_names: []
//   log_queries: true
//
// The camelCase keys of earlier versions (blockResponse, minTtlSec, maxTtlSec, cacheSize,
// rebindingProtection, rebindingAllowedNames, logQueries) are still read; each one found is
// reported through `onWarning` as deprecated.

import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';

import { normalizeDomain, parseDomainPattern } from '@netfence/policy-engine';
import { parse as parseYaml } from 'yaml';

import { DnsFilterError } from './dns-filter-error';
import { parseUpstream } from './upstream-server';

/** The file's settings, validated (field names are the library's option names). */
export interface DnsFilterFileConfig {
  listen?: string;
  upstreams?: string[];
  mode?: 'disabled' | 'allowlist' | 'denylist';
  allow?: string[];
  deny?: string[];
  blockResponse?: 'refused' | 'nxdomain';
  minTtlSec?: number;
  maxTtlSec?: number;
  cacheSize?: number;
  rebindingProtection?: boolean;
  rebindingAllowedNames?: string[];
  logQueries?: boolean;
}

export interface DnsFilterConfigParseOptions {
  /** Told about deprecated keys (one message each); the library never writes to the console. */
  readonly onWarning?: (message: string) => void;
}

/** Largest TTL a DNS record can carry (RFC 2181 8). */
export const MAX_TTL_SEC = 0x7fffffff;
/** Largest response cache accepted (entries). */
export const MAX_CACHE_SIZE = 1_000_000;
/** Largest config file read. */
const MAX_FILE_BYTES = 1024 * 1024;
/** Entries at most in one list of the file. */
const MAX_LIST = 100_000;

type Kind =
  | { t: 'string' }
  | { t: 'enum'; values: readonly string[] }
  | { t: 'strings'; check?: (v: string) => void }
  | { t: 'int'; max: number; unit: string }
  | { t: 'boolean' };

function domainPattern(v: string): void {
  parseDomainPattern(v);
}

const KEYS: Record<keyof DnsFilterFileConfig, { yaml: string; deprecated?: string; kind: Kind }> = {
  listen: { yaml: 'listen', kind: { t: 'string' } },
  upstreams: { yaml: 'upstreams', kind: { t: 'strings', check: (v) => void parseUpstream(v) } },
  mode: { yaml: 'mode', kind: { t: 'enum', values: ['disabled', 'allowlist', 'denylist'] } },
  allow: { yaml: 'allow', kind: { t: 'strings', check: domainPattern } },
  deny: { yaml: 'deny', kind: { t: 'strings', check: domainPattern } },
  blockResponse: { yaml: 'block_response', deprecated: 'blockResponse', kind: { t: 'enum', values: ['refused', 'nxdomain'] } },
  minTtlSec: { yaml: 'min_ttl', deprecated: 'minTtlSec', kind: { t: 'int', max: MAX_TTL_SEC, unit: 'seconds' } },
  maxTtlSec: { yaml: 'max_ttl', deprecated: 'maxTtlSec', kind: { t: 'int', max: MAX_TTL_SEC, unit: 'seconds' } },
  cacheSize: { yaml: 'cache_size', deprecated: 'cacheSize', kind: { t: 'int', max: MAX_CACHE_SIZE, unit: 'entries' } },
  rebindingProtection: { yaml: 'rebinding_protection', deprecated: 'rebindingProtection', kind: { t: 'boolean' } },
  rebindingAllowedNames: { yaml: 'rebinding_allowed_names', deprecated: 'rebindingAllowedNames', kind: { t: 'strings', check: (v) => void normalizeDomain(v) } },
  logQueries: { yaml: 'log_queries', deprecated: 'logQueries', kind: { t: 'boolean' } },
};

/** YAML key (current or deprecated) -> field. */
const BY_YAML = new Map<string, { field: keyof DnsFilterFileConfig; deprecated: boolean }>();
for (const [field, k] of Object.entries(KEYS) as [keyof DnsFilterFileConfig, (typeof KEYS)[keyof DnsFilterFileConfig]][]) {
  BY_YAML.set(k.yaml, { field, deprecated: false });
  if (k.deprecated) BY_YAML.set(k.deprecated, { field, deprecated: true });
}

function invalid(msg: string, cause?: unknown): DnsFilterError {
  return new DnsFilterError('NETFENCE_ERR_DNS_INVALID_CONFIG', msg, cause === undefined ? undefined : { cause });
}

/** The reason of a validation error, without its code or a repeat of the input it names. */
export function reasonOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/^NETFENCE_ERR_[A-Z_]+: /, '').replace(/^(upstream|listen) ".*?": /, '');
}

/** Shortens what a user wrote for an error message. */
export function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function checkValue(source: string, key: string, kind: Kind, v: unknown): unknown {
  const fail = (want: string): never => {
    throw invalid(`${source}: ${key} must be ${want} (got ${shown(v)})`);
  };
  switch (kind.t) {
    case 'string':
      return typeof v === 'string' ? v : fail('a string');
    case 'boolean':
      return typeof v === 'boolean' ? v : fail('true or false');
    case 'enum':
      return typeof v === 'string' && kind.values.includes(v) ? v : fail(`one of ${kind.values.join(', ')}`);
    case 'int':
      return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= kind.max ? v : fail(`a whole number of ${kind.unit} from 0 to ${kind.max}`);
    case 'strings': {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return fail('a list of strings');
      if (v.length > MAX_LIST) return fail(`a list of at most ${MAX_LIST} entries`);
      v.forEach((x: string, i) => {
        try {
          kind.check?.(x);
        } catch (e) {
          throw invalid(`${source}: ${key}[${i}] ${shown(x)}: ${reasonOf(e)}`, e);
        }
      });
      return v;
    }
  }
}

/** Parses and validates the YAML text of a config file. */
export function parseDnsFilterConfig(text: string, source = 'config', opts: DnsFilterConfigParseOptions = {}): DnsFilterFileConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw invalid(`${source}: not valid YAML: ${(e as Error).message}`, e);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw invalid(`${source}: must be a mapping`);
  const out: Record<string, unknown> = {};
  const from: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const entry = BY_YAML.get(k);
    if (entry === undefined) throw invalid(`${source}: unknown key ${shown(k)}`);
    const spec = KEYS[entry.field];
    if (from[entry.field] !== undefined) throw invalid(`${source}: ${from[entry.field]} and ${k} are the same setting: keep ${spec.yaml}`);
    from[entry.field] = k;
    if (entry.deprecated) opts.onWarning?.(`${source}: key ${k} is deprecated, write ${spec.yaml}`);
    out[entry.field] = checkValue(source, k, spec.kind, v);
  }
  if (out.listen !== undefined) {
    try {
      parseListen(out.listen as string);
    } catch (e) {
      throw invalid(`${source}: listen ${shown(out.listen)}: ${reasonOf(e)}`, e);
    }
  }
  if (out.minTtlSec !== undefined && out.maxTtlSec !== undefined && (out.minTtlSec as number) > (out.maxTtlSec as number)) {
    throw invalid(`${source}: ${from.minTtlSec} (${String(out.minTtlSec)}) is above ${from.maxTtlSec} (${String(out.maxTtlSec)})`);
  }
  return out as DnsFilterFileConfig;
}

/** Reads and validates a config file. */
export function loadDnsFilterConfig(path: string, opts: DnsFilterConfigParseOptions = {}): DnsFilterFileConfig {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes (${size})`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw invalid(`cannot read ${path}: ${(e as Error).message}`, e);
  }
  return parseDnsFilterConfig(text, path, opts);
}

/** '127.0.0.1:5353', '[::1]:53', '127.0.0.1' (port 53). Port 0 = ephemeral. */
export function parseListen(input: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(input) ?? /^([^:]+)(?::(\d+))?$/.exec(input);
  const address = m?.[1];
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (address === undefined || net.isIP(address) === 0 || !Number.isInteger(port) || port > 65535) {
    throw invalid(`listen ${shown(input)}: expected ADDRESS:PORT with an IP address (port 0-65535)`);
  }
  return { address, port };
}
