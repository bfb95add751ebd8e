// The command side of the stream: every ControlCommand is applied in arrival order, one at a
// time, and its outcome reported as a CommandResult when it carries a nonce. A subscribe()
// waits here for its SubscribedAck: the ack is claimed when it arrives (its timeout stops) and
// applied at its turn in the order. Commands outlive the stream they came on.
import { create } from '@bufbuild/protobuf';
import { CommandResultSchema, DaemonEventSchema } from '@netfence/proto';
import type { CommandResult, ControlCommand, DaemonEvent, Subscribed } from '@netfence/proto';
import { ControlPlaneClientError, closedError } from './controlplane-client-error';
import type { ReliableItem } from './send-queue';
import { delay } from './delay';
import type { ApplyAck, ControlPlaneClientLogger, ControlPlaneConnectionState } from './types';

/** What the sequencer needs of the send side (the Outbox provides it). */
export interface SequencerOutbox {
  /** Throws NETFENCE_ERR_QUEUE_FULL when the reliable lane is full (unless forced). */
  pushReliable(item: ReliableItem, force?: boolean): void;
  pushCommandResult(value: CommandResult): void;
  unshiftReliable(items: readonly ReliableItem[]): void;
  removeSubscribed(id: string): boolean;
  hasSubscribed(id: string): boolean;
}

export interface CommandSequencerOptions {
  readonly onCommand: (cmd: ControlCommand) => Promise<void> | void;
  readonly subscribeAckTimeoutMs: number;
  readonly outbox: SequencerOutbox;
  readonly log: ControlPlaneClientLogger;
  /** The link state, named in the ACK_TIMEOUT message. */
  readonly linkState: () => ControlPlaneConnectionState;
}

interface PendingSubscribe {
  readonly id: string;
  readonly event: DaemonEvent;
  readonly applyAck: ApplyAck | undefined;
  readonly resolve: (cmd: ControlCommand) => void;
  readonly reject: (err: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  /** Handed to a stream at least once (so it is re-sent after a reconnect). */
  sent: boolean;
}

interface CommandItem {
  readonly cmd: ControlCommand;
  /** The subscribe() that claimed this SubscribedAck, if any. */
  readonly waiter: PendingSubscribe | undefined;
}

export class CommandSequencer {
  private readonly pending = new Map<string, PendingSubscribe>();
  private readonly commands: CommandItem[] = [];
  /** The loop applying `commands`, while there are any. */
  private running: Promise<void> | undefined;
  /** After close(): no pending subscribes, no more CommandResults. */
  private closed = false;
  private received = 0;

  constructor(private readonly o: CommandSequencerOptions) {}

  /**
   * Queues `msg` and waits for its SubscribedAck (see ControlPlaneClient.subscribe). Rejects
   * INVALID_ARGUMENT (empty id), ALREADY_PENDING, QUEUE_FULL, ACK_TIMEOUT, CLOSED.
   */
  subscribe(msg: Subscribed, applyAck: ApplyAck | undefined): Promise<ControlCommand> {
    if (msg.id === '') {
      return Promise.reject(new ControlPlaneClientError('NETFENCE_ERR_INVALID_ARGUMENT', 'Subscribed.id is empty'));
    }
    if (this.pending.has(msg.id)) {
      return Promise.reject(
        new ControlPlaneClientError('NETFENCE_ERR_ALREADY_PENDING', `a subscribe for attachment ${msg.id} is already waiting for its ack`),
      );
    }
    const event = create(DaemonEventSchema, { event: { case: 'subscribed', value: msg } });
    return new Promise<ControlCommand>((resolve, reject) => {
      const p: PendingSubscribe = { id: msg.id, event, applyAck, resolve, reject, timer: undefined, sent: false };
      try {
        this.o.outbox.pushReliable({ kind: 'subscribed', event, subscribeId: msg.id });
      } catch (err) {
        reject(err);
        return;
      }
      p.timer = setTimeout(() => this.timeOut(p), this.o.subscribeAckTimeoutMs);
      this.pending.set(msg.id, p);
    });
  }

  /** The request stream handed `item` to the wire (a Subscribed is then re-sent after a reconnect). */
  markSent(item: ReliableItem): void {
    if (item.kind !== 'subscribed' || item.subscribeId === undefined) return;
    const p = this.pending.get(item.subscribeId);
    if (p) p.sent = true;
  }

