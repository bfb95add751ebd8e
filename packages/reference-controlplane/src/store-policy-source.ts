// A policy kept in a PolicyStore (createPostgresPolicyStore): edits are written by compare and
// swap, and the store's change feed reports other replicas' edits.

import { ControlPlaneError } from './errors';
import type { Logger } from './logger';
import { addRuleToText, parsePolicyText, removeRuleFromText } from './policy-file';
import type { PolicySource } from './policy-source';
import type { PolicyStore } from './types';

/** Edits that lose a compare and swap to another replica this many times fail with the conflict. */
const MAX_EDIT_ATTEMPTS = 5;

export function isPolicyStore(p: unknown): p is PolicyStore {
  return typeof p === 'object' && p !== null && typeof (p as PolicyStore).read === 'function' && typeof (p as PolicyStore).write === 'function';
}

export function createStorePolicySource(store: PolicyStore, log: Logger): PolicySource {
  const name = store.source;
  return {
    name,
    initial: parsePolicyText(store.current().text, name),
    async load() {
      let text: string;
      try {
        text = (await store.read()).text;
      } catch (e) {
        throw ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_READ');
      }
      try {
        return parsePolicyText(text, name);
      } catch (e) {
        throw ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_INVALID');
      }
    },
    async edit(policy, rule, op) {
      // A replica that wrote in between makes us read again (a few times).
      for (let attempt = 1; ; attempt++) {
        const { text, version } = await store.read();
        const nextText = op === 'add' ? addRuleToText(text, policy, rule) : removeRuleFromText(text, policy, rule);
        const next = parsePolicyText(nextText, name); // throws POLICY_INVALID: nothing written
        try {
          await store.write(nextText, version);
        } catch (e) {
          if (e instanceof ControlPlaneError && e.code === 'NETFENCE_ERR_POLICY_CONFLICT' && attempt < MAX_EDIT_ATTEMPTS) continue;
          throw e;
        }
        log.info({ policy, rule, op, source: name }, 'policy rule edited');
        return next;
      }
    },
    watch(changed) {
      store.onChange(changed);
    },
    close: () => undefined,
  };
}
