import { normalizeDomain, parseDomainPattern } from './domain-name';
import { PolicyError, inputText, quote } from './policy-error';
import type { DnsConfigInput, DnsMode, DnsState, DomainDecision, DomainRule, RuleAction } from './types';

/** A set of allow/deny domain rules with O(labels) decisions. */
export interface DomainRuleSet {
  /** Add a rule; a rule with the same (domain, includeSubdomains, action) is replaced. `domain` may be written `*.x`. */
  add(rule: DomainRule): void;
  /** Remove every rule at that name (allow and deny, exact and subdomain); returns how many were removed. */
  remove(domain: string): number;
  /**
   * Decide a name by netfence.v1's walk (spec/netfence-v1-compat.md): from the name up
   * through its parents, the first name where any rule matches decides; there a deny rule
   * (exact or subdomain) beats an allow rule. A subdomain rule also covers its apex.
   * No match at any level: verdict 'none'. Throws NETFENCE_ERR_INVALID_DOMAIN on a bad name.
   */
  decide(name: string): DomainDecision;
  rules(): DomainRule[];
  readonly size: number;
}

// Each slot holds the (frozen) decision a matching rule produces, so decide() allocates nothing.
interface Node {
  exactAllow?: DomainDecision;
  exactDeny?: DomainDecision;
  subAllow?: DomainDecision;
  subDeny?: DomainDecision;
}

const NONE: DomainDecision = Object.freeze({ verdict: 'none' });

function decision(rule: DomainRule): DomainDecision {
  return Object.freeze({ verdict: rule.action, rule });
}

function checkAction(action: unknown, rule: unknown): RuleAction {
  if (action !== 'allow' && action !== 'deny') {
    throw new PolicyError('NETFENCE_ERR_INVALID_RULE', `invalid rule action ${quote(action)} in ${quote(rule)}`, {
      input: inputText(rule),
    });
  }
  return action;
}

// Rules live in a hash table keyed by a 32-bit hash of the name, computed
// right to left so that one pass over a queried name yields the hash of every
// suffix at its label boundaries: decide() is O(length of the name), with one
// table probe per label and no string allocation, whatever the number of rules.
interface Slot extends Node {
  readonly domain: string;
  next: Slot | undefined; // hash chain
}

// keys are masked to 30 bits so that V8 keeps them as small integers (no heap numbers)
const SMI_MASK = 0x3fffffff;

function suffixHash(name: string): number {
  let h = 0;
  for (let i = name.length - 1; i >= 0; i--) h = (Math.imul(h, 31) + name.charCodeAt(i)) | 0;
  return h & SMI_MASK;
}

class DomainRuleSetImpl implements DomainRuleSet {
  private readonly table = new Map<number, Slot>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  private find(domain: string, h: number): Slot | undefined {
    for (let s = this.table.get(h); s !== undefined; s = s.next) if (s.domain === domain) return s;
    return undefined;
  }

  add(rule: DomainRule): void {
    if (typeof rule !== 'object' || rule === null) {
      throw new PolicyError('NETFENCE_ERR_INVALID_RULE', `invalid domain rule ${quote(rule)}`, { input: inputText(rule) });
    }
    const action = checkAction(rule.action, rule);
    const p = parseDomainPattern(rule.domain, rule.includeSubdomains === true);
    const frozen: DomainRule = Object.freeze({ domain: p.domain, includeSubdomains: p.includeSubdomains, action });
    const h = suffixHash(p.domain);
    let node = this.find(p.domain, h);
    if (!node) {
      node = { domain: p.domain, next: this.table.get(h) };
      this.table.set(h, node);
    }
    const key = p.includeSubdomains
      ? action === 'allow'
        ? 'subAllow'
        : 'subDeny'
      : action === 'allow'
        ? 'exactAllow'
        : 'exactDeny';
    if (node[key] === undefined) this.count++;
    node[key] = decision(frozen);
  }

