// control_plane.subscribe_ack_timeout: 0 (netfence.v1: "Attach does not wait"). Attach puts
// the filter in place in block-all mode and returns; the Subscribed -> SubscribedAck exchange
// goes on here, in the background, until the ack is applied or the attachment is gone.

import type { Logger } from 'pino';

/**
 * How long one background Subscribed waits for its ack before it is sent again. The client
 * already re-sends pending Subscribed messages on every reconnect; this only covers a control
 * plane that stays connected and drops one. Well below Node's timer limit.
 */
export const BACKGROUND_ACK_RESEND_MS = 60_000;

export interface BackgroundSubscribeHooks {
  /** Sends Subscribed and resolves once the ack has been applied (rejects otherwise). */
  readonly subscribe: () => Promise<unknown>;
  /** Is the attachment still held (not detached or removed meanwhile)? */
  readonly alive: () => boolean;
  readonly logger: Logger;
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Attachments attached without waiting whose SubscribedAck has not been applied yet. */
export class AwaitingAcks {
  private readonly ids = new Set<string>();

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Starts the background exchange for `id`; `id` counts as awaiting until its ack is applied. */
  start(id: string, hooks: BackgroundSubscribeHooks): Promise<void> {
    this.ids.add(id);
    return this.run(id, hooks);
  }

  /** Ends with `id` no longer awaiting, except when its ack could not be applied (then it still is). */
  private async run(id: string, h: BackgroundSubscribeHooks): Promise<void> {
    for (;;) {
      try {
        await h.subscribe();
        this.ids.delete(id);
        if (h.alive()) h.logger.info({ attachment: id }, 'SubscribedAck applied (attached without waiting)');
        return;
      } catch (e) {
        const code = codeOf(e);
        // Detached or removed meanwhile: its Unsubscribed withdrew the subscribe (the client sends
        // no Subscribed after it), or the ack came too late for it; nothing more to say.
        if (!h.alive() || code === 'NETFENCE_ERR_CLOSED' || code === 'NETFENCE_ERR_UNSUBSCRIBED') {
          this.ids.delete(id);
          return; // CLOSED: the daemon is stopping; the filter stays block-all, pinned
        }
        if (code === 'NETFENCE_ERR_ACK_TIMEOUT') {
          h.logger.warn({ attachment: id, resendAfterMs: BACKGROUND_ACK_RESEND_MS }, 'still no SubscribedAck: sending Subscribed again; the filter keeps blocking all traffic');
          continue;
        }
        h.logger.error({ attachment: id, err: e }, 'the SubscribedAck could not be applied; the filter keeps blocking all traffic until the control plane sends a policy');
        return;
      }
    }
  }
}
