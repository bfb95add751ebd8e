// The YAML policy file: parsing with line positions, validation (zod for the
// shape, @netfence/policy-engine for rules), and compilation into per-policy
// PolicyConfig values.

import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { parseRuleLine, PolicyError } from '@netfence/policy-engine';
import type {
  CidrEntryInput,
  DnsMode,
  DomainEntryInput,
  PolicyConfig,
  PolicyMode,
  ParsedRule,
} from '@netfence/policy-engine';
import { ControlPlaneError, formatIssue } from './errors';
import type { PolicyIssue } from './errors';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const DnsSchema = z
  .object({
    mode: z.enum(['disabled', 'allowlist', 'denylist', 'proxy']).default('disabled'),
    upstreams: z.array(z.string().min(1)).default([]),
    /** Proxy mode: the verdict for a name no rule matches. */
    proxy_default: z.enum(['allow', 'deny']).default('deny'),
  })
  .strict();

const PolicySchema = z
  .object({
    name: z.string().regex(NAME_RE, 'must be 1-63 characters of [A-Za-z0-9._-], starting alphanumeric'),
    match: z.record(z.string(), z.string()).default({}),
    mode: z.enum(['allowlist', 'denylist', 'block_all', 'disabled']),
    dry_run: z.boolean().default(false),
    dns: DnsSchema.default({ mode: 'disabled', upstreams: [], proxy_default: 'deny' }),
    rules: z.array(z.string()).default([]),
  })
  .strict();

const FileSchema = z
  .object({
    version: z.literal(1).optional(),
    policies: z.array(PolicySchema),
  })
  .strict();

/** The policy file as written (after defaults), e.g. from YAML or passed as an object. */
export type PolicyDocument = z.input<typeof FileSchema>;
/** One policy as written. */
export type PolicyDocumentEntry = z.input<typeof PolicySchema>;

/** A validated policy, ready to hand out. */
export interface CompiledPolicy {
  readonly name: string;
  /** Every key must equal the attachment's metadata value; empty = matches everything. */
  readonly match: Readonly<Record<string, string>>;
  /** The config every attachment this policy selects gets. */
  readonly config: PolicyConfig;
  /** DNS proxy mode: verdict for names no rule matches. */
  readonly proxyDefault: 'allow' | 'deny';
  /** Rule lines as written. */
  readonly rules: readonly string[];
}

/** A validated policy file. */
export interface PolicySet {
  readonly file: string;
  readonly policies: readonly CompiledPolicy[];
  /** sha256 of the source text (or of the JSON of an inline document). */
  readonly hash: string;
}

/** The config given to an attachment no policy selects: block everything. */
export const NO_MATCH_CONFIG: PolicyConfig = Object.freeze({
  mode: 'block_all',
  dryRun: false,
  allowCidrs: [],
  denyCidrs: [],
  dns: { mode: 'disabled', allowDomains: [], denyDomains: [], upstreamServers: [] },
}) as PolicyConfig;

/** The identity of a rule line inside a policy (ttl ignored): `allow cidr 10.0.0.0/16`. */
export function ruleKey(rule: ParsedRule): string {
  if (rule.kind === 'cidr') return `${rule.action} cidr ${rule.cidr}`;
  return `${rule.action} domain ${rule.includeSubdomains ? '*.' : ''}${rule.domain}`;
}

export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

type Locator = (path: readonly PropertyKey[], childKey?: string) => { line: number; column: number };

function validUpstream(s: string): boolean {
  if (isIP(s)) return true;
  const m6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s);
  if (m6) return isIP(m6[1] ?? '') === 6 && Number(m6[2]) > 0 && Number(m6[2]) < 65536;
  const m4 = /^([^:]+):(\d{1,5})$/.exec(s);
  if (m4) return isIP(m4[1] ?? '') === 4 && Number(m4[2]) > 0 && Number(m4[2]) < 65536;
  return false;
}

