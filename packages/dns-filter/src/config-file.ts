// The small YAML file `netfence-dns --config FILE` reads. Every key optional
// except what the mode needs; errors name the key.
//
//   listen: 127.0.0.1:5353
//   upstreams: [127.0.0.53:53]
//   mode: allowlist            # disabled | allowlist | denylist (proxy needs a callback: library only)
//   allow: ['*.pypi.org', files.pythonhosted.org]
//   deny: [ads.pypi.org]
//   blockResponse: refused     # or nxdomain
//   minTtlSec: 30
//   maxTtlSec: 3600
//   cacheSize: 10000
//   rebindingProtection: false
//   rebindingAllowedNames: []
//   logQueries: true

import { readFileSync } from 'node:fs';
import net from 'node:net';

import { parse as parseYaml } from 'yaml';

import { DnsFilterError } from './dns-filter-error';

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

const KEYS: Record<keyof DnsFilterFileConfig, 'string' | 'strings' | 'number' | 'boolean'> = {
  listen: 'string',
  upstreams: 'strings',
  mode: 'string',
  allow: 'strings',
  deny: 'strings',
  blockResponse: 'string',
  minTtlSec: 'number',
  maxTtlSec: 'number',
  cacheSize: 'number',
  rebindingProtection: 'boolean',
  rebindingAllowedNames: 'strings',
  logQueries: 'boolean',
};

function invalid(msg: string, cause?: unknown): DnsFilterError {
  return new DnsFilterError('NETFENCE_ERR_DNS_INVALID_CONFIG', msg, cause === undefined ? undefined : { cause });
}

/** Parses and validates the YAML text of a config file. */
export function parseDnsFilterConfig(text: string, source = 'config'): DnsFilterFileConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw invalid(`${source}: not valid YAML: ${(e as Error).message}`, e);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw invalid(`${source}: must be a mapping`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const kind = (KEYS as Record<string, string | undefined>)[k];
    if (kind === undefined) throw invalid(`${source}: unknown key ${JSON.stringify(k)}`);
    const ok =
      kind === 'strings'
        ? Array.isArray(v) && v.every((x) => typeof x === 'string')
        : kind === 'number'
          ? typeof v === 'number' && Number.isInteger(v) && v >= 0
          : typeof v === kind;
    if (!ok) throw invalid(`${source}: ${k} must be ${kind === 'strings' ? 'a list of strings' : kind === 'number' ? 'a non-negative integer' : `a ${kind}`}`);
    out[k] = v;
  }
  if (out.mode !== undefined && !['disabled', 'allowlist', 'denylist'].includes(out.mode as string)) {
    throw invalid(`${source}: mode must be disabled, allowlist or denylist`);
  }
  if (out.blockResponse !== undefined && !['refused', 'nxdomain'].includes(out.blockResponse as string)) {
    throw invalid(`${source}: blockResponse must be refused or nxdomain`);
  }
  if (out.listen !== undefined) parseListen(out.listen as string);
  return out as DnsFilterFileConfig;
}

/** Reads and validates a config file. */
export function loadDnsFilterConfig(path: string): DnsFilterFileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw invalid(`cannot read ${path}: ${(e as Error).message}`, e);
  }
  return parseDnsFilterConfig(text, path);
}

/** '127.0.0.1:5353', '[::1]:53', '127.0.0.1' (port 53). Port 0 = ephemeral. */
export function parseListen(input: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(input) ?? /^([^:]+)(?::(\d+))?$/.exec(input);
  const address = m?.[1];
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (address === undefined || net.isIP(address) === 0 || !Number.isInteger(port) || port > 65535) {
    throw invalid(`listen ${JSON.stringify(input)}: expected ADDRESS:PORT with an IP address`);
  }
  return { address, port };
}
