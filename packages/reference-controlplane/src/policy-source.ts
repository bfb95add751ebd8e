// Where the policy comes from, and where a rule edit goes: a YAML file (file-policy-source.ts),
// a PolicyStore such as PostgreSQL (store-policy-source.ts) or a document in memory
// (inline-policy-source.ts). The control plane treats them alike.

import type { PolicySet } from './policy-file';

export type RuleEdit = 'add' | 'remove';

export interface PolicySource {
  /** The name errors and logs carry: the file path, `postgres:netfence_policy/<name>`, `<inline>`. */
  readonly name: string;
  /** The policy at start: read synchronously when the source is made, so a bad one fails creation. */
  readonly initial: PolicySet;
  /** Reads and validates the policy now; rejects with NETFENCE_ERR_POLICY_READ or _POLICY_INVALID. */
  load(): Promise<PolicySet>;
  /**
   * Applies one rule edit to the policy as stored now, validates it, persists it atomically and
   * resolves with the policy set it makes. Nothing is written when the result is invalid.
   */
  edit(policy: string, rule: string, op: RuleEdit): Promise<PolicySet>;
  /** Calls `changed` whenever the policy may have changed outside this process. Once only. */
  watch(changed: () => void): void;
  /** Stops watching; idempotent. A store is not closed (it belongs to the caller). */
  close(): void;
}
