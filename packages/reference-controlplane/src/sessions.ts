// Every open daemon stream, indexed by daemon id and attachment id; sending a command (with its
// nonce) to one; and the admin views of them. Events from a stream are applied by
// daemon-events.ts; pushing a new policy to all of them is fan-out.ts.

import { randomBytes } from 'node:crypto';
import type { ControlCommand, DaemonEvent } from '@netfence/proto';
import type { PolicyConfig } from '@netfence/policy-engine';
import { handleDaemonEvent } from './daemon-events';
import type { NewAttachment } from './daemon-events';
import type { Logger } from './logger';
import type { ControlPlaneMetrics } from './metrics';
import type { CompiledPolicy } from './policy-file';
import { commandKind } from '@netfence/policy-wire';
import { iso, Session } from './session';
import type { AttachmentRecord } from './session';
import type { AttachmentView, DaemonView, DenyEventView } from './types';

const MAX_PENDING_PER_SESSION = 10_000;
/** A daemon that has never answered a nonce is tracked only this far (it may not know the extension). */
const MAX_PENDING_WITHOUT_RESULTS = 256;

/** The policy (if any) and config an attachment with this metadata gets under the policy in force. */
export type PolicyFor = (metadata: Record<string, string>) => { policy: CompiledPolicy | undefined; config: PolicyConfig };

export interface SessionsOptions {
  readonly log: Logger;
  readonly now: () => number;
  /** Put a nonce on every command to an attachment. */
  readonly nonces: boolean;
  readonly metrics: ControlPlaneMetrics;
  readonly policyFor: PolicyFor;
}

export interface Sessions {
  /** The open streams (read-only: use open/end). */
  readonly all: ReadonlySet<Session>;
  open(peer: string): Session;
  /** Ends a stream and forgets its attachments; idempotent. */
  end(s: Session): void;
  endAll(): void;
  /** Queues a command; `attachmentId` set = a command to that attachment (nonce, counters). */
  send(s: Session, cmd: ControlCommand, attachmentId: string | undefined): void;
  /** Applies one event the daemon sent on this stream. */
  handle(s: Session, ev: DaemonEvent): void;
  /** The attachment of this id on any stream. */
  attachment(id: string): AttachmentRecord | undefined;
  attachmentCount(): number;
  daemons(): DaemonView[];
  attachments(): AttachmentView[];
  denyEvents(): DenyEventView[];
}

export function createSessions(opts: SessionsOptions): Sessions {
  const { log, now, metrics, policyFor } = opts;
  const sessions = new Set<Session>();
  const byDaemonId = new Map<string, Session>();
  const attachmentIndex = new Map<string, AttachmentRecord>();
  const denyEvents: DenyEventView[] = [];
  let sessionSeq = 0;
  let nonceSeq = 0;
  const nonceBase = randomBytes(4).toString('hex');

  function send(s: Session, cmd: ControlCommand, attachmentId: string | undefined): void {
    if (s.ended) return;
    const kind = commandKind(cmd);
    if (opts.nonces && attachmentId !== undefined) {
      const nonce = `${nonceBase}-${(++nonceSeq).toString(36)}`;
      cmd.nonce = nonce;
      if (s.resultsSeen || s.pending.size < MAX_PENDING_WITHOUT_RESULTS) {
        if (s.pending.size >= MAX_PENDING_PER_SESSION) {
          const oldest = s.pending.keys().next().value;
          if (oldest !== undefined) s.pending.delete(oldest);
        }
        s.pending.set(nonce, { attachmentId, kind, sentAt: now() });
      }
    }
    metrics.commandSent(kind);
    if (attachmentId !== undefined) {
      const rec = s.attachments.get(attachmentId);
      if (rec) rec.commandsSent++;
    }
    s.push(cmd);
  }

  function removeAttachment(rec: AttachmentRecord): void {
    rec.session.attachments.delete(rec.id);
    if (attachmentIndex.get(rec.id) === rec) attachmentIndex.delete(rec.id);
  }

  function addAttachment(s: Session, a: NewAttachment): AttachmentRecord {
    const old = s.attachments.get(a.id);
    if (old) removeAttachment(old);
    const metadata = { ...s.metadata, ...a.metadata };
    const { policy, config } = policyFor(metadata);
    const rec: AttachmentRecord = { id: a.id, session: s, target: a.target, type: a.type, metadata, policy, sent: config, commandsSent: 0, acks: 0, nacks: 0 };
    s.attachments.set(a.id, rec);
    attachmentIndex.set(a.id, rec);
    return rec;
  }

  function end(s: Session): void {
    s.end();
    if (!sessions.delete(s)) return;
    for (const rec of s.attachments.values()) if (attachmentIndex.get(rec.id) === rec) attachmentIndex.delete(rec.id);
    if (s.daemonId && byDaemonId.get(s.daemonId) === s) byDaemonId.delete(s.daemonId);
    s.pending.clear();
    log.info({ session: s.id, daemonId: s.daemonId }, 'daemon disconnected');
  }

  /** Makes `s` the stream of `daemonId`; an older stream of the same daemon is ended. */
  function claimDaemonId(s: Session, daemonId: string): void {
    if (s.daemonId && byDaemonId.get(s.daemonId) === s) byDaemonId.delete(s.daemonId);
    s.daemonId = daemonId;
    if (!daemonId) return;
    const prev = byDaemonId.get(daemonId);
    if (prev && prev !== s) {
      log.warn({ daemonId, old: prev.id, session: s.id }, 'daemon reconnected; ending its previous stream');
      end(prev);
    }
    byDaemonId.set(daemonId, s);
  }

  const ops = { log, now, metrics, send, addAttachment, removeAttachment, claimDaemonId, denyEvents };

  return {
    all: sessions,
    open(peer) {
      const s = new Session(++sessionSeq, peer, now());
      sessions.add(s);
      return s;
    },
    end,
    endAll() {
      for (const s of [...sessions]) end(s);
    },
    send,
    handle: (s, ev) => handleDaemonEvent(ops, s, ev),
    attachment: (id) => attachmentIndex.get(id),
    attachmentCount() {
      let n = 0;
      for (const s of sessions) n += s.attachments.size;
      return n;
    },
    daemons: () => [...sessions].map(daemonView),
    attachments() {
      const out: AttachmentView[] = [];
      for (const s of sessions) for (const r of s.attachments.values()) out.push(attachmentView(s, r));
      return out;
    },
    denyEvents: () => [...denyEvents],
  };
}

function daemonView(s: Session): DaemonView {
  return {
    session: s.id,
    daemonId: s.daemonId,
    hostname: s.hostname,
    metadata: { ...s.metadata },
    peer: s.peer,
    connectedAt: iso(s.connectedAt),
    synced: s.synced,
    ...(s.lastHeartbeatAt !== undefined ? { lastHeartbeatAt: iso(s.lastHeartbeatAt) } : {}),
    attachments: s.attachments.size,
    commandsSent: s.commandsSent,
    pendingResults: s.pending.size,
  };
}

function attachmentView(s: Session, r: AttachmentRecord): AttachmentView {
  return {
    id: r.id,
    daemonId: s.daemonId,
    target: r.target,
    type: r.type,
    metadata: { ...r.metadata },
    policy: r.policy?.name,
    config: r.sent,
    commandsSent: r.commandsSent,
    acks: r.acks,
    nacks: r.nacks,
    ...(r.lastResult ? { lastResult: r.lastResult } : {}),
    ...(r.lastNack ? { lastNack: r.lastNack } : {}),
    ...(r.stats ? { lastHeartbeat: r.stats } : {}),
  };
}