  remove(domain: string): number {
    const name = parseDomainPattern(domain).domain;
    const h = suffixHash(name);
    let prev: Slot | undefined;
    for (let node = this.table.get(h); node !== undefined; prev = node, node = node.next) {
      if (node.domain !== name) continue;
      if (prev) prev.next = node.next;
      else if (node.next) this.table.set(h, node.next);
      else this.table.delete(h);
      const n =
        (node.exactAllow ? 1 : 0) + (node.exactDeny ? 1 : 0) + (node.subAllow ? 1 : 0) + (node.subDeny ? 1 : 0);
      this.count -= n;
      return n;
    }
    return 0;
  }

  decide(name: string): DomainDecision {
    const n = normalizeDomain(name);
    const len = n.length;
    const table = this.table;
    // Walk right to left. At each label boundary the hash covers the suffix to
    // the right of it; a subdomain rule there matches. Longer suffixes come later,
    // so the last match found is the most specific one.
    let best: DomainDecision | undefined;
    let h = 0;
    for (let i = len - 1; i >= 0; i--) {
      const c = n.charCodeAt(i);
      if (c === 46 /* . */) {
        const sufLen = len - i - 1;
        for (let s = table.get(h & SMI_MASK); s !== undefined; s = s.next) {
          if (s.domain.length === sufLen && n.endsWith(s.domain)) {
            const d = s.subDeny ?? s.subAllow;
            if (d !== undefined) best = d;
            break;
          }
        }
      }
      h = (Math.imul(h, 31) + c) | 0;
    }
    // the whole name: exact and subdomain rules (which cover their apex) both match here;
    // a deny of either kind beats an allow of either kind
    for (let s = table.get(h & SMI_MASK); s !== undefined; s = s.next) {
      if (s.domain === n) {
        const d = s.exactDeny ?? s.subDeny ?? s.exactAllow ?? s.subAllow;
        if (d !== undefined) return d;
        break;
      }
    }
    return best ?? NONE;
  }

  rules(): DomainRule[] {
    const out: DomainRule[] = [];
    for (const head of this.table.values()) {
      for (let node: Slot | undefined = head; node !== undefined; node = node.next) {
        for (const d of [node.exactAllow, node.exactDeny, node.subAllow, node.subDeny]) {
          if (d?.rule) out.push(d.rule);
        }
      }
    }
    return out;
  }
}

/** Create a domain rule set, optionally filled with `rules`. */
export function createDomainRuleSet(rules?: Iterable<DomainRule>): DomainRuleSet {
  const set = new DomainRuleSetImpl();
  if (rules) for (const r of rules) set.add(r);
  return set;
}

/** The rule set of a DNS state or DNS config (allowDomains -> allow, denyDomains -> deny). */
export function domainRuleSetFromDns(dns: DnsState | DnsConfigInput): DomainRuleSet {
  const set = new DomainRuleSetImpl();
  for (const d of dns.allowDomains) set.add({ domain: d.domain, includeSubdomains: d.includeSubdomains, action: 'allow' });
  for (const d of dns.denyDomains) set.add({ domain: d.domain, includeSubdomains: d.includeSubdomains, action: 'deny' });
  return set;
}

/**
 * The verdict a name no rule matches gets in a DNS mode (netfence.v1: an allowlist refuses
 * it, a denylist forwards it). In proxy mode the control plane decides; locally (for learned
 * addresses) a name is kept unless a rule denies it, as in a denylist.
 */
export function noMatchVerdict(mode: DnsMode): 'allow' | 'deny' {
  return mode === 'allowlist' ? 'deny' : 'allow';
}

/**
 * Whether a domain decision lets the name through: a matching rule decides; no match gets
 * `noMatch` (noMatchVerdict(mode), or a control plane's own proxy default). The one place
 * this rule is written: dns-filter, policy-engine and the reference control plane use it.
 */
export function passesDns(verdict: DomainDecision['verdict'], noMatch: 'allow' | 'deny'): boolean {
  return verdict === 'none' ? noMatch === 'allow' : verdict === 'allow';
}