function compile(raw: unknown, file: string, locate: Locator, hash: string): PolicySet {
  const issues: PolicyIssue[] = [];
  const issue = (path: readonly PropertyKey[], message: string, childKey?: string): void => {
    const pos = locate(path, childKey);
    const key = childKey === undefined ? keyPath(path) : keyPath([...path, childKey]);
    issues.push({ file, line: pos.line, column: pos.column, key, message });
  };
  const parsed = FileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const path = i.path as PropertyKey[];
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys) issue(path, 'unknown key', k);
      } else {
        issue(path, i.message);
      }
    }
    throw invalid(file, issues);
  }
  const policies: CompiledPolicy[] = [];
  const names = new Set<string>();
  let catchAllAt: number | undefined;
  parsed.data.policies.forEach((p, pi) => {
    const base = ['policies', pi];
    if (names.has(p.name)) issue([...base, 'name'], `duplicate policy name "${p.name}"`);
    names.add(p.name);
    if (catchAllAt !== undefined) {
      issue([...base, 'match'], `policy "${p.name}" is unreachable: policies[${catchAllAt}] has an empty match and selects everything`);
    }
    if (Object.keys(p.match).length === 0 && catchAllAt === undefined) catchAllAt = pi;
    p.dns.upstreams.forEach((u, ui) => {
      if (!validUpstream(u)) issue([...base, 'dns', 'upstreams', ui], `invalid upstream "${u}" (want IP, IPv4:port or [IPv6]:port)`);
    });
    const allowCidrs: CidrEntryInput[] = [];
    const denyCidrs: CidrEntryInput[] = [];
    const allowDomains: DomainEntryInput[] = [];
    const denyDomains: DomainEntryInput[] = [];
    const seen = new Set<string>();
    p.rules.forEach((line, ri) => {
      let rule: ParsedRule;
      try {
        rule = parseRuleLine(line);
      } catch (e) {
        const pe = PolicyError.from(e);
        issue([...base, 'rules', ri], pe.message);
        return;
      }
      const k = ruleKey(rule);
      if (seen.has(k)) {
        issue([...base, 'rules', ri], `duplicate rule "${line}"`);
        return;
      }
      seen.add(k);
      if (rule.kind === 'cidr') {
        const entry: CidrEntryInput = rule.ttlMs ? { cidr: rule.cidr, ttlMs: rule.ttlMs } : { cidr: rule.cidr };
        (rule.action === 'allow' ? allowCidrs : denyCidrs).push(entry);
      } else {
        if (p.dns.mode === 'disabled') {
          issue([...base, 'rules', ri], `domain rule "${line}" needs dns.mode allowlist, denylist or proxy (dns.mode is disabled)`);
          return;
        }
        const entry: DomainEntryInput = { domain: rule.domain, includeSubdomains: rule.includeSubdomains };
        (rule.action === 'allow' ? allowDomains : denyDomains).push(entry);
      }
    });
    const config: PolicyConfig = {
      mode: p.mode as PolicyMode,
      dryRun: p.dry_run,
      allowCidrs,
      denyCidrs,
      dns: { mode: p.dns.mode as DnsMode, allowDomains, denyDomains, upstreamServers: [...p.dns.upstreams] },
    };
    policies.push({ name: p.name, match: { ...p.match }, config, proxyDefault: p.dns.proxy_default, rules: [...p.rules] });
  });
  if (issues.length > 0) throw invalid(file, issues);
  return { file, policies, hash };
}

function invalid(file: string, issues: PolicyIssue[]): ControlPlaneError {
  return new ControlPlaneError(
    'NETFENCE_ERR_POLICY_INVALID',
    `invalid policy file ${file}:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`,
    { issues },
  );
}

function nodeAt(doc: Document, path: readonly PropertyKey[]): { node: unknown; depth: number } {
  for (let d = path.length; d >= 0; d--) {
    const node = d === 0 ? doc.contents : doc.getIn(path.slice(0, d) as unknown[], true);
    if (node && typeof node === 'object' && 'range' in node && (node as YamlNode).range) return { node, depth: d };
  }
  return { node: undefined, depth: 0 };
}

function makeLocator(doc: Document, lc: LineCounter): Locator {
  return (path, childKey) => {
    const { node, depth } = nodeAt(doc, path);
    let offset = 0;
    if (node) {
      offset = (node as YamlNode).range?.[0] ?? 0;
      if (childKey !== undefined && depth === path.length && isMap(node)) {
        const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === childKey);
        const k = pair && isScalar(pair.key) ? pair.key.range : undefined;
        if (k) offset = k[0];
      }
    }
    const pos = lc.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
}

/** Parses and validates policy YAML text. Throws ControlPlaneError NETFENCE_ERR_POLICY_INVALID naming file:line:col and key. */
export function parsePolicyText(text: string, file = '<policy>'): PolicySet {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const hash = createHash('sha256').update(text).digest('hex');
  if (doc.errors.length > 0) {
    const issues: PolicyIssue[] = doc.errors.map((e) => {
      const pos = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      return { file, line: pos.line, column: pos.col, key: '', message: `YAML syntax: ${e.message.split('\n')[0] ?? e.code}` };
    });
    throw invalid(file, issues);
  }
  return compile(doc.toJS(), file, makeLocator(doc, lc), hash);
}

