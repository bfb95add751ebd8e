// The one mapping of auto-attach rules across boundaries: the DaemonService messages
// (AutoAttachRules, both ways) and the config file's shape (YAML or JSON text, both ways; the
// CLI's `netfenced auto-attach get/set` reads and writes it). Validation is always
// parseAutoAttachRules': whatever the source, one bad rule refuses the list, naming it.

import { create } from '@bufbuild/protobuf';
import { AutoAttachRulesSchema, type AutoAttachRules } from '@netfence/proto';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { isInterfaceRule, parseAutoAttachRules, type AutoAttachRule } from './auto-attach-rules';
import { DaemonError } from './daemon-error';

/** The rules of a SetAutoAttachRules request, validated whole (errors name `rules[i...]`). */
export function autoAttachRulesFromPb(msg: AutoAttachRules): AutoAttachRule[] {
  const raw = msg.rules.map((r) => ({
    ...(r.target.case === 'interface' ? { interface: r.target.value } : r.target.case === 'cgroup' ? { cgroup: r.target.value } : {}),
    // Only what was set: a cgroup rule with a kind or xdp is refused naming the field.
    ...(r.kind ? { kind: r.kind } : {}),
    ...(Object.keys(r.metadata).length ? { metadata: { ...r.metadata } } : {}),
    ...(r.xdp ? { xdp: true } : {}),
  }));
  return parseAutoAttachRules(raw, 'rules');
}

export function autoAttachRulesToPb(rules: readonly AutoAttachRule[]): AutoAttachRules {
  return create(AutoAttachRulesSchema, {
    rules: rules.map((r) =>
      isInterfaceRule(r)
        ? { target: { case: 'interface' as const, value: r.interface }, kind: r.kind, metadata: { ...r.metadata }, xdp: r.xdp }
        : { target: { case: 'cgroup' as const, value: r.cgroup }, metadata: { ...r.metadata } },
    ),
  });
}

/** Rules as the config writes them: a YAML (or JSON) list, or a mapping with an `auto_attach` list. */
export function readAutoAttachRules(text: string, source: string): AutoAttachRule[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `${source}: invalid YAML: ${(e as Error).message}`, { cause: e });
  }
  if (doc && typeof doc === 'object' && !Array.isArray(doc) && 'auto_attach' in doc) return parseAutoAttachRules((doc as { auto_attach: unknown }).auto_attach, `${source}: auto_attach`);
  if (doc !== null && doc !== undefined && !Array.isArray(doc))
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `${source}: expected a list of rules (or a mapping with an auto_attach list)`);
  return parseAutoAttachRules(doc ?? [], source);
}

/** Rules in the config file's shape (`auto_attach:` and its list), defaults left out. */
export function writeAutoAttachRules(rules: readonly AutoAttachRule[]): string {
  const list = rules.map((r) =>
    isInterfaceRule(r)
      ? { interface: r.interface, ...(r.kind !== 'any' ? { kind: r.kind } : {}), ...(Object.keys(r.metadata).length ? { metadata: r.metadata } : {}), ...(r.xdp ? { xdp: true } : {}) }
      : { cgroup: r.cgroup, ...(Object.keys(r.metadata).length ? { metadata: r.metadata } : {}) },
  );
  return stringifyYaml({ auto_attach: list });
}
