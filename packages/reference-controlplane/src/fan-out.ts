// Pushing a new policy set to every attachment of every open stream: each attachment's new
// config is diffed against the config it was last sent, and only that diff is queued.

import type { EventEmitter } from 'node:events';
import type { ControlCommand } from '@netfence/proto';
import { diffConfigs } from '@netfence/policy-engine';
import type { PolicyConfig } from '@netfence/policy-engine';
import type { Logger } from './logger';
import type { ControlPlaneMetrics } from './metrics';
import type { PolicySet } from './policy-file';
import { commandFactory } from '@netfence/policy-wire';
import type { PolicyFor, Sessions } from './sessions';

export interface FanOutOptions {
  readonly sessions: Sessions;
  /** Must already answer with `next` when push(next) is called. */
  readonly policyFor: PolicyFor;
  readonly metrics: ControlPlaneMetrics;
  /** Gets 'pushed' ({commands, ms}) after each push. */
  readonly events: EventEmitter;
  readonly log: Logger;
}

/** Returns push(next): queues the commands that bring every attachment to `next`, and counts them. */
export function createFanOut(opts: FanOutOptions): (next: PolicySet) => number {
  const { sessions, policyFor, metrics, events, log } = opts;
  return (next) => {
    const t0 = performance.now();
    // Attachments mostly share a handful of configs: each (from, to) pair is diffed and encoded once.
    const diffCache = new Map<PolicyConfig, Map<PolicyConfig, readonly ((id: string) => ControlCommand)[]>>();
    let count = 0;
    for (const s of sessions.all) {
      for (const rec of s.attachments.values()) {
        const { policy, config } = policyFor(rec.metadata);
        rec.policy = policy;
        const from = rec.sent;
        if (from === config) continue;
        let inner = diffCache.get(from);
        if (!inner) diffCache.set(from, (inner = new Map()));
        let cmds = inner.get(config);
        if (cmds === undefined) {
          cmds = diffConfigs(from, config).map(commandFactory);
          inner.set(config, cmds);
        }
        rec.sent = config;
        for (const make of cmds) {
          sessions.send(s, make(rec.id), rec.id);
          count++;
        }
      }
    }
    const ms = performance.now() - t0;
    metrics.pushFanout.observe(ms / 1000);
    events.emit('pushed', { commands: count, ms });
    log.info({ commands: count, ms: Math.round(ms * 10) / 10, policies: next.policies.length }, 'policy pushed');
    return count;
  };
}