/** Validates a policy document given as an object (no line numbers). */
export function compilePolicyDocument(doc: unknown, file = '<inline>'): PolicySet {
  const hash = createHash('sha256').update(JSON.stringify(doc ?? null)).digest('hex');
  return compile(doc, file, () => ({ line: 0, column: 0 }), hash);
}

/** First policy (file order) whose match is a subset of the metadata; undefined = none. */
export function selectPolicy(set: PolicySet, metadata: Readonly<Record<string, string>>): CompiledPolicy | undefined {
  for (const p of set.policies) {
    let ok = true;
    for (const [k, v] of Object.entries(p.match)) {
      if (metadata[k] !== v) {
        ok = false;
        break;
      }
    }
    if (ok) return p;
  }
  return undefined;
}

// ---- editing (admin API): keeps comments via the yaml Document API ----

function findPolicyNode(doc: Document, name: string): { index: number } | undefined {
  const seq = doc.get('policies', true);
  if (!isSeq(seq)) return undefined;
  for (let i = 0; i < seq.items.length; i++) {
    const item = seq.items[i];
    if (isMap(item) && item.get('name') === name) return { index: i };
  }
  return undefined;
}

/** Adds a rule line to policy `name` in YAML text; returns the new text. */
export function addRuleToText(text: string, name: string, ruleLine: string): string {
  const rule = parseRuleLine(ruleLine); // throws PolicyError on a bad rule
  const doc = parseDocument(text);
  const found = findPolicyNode(doc, name);
  if (!found) throw new ControlPlaneError('NETFENCE_ERR_POLICY_NOT_FOUND', `no policy named "${name}"`);
  const rules = doc.getIn(['policies', found.index, 'rules'], true);
  if (isSeq(rules)) {
    for (const it of rules.items) {
      const v = isScalar(it) ? it.value : it;
      if (typeof v === 'string' && sameRule(v, rule)) {
        throw new ControlPlaneError('NETFENCE_ERR_RULE_EXISTS', `policy "${name}" already has rule "${v}"`);
      }
    }
    rules.add(doc.createNode(ruleLine.trim()));
  } else {
    doc.setIn(['policies', found.index, 'rules'], doc.createNode([ruleLine.trim()]));
  }
  return doc.toString();
}

/** Removes the rule equal to `ruleLine` (same action and target; ttl ignored) from policy `name`. */
export function removeRuleFromText(text: string, name: string, ruleLine: string): string {
  const rule = parseRuleLine(ruleLine);
  const doc = parseDocument(text);
  const found = findPolicyNode(doc, name);
  if (!found) throw new ControlPlaneError('NETFENCE_ERR_POLICY_NOT_FOUND', `no policy named "${name}"`);
  const rules = doc.getIn(['policies', found.index, 'rules'], true);
  if (isSeq(rules)) {
    for (let i = 0; i < rules.items.length; i++) {
      const it = rules.items[i];
      const v = isScalar(it) ? it.value : it;
      if (typeof v === 'string' && sameRule(v, rule)) {
        rules.delete(i);
        return doc.toString();
      }
    }
  }
  throw new ControlPlaneError('NETFENCE_ERR_RULE_NOT_FOUND', `policy "${name}" has no rule "${ruleLine}"`);
}

function sameRule(line: string, rule: ParsedRule): boolean {
  try {
    return ruleKey(parseRuleLine(line)) === ruleKey(rule);
  } catch {
    return false;
  }
}

/** Same edits on an inline document object (returns a new object). */
export function editInlineDocument(doc: PolicyDocument, name: string, ruleLine: string, op: 'add' | 'remove'): PolicyDocument {
  const rule = parseRuleLine(ruleLine);
  const policies = doc.policies.map((p) => ({ ...p, rules: [...(p.rules ?? [])] }));
  const p = policies.find((x) => x.name === name);
  if (!p) throw new ControlPlaneError('NETFENCE_ERR_POLICY_NOT_FOUND', `no policy named "${name}"`);
  const idx = p.rules.findIndex((r) => sameRule(r, rule));
  if (op === 'add') {
    if (idx >= 0) throw new ControlPlaneError('NETFENCE_ERR_RULE_EXISTS', `policy "${name}" already has rule "${p.rules[idx]}"`);
    p.rules.push(ruleLine.trim());
  } else {
    if (idx < 0) throw new ControlPlaneError('NETFENCE_ERR_RULE_NOT_FOUND', `policy "${name}" has no rule "${ruleLine}"`);
    p.rules.splice(idx, 1);
  }
  return { ...doc, policies };
}