  /**
   * At the start of a stream: Subscribed messages handed to the previous stream are
   * unacknowledged, so they go right after the SyncRequest, ahead of everything queued meanwhile.
   */
  requeueUnacked(): void {
    const resend: ReliableItem[] = [];
    for (const p of this.pending.values()) {
      if (p.sent && !this.o.outbox.hasSubscribed(p.id)) resend.push({ kind: 'subscribed', event: p.event, subscribeId: p.id });
    }
    this.o.outbox.unshiftReliable(resend);
  }

  /** A command from the stream: claims a SubscribedAck somebody waits for, then queues it in order. */
  receive(cmd: ControlCommand): void {
    this.received++;
    let waiter: PendingSubscribe | undefined;
    if (cmd.command.case === 'subscribedAck') {
      const p = this.pending.get(cmd.id);
      if (p) {
        // Claimed at receipt: the timeout no longer applies and no re-send happens.
        this.pending.delete(cmd.id);
        if (p.timer) clearTimeout(p.timer);
        p.timer = undefined;
        this.o.outbox.removeSubscribed(cmd.id);
        waiter = p;
      }
    }
    this.commands.push({ cmd, waiter });
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
  }

  stats(): { commandsReceived: number; commandsQueued: number; subscribesPending: number } {
    return { commandsReceived: this.received, commandsQueued: this.commands.length, subscribesPending: this.pending.size };
  }

  /**
   * unsubscribe() of an id whose subscribe still waits: the subscribe is withdrawn (its Subscribed
   * taken out of the queue, never re-sent after a reconnect, its ack left to onCommand) and
   * rejects UNSUBSCRIBED, so nothing can put a Subscribed after the Unsubscribed.
   */
  withdraw(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    this.o.outbox.removeSubscribed(id);
    p.reject(new ControlPlaneClientError('NETFENCE_ERR_UNSUBSCRIBED', `attachment ${id} was unsubscribed before its SubscribedAck came`));
  }

  /** First step of close(): pending subscribes reject CLOSED; commands still run, unreported. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(closedError('subscribe'));
    }
    this.pending.clear();
  }

  /** Last step of close(): drops queued commands and lets the one in progress finish (until `deadline`). */
  async stop(deadline: number): Promise<void> {
    for (const item of this.commands.splice(0)) item.waiter?.reject(closedError('subscribe'));
    if (this.running) await Promise.race([this.running, delay(Math.max(0, deadline - Date.now()))]);
  }

  private timeOut(p: PendingSubscribe): void {
    p.timer = undefined;
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    this.o.outbox.removeSubscribed(p.id);
    const timeoutMs = this.o.subscribeAckTimeoutMs;
    this.o.log.warn({ attachmentId: p.id, timeoutMs }, 'no SubscribedAck in time');
    p.reject(
      new ControlPlaneClientError(
        'NETFENCE_ERR_ACK_TIMEOUT',
        `no SubscribedAck for attachment ${p.id} within ${timeoutMs} ms (link ${this.o.linkState()})`,
      ),
    );
  }

  private async run(): Promise<void> {
    for (;;) {
      const item = this.commands.shift();
      if (item === undefined) return;
      await this.apply(item);
    }
  }

  /** Applies one command (to its waiter's applyAck or to onCommand) and reports the outcome. */
  private async apply({ cmd, waiter }: CommandItem): Promise<void> {
    let failure: unknown;
    let failed = false;
    try {
      if (waiter) {
        if (waiter.applyAck) await waiter.applyAck(cmd);
      } else {
        await this.o.onCommand(cmd);
      }
    } catch (err) {
      failed = true;
      failure = err;
    }
    if (waiter) {
      if (failed) waiter.reject(failure);
      else waiter.resolve(cmd);
    }
    if (failed) {
      this.o.log.warn({ err: failure, attachmentId: cmd.id, command: cmd.command.case, nonce: cmd.nonce }, 'command failed');
    }
    // Without applyAck the caller applies the ack and reports its nonce itself.
    const reportResult = cmd.nonce !== '' && (!waiter || waiter.applyAck !== undefined);
    if (reportResult && !this.closed) {
      this.o.outbox.pushCommandResult(
        create(CommandResultSchema, {
          nonce: cmd.nonce,
          attachmentId: cmd.id,
          ok: !failed,
          errorCode: failed ? errorCodeOf(failure) : '',
          errorMessage: failed ? errorMessageOf(failure) : '',
        }),
      );
    }
  }
}

function errorCodeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'NETFENCE_ERR_COMMAND_FAILED';
}

function errorMessageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
