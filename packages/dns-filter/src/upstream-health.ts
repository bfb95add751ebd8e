// Health of upstream servers: a server that times out, refuses or breaks is down for an
// exponential backoff period; queries try servers that are up first, in configured order,
// then those that are down, soonest back first.

import type { UpstreamServer } from './upstream-server';

export interface UpstreamStatus {
  readonly address: string;
  readonly up: boolean;
  readonly failures: number;
  readonly downUntilMs?: number;
}

export interface ServerHealth {
  readonly server: UpstreamServer;
  failures: number;
  /** Date.now() ms until which the server counts as down; 0 = up. */
  downUntil: number;
}

export interface Backoff {
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
}

/** One failure per down period: failures while down do not lengthen it. */
export function markFailed(s: ServerHealth | undefined, b: Backoff): void {
  if (!s) return;
  const now = Date.now();
  if (s.downUntil > now) return; // already down: one failure per down period
  s.failures++;
  const backoff = Math.min(b.maxBackoffMs, b.backoffMs * 2 ** Math.min(16, s.failures - 1));
  s.downUntil = now + backoff;
}

export function markOk(s: ServerHealth | undefined): void {
  if (!s) return;
  s.failures = 0;
  s.downUntil = 0;
}

/** The order to try servers in: `states` itself when all are up (the common case, no allocation). */
export function healthOrder<S extends ServerHealth>(states: readonly S[]): readonly S[] {
  const now = Date.now();
  let allUp = true;
  for (const s of states) {
    if (s.downUntil > now) {
      allUp = false;
      break;
    }
  }
  if (allUp) return states;
  const up = states.filter((s) => s.downUntil <= now);
  const down = states.filter((s) => s.downUntil > now).sort((a, b) => a.downUntil - b.downUntil);
  return up.concat(down);
}

export function healthStatus(states: readonly ServerHealth[]): UpstreamStatus[] {
  const now = Date.now();
  return states.map((s) => ({
    address: s.server.text,
    up: s.downUntil <= now,
    failures: s.failures,
    ...(s.downUntil > now ? { downUntilMs: s.downUntil } : {}),
  }));
}
