// An upstream server address: IP literal and port, parsed from what a user writes.

import net from 'node:net';

import { DnsFilterError } from './dns-filter-error';
import { addressBytes, formatIPv6 } from './wire';

export interface UpstreamServer {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** 'host:port' or '[v6]:port'. */
  readonly text: string;
}

/** Parses '10.0.0.1', '10.0.0.1:5353', '::1', '[::1]:5353' (IP literals only; port defaults to 53). */
export function parseUpstream(input: string): UpstreamServer {
  const s = input.trim();
  let host = s;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (s.split(':').length === 2) {
    const [h, p] = s.split(':');
    host = h!;
    port = Number(p);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DnsFilterError('NETFENCE_ERR_DNS_INVALID_OPTIONS', `upstream ${JSON.stringify(input)}: bad port`);
  }
  const family = net.isIPv4(host) ? 4 : net.isIPv6(host) ? 6 : 0;
  if (family === 0) {
    throw new DnsFilterError('NETFENCE_ERR_DNS_INVALID_OPTIONS', `upstream ${JSON.stringify(input)}: not an IP address`);
  }
  if (family === 6) host = formatIPv6(addressBytes(host)!, 0);
  return { host, port, family, text: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}
