#!/usr/bin/env node
// netfence-dns: runs one filtering DNS server from flags and/or a YAML file.
// Flags override the file. With --log-queries, one JSON line per query on stdout;
// human messages go to stderr. Exit codes: 0 clean stop (SIGINT/SIGTERM),
// 1 runtime failure (cannot listen...), 2 invalid flags or config.

import { Command, Option } from 'commander';

import { createDnsFilter } from './dns-filter';
import { DnsFilterError } from './dns-filter-error';
import { loadDnsFilterConfig, parseListen, type DnsFilterFileConfig } from './config-file';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${value}`);
  return n;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('netfence-dns')
    .description('A filtering DNS forwarder: resolves only names the policy allows (UDP and TCP on one port).')
    .version((require('../package.json') as { version: string }).version, '--version', 'print the version and exit')
    .option('-c, --config <file>', 'YAML config file (flags override it)')
    .option('-l, --listen <addr:port>', 'listen address (default 127.0.0.1:53; port 0 = ephemeral)')
    .option('-u, --upstream <addr:port>', 'upstream server, repeatable (failover in order)', collect)
    .addOption(new Option('-m, --mode <mode>', 'filter mode').choices(['disabled', 'allowlist', 'denylist']))
    .option('-a, --allow <domain>', "allow rule, repeatable ('*.pypi.org' includes subdomains and the apex)", collect)
    .option('-d, --deny <domain>', 'deny rule, repeatable (deny wins a tie)', collect)
    .addOption(new Option('--block-response <rcode>', 'answer to blocked names').choices(['refused', 'nxdomain']))
    .option('--min-ttl <sec>', 'minimum TTL (clamp)', int)
    .option('--max-ttl <sec>', 'maximum TTL (clamp)', int)
    .option('--cache-size <n>', 'response cache entries (0 disables)', int)
    .option('--rebinding-protection', 'refuse private/loopback/link-local answers for non-exact names')
    .option('--log-queries', 'print one JSON line per query on stdout')
    .addHelpText('after', '\nExample:\n  netfence-dns --listen 127.0.0.1:5353 --upstream 127.0.0.53:53 --mode allowlist \\\n    --allow "*.pypi.org" --deny ads.pypi.org --log-queries\n')
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

  try {
    program.parse(argv as string[], { from: 'user' });
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const o = program.opts<{
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
  }>();

  let file: DnsFilterFileConfig = {};
  let listen: { address: string; port: number };
  try {
    if (o.config) file = loadDnsFilterConfig(o.config);
    listen = parseListen(o.listen ?? file.listen ?? '127.0.0.1:53');
  } catch (e) {
    process.stderr.write(`netfence-dns: ${(e as Error).message}\n`);
    return 2;
  }
  const logQueries = o.logQueries ?? file.logQueries ?? false;
  let filter;
  try {
    filter = await createDnsFilter({
      address: listen.address,
      port: listen.port,
      mode: o.mode ?? file.mode ?? 'allowlist',
      allow: o.allow ?? file.allow ?? [],
      deny: o.deny ?? file.deny ?? [],
      upstreams: o.upstream ?? file.upstreams ?? [],
      ...((o.blockResponse ?? file.blockResponse) ? { blockResponse: o.blockResponse ?? file.blockResponse } : {}),
      ...((o.minTtl ?? file.minTtlSec) !== undefined ? { minTtlSec: o.minTtl ?? file.minTtlSec } : {}),
      ...((o.maxTtl ?? file.maxTtlSec) !== undefined ? { maxTtlSec: o.maxTtl ?? file.maxTtlSec } : {}),
      ...((o.cacheSize ?? file.cacheSize) !== undefined ? { cacheSize: o.cacheSize ?? file.cacheSize } : {}),
      rebindingProtection: o.rebindingProtection ?? file.rebindingProtection ?? false,
      rebindingAllowedNames: file.rebindingAllowedNames ?? [],
      ...(logQueries
        ? {
            onQuery: (e) => {
              process.stdout.write(
                `${JSON.stringify({
                  time: new Date().toISOString(),
                  client: `${e.client.address}:${e.client.port}`,
                  transport: e.client.transport,
                  name: e.name,
                  qtype: e.qtype,
                  verdict: e.verdict,
                  reason: e.reason,
                  rule: e.rule ? `${e.rule.action} ${e.rule.includeSubdomains ? '*.' : ''}${e.rule.domain}` : undefined,
                  rcode: e.rcode,
                  latencyMs: e.latencyMs,
                  cached: e.cached,
                  upstream: e.upstream,
                  addresses: e.addresses,
                })}\n`,
              );
            },
          }
        : {}),
    });
  } catch (e) {
    process.stderr.write(`netfence-dns: ${(e as Error).message}\n`);
    return e instanceof DnsFilterError && e.code === 'NETFENCE_ERR_DNS_INVALID_OPTIONS' ? 2 : 1;
  }
  const a = filter.address;
  process.stderr.write(
    `netfence-dns: listening on ${a.family === 6 ? `[${a.address}]` : a.address}:${a.port} (udp+tcp), mode ${filter.mode}\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await filter.close();
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
