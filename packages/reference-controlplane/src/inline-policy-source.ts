// A policy document given as an object: kept in memory, edited in memory, never persisted.

import { compilePolicyDocument, editInlineDocument } from './policy-file';
import type { PolicyDocument } from './policy-file';
import type { PolicySource } from './policy-source';

export function createInlinePolicySource(doc: PolicyDocument): PolicySource {
  let current = doc;
  return {
    name: '<inline>',
    initial: compilePolicyDocument(current),
    load: () => Promise.resolve(compilePolicyDocument(current)),
    async edit(policy, rule, op) {
      const nextDoc = editInlineDocument(current, policy, rule, op);
      const next = compilePolicyDocument(nextDoc);
      current = nextDoc;
      return next;
    },
    watch: () => undefined,
    close: () => undefined,
  };
}
