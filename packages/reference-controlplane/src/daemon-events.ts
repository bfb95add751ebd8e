// What the control plane does with each event a daemon sends on its stream: SyncRequest,
// Subscribed, Unsubscribed, Heartbeat, CommandResult (nonce ACK/NACK) and DenyEvents.

import { UnsubscribeReason } from '@netfence/proto';
import type { CommandResult, ControlCommand, DaemonEvent, DenyEvents, Heartbeat, Subscribed, SyncRequest, Unsubscribed } from '@netfence/proto';
import type { Logger } from './logger';
import type { ControlPlaneMetrics } from './metrics';
import { bulkUpdateCommand, subscribedAckCommand, syncAckCommand } from '@netfence/policy-wire';
import { iso } from './session';
import type { AttachmentRecord, Session } from './session';
import type { CommandResultView, DenyEventView } from './types';

const MAX_DENY_EVENTS = 500;

/** What an attachment is reported with, in a SyncRequest or a Subscribed. */
export type NewAttachment = Pick<Subscribed, 'id' | 'target' | 'type' | 'metadata'>;

/** What the handlers need from the set of sessions (sessions.ts provides it). */
export interface SessionOps {
  readonly log: Logger;
  readonly now: () => number;
  readonly metrics: ControlPlaneMetrics;
  send(s: Session, cmd: ControlCommand, attachmentId: string | undefined): void;
  /** Records `a` (a SyncRequest's Attachment or a Subscribed) with its metadata merged over the daemon's, in a new object. */
  addAttachment(s: Session, a: NewAttachment): AttachmentRecord;
  removeAttachment(rec: AttachmentRecord): void;
  claimDaemonId(s: Session, daemonId: string): void;
  /** The last deny events received (trimmed here to MAX_DENY_EVENTS). */
  readonly denyEvents: DenyEventView[];
}

export function handleDaemonEvent(ops: SessionOps, s: Session, ev: DaemonEvent): void {
  const e = ev.event;
  switch (e.case) {
    case 'sync':
      return onSync(ops, s, e.value);
    case 'subscribed':
      return onSubscribed(ops, s, e.value);
    case 'unsubscribed':
      return onUnsubscribed(ops, s, e.value);
    case 'heartbeat':
      return onHeartbeat(ops, s, e.value);
    case 'commandResult':
      return onCommandResult(ops, s, e.value);
    case 'denyEvents':
      return onDenyEvents(ops, s, e.value);
    default:
      return;
  }
}

/** Replaces the daemon's attachment list: SyncAck, then one BulkUpdate per attachment. */
function onSync(ops: SessionOps, s: Session, sync: SyncRequest): void {
  s.hostname = sync.hostname;
  s.metadata = { ...sync.metadata };
  ops.claimDaemonId(s, sync.daemonId);
  for (const rec of [...s.attachments.values()]) ops.removeAttachment(rec);
  s.synced = true;
  ops.send(s, syncAckCommand(), undefined);
  for (const a of sync.attachments) {
    const rec = ops.addAttachment(s, a);
    ops.send(s, bulkUpdateCommand(a.id, rec.sent), a.id);
  }
  ops.log.info({ session: s.id, daemonId: s.daemonId, attachments: sync.attachments.length }, 'daemon synced');
}

function onSubscribed(ops: SessionOps, s: Session, sub: Subscribed): void {
  const rec = ops.addAttachment(s, sub);
  ops.send(s, subscribedAckCommand(sub.id, rec.sent), sub.id);
  ops.log.info({ daemonId: s.daemonId, attachment: sub.id, policy: rec.policy?.name ?? null }, 'attachment subscribed');
}

function onUnsubscribed(ops: SessionOps, s: Session, u: Unsubscribed): void {
  const rec = s.attachments.get(u.id);
  if (rec) ops.removeAttachment(rec);
  ops.log.info({ daemonId: s.daemonId, attachment: u.id, reason: UnsubscribeReason[u.reason], error: u.error || undefined }, 'attachment unsubscribed');
}

function onHeartbeat(ops: SessionOps, s: Session, hb: Heartbeat): void {
  const t = ops.now();
  s.lastHeartbeatAt = t;
  for (const st of hb.stats) {
    const rec = s.attachments.get(st.id);
    if (!rec) continue;
    rec.stats = {
      at: iso(t),
      packetsAllowed: Number(st.packetsAllowed),
      packetsBlocked: Number(st.packetsBlocked),
      dnsQueriesAllowed: Number(st.dnsQueriesAllowed),
      dnsQueriesBlocked: Number(st.dnsQueriesBlocked),
    };
  }
}

/** Records the ACK/NACK of a nonce; a NACK of a single command resynchronises the attachment once. */
function onCommandResult(ops: SessionOps, s: Session, r: CommandResult): void {
  s.resultsSeen = true;
  const p = s.pending.get(r.nonce);
  if (!p) return;
  s.pending.delete(r.nonce);
  const t = ops.now();
  const rec = s.attachments.get(p.attachmentId);
  const view: CommandResultView = {
    nonce: r.nonce,
    command: p.kind,
    ok: r.ok,
    ...(r.ok ? {} : { errorCode: r.errorCode, errorMessage: r.errorMessage }),
    at: iso(t),
  };
  if (r.ok) {
    ops.metrics.acks.inc();
    ops.metrics.ackLatency.observe((t - p.sentAt) / 1000);
    if (rec) {
      rec.acks++;
      rec.lastResult = view;
    }
    return;
  }
  ops.metrics.nacks.inc();
  ops.log.warn({ daemonId: s.daemonId, attachment: p.attachmentId, command: p.kind, code: r.errorCode, error: r.errorMessage }, 'command rejected (NACK)');
  if (rec) {
    rec.nacks++;
    rec.lastResult = view;
    rec.lastNack = view;
    // The daemon never half-applies: resynchronise the attachment once with its whole config.
    if (p.kind !== 'bulkUpdate' && p.kind !== 'subscribedAck') ops.send(s, bulkUpdateCommand(rec.id, rec.sent), rec.id);
  }
}

function onDenyEvents(ops: SessionOps, s: Session, batch: DenyEvents): void {
  const list = ops.denyEvents;
  for (const d of batch.events) {
    ops.metrics.denyEvents.inc();
    list.push({
      daemonId: s.daemonId,
      attachmentId: d.attachmentId,
      destination: d.destination,
      port: d.port,
      protocol: d.protocol,
      reason: d.reason,
      domain: d.domain,
      dryRun: d.dryRun,
      count: Number(d.count),
    });
  }
  if (list.length > MAX_DENY_EVENTS) list.splice(0, list.length - MAX_DENY_EVENTS);
}
