// How attachments are shown: the netfence.v1 Attachment of a record (Sync, List), the
// counters of a runtime (List, heartbeats, metrics) and List's pages.

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { attachmentTypeToPb, dnsModeToPb, policyModeToPb } from '@netfence/policy-wire';
import { AttachmentInfoSchema } from '@netfence/proto';
import type { Logger } from 'pino';
import type { ListPage } from './api-server';
import type { AttachmentRegistry } from './attachment-registry';
import type { AttachmentRuntime } from './attachments';
import { DaemonError } from './daemon-error';
import { quoteInput } from './request-limits';
import type { AttachmentRecord } from './state-store';

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

export function toAttachmentPb(r: AttachmentRecord) {
  return {
    id: r.id,
    target: r.target,
    type: attachmentTypeToPb(r.kind),
    mode: policyModeToPb(r.policy.mode),
    dnsMode: dnsModeToPb(r.policy.dns.mode),
    metadata: { ...r.metadata },
    dryRun: r.policy.dryRun,
  };
}

export interface AttachmentStats {
  readonly packetsAllowed: bigint;
  readonly packetsBlocked: bigint;
  readonly dnsQueriesAllowed: bigint;
  readonly dnsQueriesBlocked: bigint;
}

export function statsOf(rt: AttachmentRuntime, logger: Logger): AttachmentStats {
  let allowed = 0n;
  let blocked = 0n;
  try {
    const c = rt.datapath.counters();
    allowed = c.allowed;
    blocked = c.blocked;
  } catch (e) {
    logger.warn({ err: e, attachment: rt.id }, 'cannot read counters');
  }
  const d = rt.dns?.counters() ?? { allowed: 0n, blocked: 0n };
  return { packetsAllowed: allowed, packetsBlocked: blocked, dnsQueriesAllowed: d.allowed, dnsQueriesBlocked: d.blocked };
}

/** A kernel counter of the runtime, 0 when it cannot be read. */
export function kernelCounterOf(rt: AttachmentRuntime, which: 'dnsRateLimited' | 'eventsLost'): bigint {
  try {
    return rt.datapath.counters()[which] ?? 0n;
  } catch {
    return 0n;
  }
}

function encodeToken(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString('base64url');
}

function decodeToken(token: string): string {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string') return v.after;
  } catch {
    /* fall through */
  }
  throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `page_token ${quoteInput(token)} is not a token this daemon issued`);
}

/** One page of List, in id order, after the page token's id. */
export function listPage(registry: AttachmentRegistry, pageSize: number, pageToken: string, logger: Logger): ListPage {
  if (pageSize < 0) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `page_size ${pageSize} must not be negative`);
  const size = Math.min(pageSize || DEFAULT_PAGE, MAX_PAGE);
  const after = pageToken ? decodeToken(pageToken) : '';
  const all = registry.all().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rest = all.filter((r) => r.id > after);
  const page = rest.slice(0, size);
  const attachments = page.map((rt) => {
    const r = rt.record;
    return create(AttachmentInfoSchema, {
      ...toAttachmentPb(r),
      dnsAddress: r.dnsAddress,
      ...statsOf(rt, logger),
      attachedAt: timestampFromMs(Date.parse(r.attachedAt)),
      tcDirection: r.tcDirection ?? '',
      awaitingAck: registry.awaiting.has(rt.id),
      hook: r.kind === 'cgroup' ? 'cgroup' : (r.hook ?? 'tc'),
      xdpFallback: r.xdpFallback ?? '',
      autoRule: r.autoRule ?? '',
    });
  });
  return { attachments, nextPageToken: rest.length > size ? encodeToken(page[page.length - 1]!.id) : '', totalCount: all.length };
}
