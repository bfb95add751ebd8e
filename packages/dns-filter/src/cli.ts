#!/usr/bin/env node
// netfence-dns: runs one filtering DNS server from flags and/or a YAML file.
// Flags override the file. Logs (start, warnings, and with --log-queries one line per query,
// rate-limited) are pino JSON lines on stderr in the daemon's format (ISO time, service);
// a refused flag or config is one plain `netfence-dns: ...` line on stderr. Exit codes: 0 clean
// stop (SIGINT/SIGTERM), --help, --version; 1 runtime failure (cannot listen...); 2 invalid
// flags or config, with a message naming them.

import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { parseDomainPattern } from '@netfence/policy-engine';

import { MAX_CACHE_SIZE, MAX_TTL_SEC, loadDnsFilterConfig, parseListen, reasonOf, type DnsFilterFileConfig } from './config-file';
import { createDnsFilter } from './dns-filter';
import { DnsFilterError } from './dns-filter-error';
import { createQueryLog } from './query-log';
import { SETTINGS_DEFAULTS } from './settings';
import type { DnsFilterOptions } from './types';
import { parseUpstream } from './upstream-server';

const DEFAULT_MODE = 'allowlist';
const DEFAULT_TTL = { min: SETTINGS_DEFAULTS.minTtlSec, max: SETTINGS_DEFAULTS.maxTtlSec };

/** A commander argument parser: `check` throws on a bad value; commander then names the flag and the value. */
function checked<T>(check: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return check(v);
    } catch (e) {
      throw new InvalidArgumentError(reasonOf(e));
    }
  };
}

function repeatable(check: (v: string) => unknown): (v: string, previous?: string[]) => string[] {
  const one = checked(check);
  return (v, previous = []) => {
    one(v);
    return [...previous, v];
  };
}

function wholeNumber(max: number, unit: string): (v: string) => number {
  return checked((v) => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n > max) throw new Error(`expected a whole number of ${unit} from 0 to ${max}`);
    return n;
  });
}

interface CliFlags {
  config?: string;
  listen?: string;
  upstream?: string[];
  mode?: 'disabled' | 'allowlist' | 'denylist';
  allow?: string[];
  deny?: string[];
  blockResponse?: 'refused' | 'nxdomain';
  minTtl?: number;
  maxTtl?: number;
  cacheSize?: number;
  rebindingProtection?: boolean;
  logQueries?: boolean;
}

function buildProgram(): Command {
  return new Command('netfence-dns')
    .description('A filtering DNS forwarder: resolves only names the policy allows (UDP and TCP on one port).')
    .version((require('../package.json') as { version: string }).version, '--version', 'print the version and exit')
    .option('-c, --config <file>', 'YAML config file (flags override it)')
    .option('-l, --listen <addr:port>', 'listen address (default 127.0.0.1:53; port 0 = ephemeral)', checked((v) => (parseListen(v), v)))
    .option('-u, --upstream <addr:port>', 'upstream server, repeatable (failover in order)', repeatable(parseUpstream))
    .addOption(new Option('-m, --mode <mode>', `filter mode (default ${DEFAULT_MODE})`).choices(['disabled', 'allowlist', 'denylist']))
    .option('-a, --allow <domain>', "allow rule, repeatable ('*.pypi.org' includes subdomains and the apex)", repeatable((v) => parseDomainPattern(v)))
    .option('-d, --deny <domain>', 'deny rule, repeatable (deny wins a tie)', repeatable((v) => parseDomainPattern(v)))
    .addOption(new Option('--block-response <rcode>', 'answer to blocked names (default refused)').choices(['refused', 'nxdomain']))
    .option('--min-ttl <sec>', `minimum TTL (clamp; default ${DEFAULT_TTL.min})`, wholeNumber(MAX_TTL_SEC, 'seconds'))
    .option('--max-ttl <sec>', `maximum TTL (clamp; default ${DEFAULT_TTL.max})`, wholeNumber(MAX_TTL_SEC, 'seconds'))
    .option('--cache-size <n>', 'response cache entries (0 disables; default 10000)', wholeNumber(MAX_CACHE_SIZE, 'entries'))
    .option('--rebinding-protection', 'refuse private/loopback/link-local answers for non-exact names')
    .option('--log-queries', 'log one line per query (rate-limited per client and verdict)')
    .addHelpText('after', '\nExample:\n  netfence-dns --listen 127.0.0.1:5353 --upstream 127.0.0.53:53 --mode allowlist \\\n    --allow "*.pypi.org" --deny ads.pypi.org --log-queries\n')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(`netfence-dns: ${s}`),
    });
}

