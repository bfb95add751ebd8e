// Where attachments' DNS servers listen: the DNS port pool (dns.port_min..port_max on
// dns.listen_addr) and the two ways a runtime's server is bound (a free port at attach, the
// recorded address at restore).

import type { DnsOpener } from './attachments';
import { joinHostPort, splitHostPort } from './attachments';
import { DaemonError } from './daemon-error';
import type { ProxyDecision, StartDnsServer } from './dns-server-types';
import { createPortPool } from './ports';

export interface AttachmentDnsOptions {
  readonly listenAddr: string;
  readonly portMin: number;
  readonly portMax: number;
  readonly start: StartDnsServer;
  /** Proxy mode: asks the control plane about a name for this attachment. */
  readonly decide: (attachmentId: string, name: string, qtype: string) => Promise<ProxyDecision>;
}

export interface AttachmentDns {
  /** Binds on the first free port of the pool (attach). */
  readonly onFreePort: DnsOpener;
  /** Binds at the record's own address (restore); its port is reserved only once bound. */
  readonly atRecordedAddress: DnsOpener;
  /** Gives the port of a DNS address back to the pool (detach, rollback). */
  release(dnsAddress: string): void;
}

export function createAttachmentDns(o: AttachmentDnsOptions): AttachmentDns {
  const ports = createPortPool(o.portMin, o.portMax);
  const bind: DnsOpener = async (record, learn) => {
    const [host, port] = splitHostPort(record.dnsAddress);
    const server = await o.start({
      attachmentId: record.id,
      host,
      port,
      policy: record.policy.dns,
      onResolved: learn,
      decide: (name, qtype) => o.decide(record.id, name, qtype),
    });
    ports.reserve(port);
    return { server, dnsAddress: record.dnsAddress };
  };
  return {
    async onFreePort(record, learn) {
      let lastErr: unknown;
      for (const port of ports.candidates()) {
        try {
          return await bind({ ...record, dnsAddress: joinHostPort(o.listenAddr, port) }, learn);
        } catch (e) {
          lastErr = e;
          // dns-filter's own code for a taken address; a plain errno from a custom startDnsServer
          const code = (e as { code?: string }).code;
          if (code !== 'NETFENCE_ERR_DNS_ADDRESS_IN_USE' && code !== 'EADDRINUSE') throw e;
        }
      }
      throw new DaemonError('NETFENCE_ERR_DNS_PORTS_EXHAUSTED', `no free DNS port in ${o.portMin}-${o.portMax} on ${o.listenAddr}`, { cause: lastErr });
    },
    atRecordedAddress: bind,
    release(dnsAddress) {
      if (dnsAddress) ports.release(splitHostPort(dnsAddress)[1]);
    },
  };
}
