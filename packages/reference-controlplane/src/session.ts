// One daemon's Connect stream: who it is, the attachments it reported, the nonces awaiting a
// result, and the queue of commands the stream sends. The events that change it are handled in
// daemon-events.ts; the set of all sessions is sessions.ts.

import type { ControlCommand } from '@netfence/proto';
import type { PolicyConfig } from '@netfence/policy-engine';
import type { CompiledPolicy } from './policy-file';
import type { AttachmentStatsView, CommandResultView } from './types';

/** One attachment of one daemon, and what it was sent. */
export interface AttachmentRecord {
  readonly id: string;
  readonly session: Session;
  target: string;
  type: number;
  metadata: Record<string, string>;
  policy: CompiledPolicy | undefined;
  /** The config the daemon was last sent (what it holds, as far as we know). */
  sent: PolicyConfig;
  commandsSent: number;
  acks: number;
  nacks: number;
  lastResult?: CommandResultView;
  lastNack?: CommandResultView;
  stats?: AttachmentStatsView;
}

/** A command sent with a nonce, until its CommandResult arrives. */
export interface Pending {
  readonly attachmentId: string;
  readonly kind: string;
  readonly sentAt: number;
}

export class Session {
  daemonId = '';
  hostname = '';
  metadata: Record<string, string> = {};
  synced = false;
  lastHeartbeatAt?: number;
  commandsSent = 0;
  readonly attachments = new Map<string, AttachmentRecord>();
  readonly pending = new Map<string, Pending>();
  /** True once the daemon has sent any CommandResult. */
  resultsSeen = false;
  private queue: ControlCommand[] = [];
  private wake: (() => void) | undefined;
  ended = false;

  constructor(
    readonly id: number,
    readonly peer: string,
    readonly connectedAt: number,
  ) {}

  push(cmd: ControlCommand): void {
    if (this.ended) return;
    this.queue.push(cmd);
    this.commandsSent++;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The stream's outgoing side: queued commands in order, until end(). */
  async *outgoing(): AsyncGenerator<ControlCommand> {
    for (;;) {
      if (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        for (const c of batch) yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

/** Milliseconds since the epoch as the ISO text the views show. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