/** A setting's value and where it came from, for messages. */
function pick<T>(flag: T | undefined, flagName: string, file: T | undefined, fileKey: string, configPath: string | undefined, def: T): { value: T; from: string } {
  if (flag !== undefined) return { value: flag, from: `${flagName} ${String(flag)}` };
  if (file !== undefined) return { value: file, from: `${fileKey}: ${String(file)} in ${configPath}` };
  return { value: def, from: `the default ${String(def)}` };
}

/** Flags over the file over the defaults; returns the filter options or a message (exit 2). */
function settingsFrom(o: CliFlags, file: DnsFilterFileConfig, warn: (msg: string) => void): Omit<DnsFilterOptions, 'address' | 'port'> | string {
  const minTtl = pick(o.minTtl, '--min-ttl', file.minTtlSec, 'min_ttl', o.config, DEFAULT_TTL.min);
  const maxTtl = pick(o.maxTtl, '--max-ttl', file.maxTtlSec, 'max_ttl', o.config, DEFAULT_TTL.max);
  if (minTtl.value > maxTtl.value) return `the minimum TTL (${minTtl.from}) is above the maximum TTL (${maxTtl.from})`;
  const mode = o.mode ?? file.mode;
  if (mode === undefined) warn(`no --mode given (nor mode: in a config file): using the default mode, ${DEFAULT_MODE} (only names allowed by --allow resolve)`);
  return {
    mode: mode ?? DEFAULT_MODE,
    allow: o.allow ?? file.allow ?? [],
    deny: o.deny ?? file.deny ?? [],
    upstreams: o.upstream ?? file.upstreams ?? [],
    blockResponse: o.blockResponse ?? file.blockResponse ?? SETTINGS_DEFAULTS.blockResponse,
    minTtlSec: minTtl.value,
    maxTtlSec: maxTtl.value,
    ...((o.cacheSize ?? file.cacheSize) !== undefined ? { cacheSize: o.cacheSize ?? file.cacheSize } : {}),
    rebindingProtection: o.rebindingProtection ?? file.rebindingProtection ?? false,
    rebindingAllowedNames: file.rebindingAllowedNames ?? [],
  };
}

/** netfence-dns's logger: the daemon's format (pino JSON on stderr, ISO time, base {service}). */
function createCliLogger(): pino.Logger {
  return pino({ base: { service: 'netfence-dns' }, timestamp: pino.stdTimeFunctions.isoTime }, process.stderr as pino.DestinationStream);
}

export async function main(argv: readonly string[]): Promise<number> {
  // a refusal (exit 2) is one plain line; everything while running is a log line
  const say = (msg: string): void => void process.stderr.write(`netfence-dns: ${msg}\n`);
  const logger = createCliLogger();
  const warn = (msg: string): void => logger.warn(msg);
  const program = buildProgram();
  try {
    program.parse(argv as string[], { from: 'user' });
  } catch (e) {
    // commander already wrote its message (naming the flag and the value) to stderr
    const code = (e as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const o = program.opts<CliFlags>();

  let file: DnsFilterFileConfig = {};
  let listen: { address: string; port: number };
  let settings: ReturnType<typeof settingsFrom>;
  try {
    if (o.config) file = loadDnsFilterConfig(o.config, { onWarning: warn });
    listen = parseListen(o.listen ?? file.listen ?? '127.0.0.1:53');
    settings = settingsFrom(o, file, warn);
  } catch (e) {
    say((e as Error).message);
    return 2;
  }
  if (typeof settings === 'string') {
    say(settings);
    return 2;
  }
  const queryLog = (o.logQueries ?? file.logQueries ?? false) ? createQueryLog({ log: (fields, msg) => logger.info(fields, msg) }) : undefined;
  let filter;
  try {
    filter = await createDnsFilter({ address: listen.address, port: listen.port, ...settings, ...(queryLog ? { onQuery: (e) => queryLog.onQuery(e) } : {}) });
  } catch (e) {
    queryLog?.close();
    say((e as Error).message);
    return e instanceof DnsFilterError && e.code === 'NETFENCE_ERR_DNS_INVALID_OPTIONS' ? 2 : 1;
  }
  const a = filter.address;
  logger.info({ listen: `${a.family === 6 ? `[${a.address}]` : a.address}:${a.port}`, mode: filter.mode }, `listening on ${a.family === 6 ? `[${a.address}]` : a.address}:${a.port} (udp+tcp), mode ${filter.mode}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await filter.close();
  queryLog?.close();
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`netfence-dns: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
