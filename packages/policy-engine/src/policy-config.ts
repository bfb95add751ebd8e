import { compareCidrs, parseCidr } from './cidr';
import { parseDomainPattern } from './domain-name';
import type {
  AttachmentPolicyState,
  CidrEntryInput,
  CidrRule,
  DnsConfigInput,
  DomainEntryInput,
  PolicyCommand,
  PolicyMode,
} from './types';

/** The policy a control plane holds for one attachment (what BulkUpdate carries, plus dry-run). */
export interface PolicyConfig {
  mode: PolicyMode;
  dryRun: boolean;
  allowCidrs: CidrEntryInput[];
  denyCidrs: CidrEntryInput[];
  dns: DnsConfigInput;
}

function sortCidrEntries(list: CidrEntryInput[]): CidrEntryInput[] {
  return list
    .map((e) => ({ e, c: parseCidr(e.cidr) }))
    .sort((a, b) => compareCidrs(a.c, b.c))
    .map(({ e }) => e);
}

function sortDomains(list: { domain: string; includeSubdomains: boolean }[]): DomainEntryInput[] {
  return list
    .map((d) => ({ domain: d.domain, includeSubdomains: d.includeSubdomains }))
    .sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : Number(a.includeSubdomains) - Number(b.includeSubdomains)));
}

/**
 * The config of a state (learned addresses are not config). Lists are sorted.
 * TTLs: with `nowMs`, an entry with an expiry gets ttlMs = max(1, expiresAt - nowMs);
 * without `nowMs`, TTLs are left out (the entries are described as permanent).
 */
export function configOf(state: AttachmentPolicyState, nowMs?: number): PolicyConfig {
  const entry = (r: CidrRule): CidrEntryInput =>
    r.expiresAt !== undefined && nowMs !== undefined ? { cidr: r.cidr, ttlMs: Math.max(1, r.expiresAt - nowMs) } : { cidr: r.cidr };
  return {
    mode: state.mode,
    dryRun: state.dryRun,
    allowCidrs: sortCidrEntries(state.allowCidrs.map(entry)),
    denyCidrs: sortCidrEntries(state.denyCidrs.map(entry)),
    dns: {
      mode: state.dns.mode,
      allowDomains: sortDomains([...state.dns.allowDomains]),
      denyDomains: sortDomains([...state.dns.denyDomains]),
      upstreamServers: [...state.dns.upstreamServers],
    },
  };
}

/** The BulkUpdate command that installs `config` (whole state, dry-run included). */
export function toBulkUpdate(config: PolicyConfig): PolicyCommand {
  return {
    type: 'bulkUpdate',
    mode: config.mode,
    allowCidrs: config.allowCidrs.map((e) => ({ ...e })),
    denyCidrs: config.denyCidrs.map((e) => ({ ...e })),
    dns: {
      mode: config.dns.mode,
      allowDomains: config.dns.allowDomains.map((d) => ({ ...d })),
      denyDomains: config.dns.denyDomains.map((d) => ({ ...d })),
      upstreamServers: [...config.dns.upstreamServers],
    },
    dryRun: config.dryRun,
  };
}

type CidrStatus = { allow?: number | 'none'; deny?: number | 'none' }; // ttl or 'none' (no ttl)

function cidrStatuses(c: PolicyConfig): Map<string, CidrStatus> {
  const m = new Map<string, CidrStatus>();
  const put = (list: readonly CidrEntryInput[], k: 'allow' | 'deny'): void => {
    for (const e of list) {
      const cidr = parseCidr(e.cidr).text;
      const s = m.get(cidr) ?? {};
      s[k] = e.ttlMs ? e.ttlMs : 'none';
      m.set(cidr, s);
    }
  };
  put(c.allowCidrs, 'allow');
  put(c.denyCidrs, 'deny');
  return m;
}

type DomainStatus = { allow: boolean; deny: boolean };

function domainStatuses(c: PolicyConfig): Map<string, Map<boolean, DomainStatus>> {
  const m = new Map<string, Map<boolean, DomainStatus>>();
  const put = (list: readonly DomainEntryInput[], k: 'allow' | 'deny'): void => {
    for (const e of list) {
      const p = parseDomainPattern(e.domain, e.includeSubdomains);
      let byKind = m.get(p.domain);
      if (!byKind) m.set(p.domain, (byKind = new Map()));
      const s = byKind.get(p.includeSubdomains) ?? { allow: false, deny: false };
      s[k] = true;
      byKind.set(p.includeSubdomains, s);
    }
  };
  put(c.dns.allowDomains, 'allow');
  put(c.dns.denyDomains, 'deny');
  return m;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const restrictiveness = (mode: PolicyMode, dryRun: boolean): number =>
  dryRun || mode === 'disabled' ? 0 : mode === 'block_all' ? 2 : 1;

/**
 * A short command list that turns a state whose config is `from` into one whose config is
 * `to` (both CIDR lists, domain rules, modes, dry-run). Falls back to a single bulkUpdate when
 * that is not longer, or when the change cannot be expressed with single commands (upstream
 * servers changed; the same prefix or domain rule in both lists of `to`).
 *
 * Ordering, so the attachment never passes through a state looser than both ends: a mode
 * change towards "allows more" (e.g. to disabled, or dry-run on) comes first; additions come
 * before removals; a mode change towards "blocks more" (e.g. to block_all, dry-run off) comes last.
 */
export function diffConfigs(from: PolicyConfig, to: PolicyConfig): PolicyCommand[] {
  const bulk = (): PolicyCommand[] => [toBulkUpdate(to)];
  if (!sameList(from.dns.upstreamServers, to.dns.upstreamServers)) return bulk();
  const adds: PolicyCommand[] = [];
  const removes: PolicyCommand[] = [];

  // CIDRs
  const fc = cidrStatuses(from);
  const tc = cidrStatuses(to);
  for (const [cidr, t] of tc) {
    const f = fc.get(cidr) ?? {};
    if (f.allow === t.allow && f.deny === t.deny) continue;
    if (t.allow !== undefined && t.deny !== undefined) return bulk(); // both lists: only a bulk can say that
    const k = t.allow !== undefined ? 'allow' : 'deny';
    const ttl = t[k]!;
    const entry: CidrEntryInput = ttl === 'none' ? { cidr } : { cidr, ttlMs: ttl };
    adds.push(k === 'allow' ? { type: 'allowCidr', entry } : { type: 'denyCidr', entry });
  }
  for (const cidr of fc.keys()) if (!tc.has(cidr)) removes.push({ type: 'removeCidr', cidr });

  // domains: removeDomain removes every rule at the name, so a name that loses a rule is
  // removed and its remaining rules added again
  const fd = domainStatuses(from);
  const td = domainStatuses(to);
  const names = new Set([...fd.keys(), ...td.keys()]);
  for (const name of names) {
    const f = fd.get(name) ?? new Map<boolean, DomainStatus>();
    const t = td.get(name) ?? new Map<boolean, DomainStatus>();
    const st = (m: Map<boolean, DomainStatus>, sub: boolean): DomainStatus => m.get(sub) ?? { allow: false, deny: false };
    let needsRemove = false;
    let changed = false;
    for (const sub of [false, true]) {
      const a = st(f, sub);
      const b = st(t, sub);
      if (a.allow === b.allow && a.deny === b.deny) continue;
      changed = true;
      if (b.allow && b.deny) return bulk();
      if (!b.allow && !b.deny) needsRemove = true;
      if (a.allow && a.deny) needsRemove = true; // both -> one: a move cannot drop the other, remove first
    }
    if (!changed) continue;
    if (needsRemove) removes.push({ type: 'removeDomain', domain: name });
    for (const sub of [false, true]) {
      const a = st(f, sub);
      const b = st(t, sub);
      if (!needsRemove && a.allow === b.allow && a.deny === b.deny) continue;
      // allowDomain and denyDomain each move the rule out of the other list, so a rule that
      // must be in both after a removeDomain can only be said by a bulk
      if (b.allow && b.deny) return bulk();
      const entry: DomainEntryInput = { domain: name, includeSubdomains: sub };
      // re-adds after a removeDomain must come after it: put them with the removes
      const target = needsRemove ? removes : adds;
      if (b.allow) target.push({ type: 'allowDomain', entry });
      if (b.deny) target.push({ type: 'denyDomain', entry });
    }
  }

  const first: PolicyCommand[] = [];
  const middle: PolicyCommand[] = [];
  const last: PolicyCommand[] = [];
  const rf = restrictiveness(from.mode, from.dryRun);
  const rt = restrictiveness(to.mode, to.dryRun);
  const modeCmds: PolicyCommand[] = [];
  // dry-run on before a mode change, off after it
  if (to.dryRun && !from.dryRun) first.push({ type: 'setDryRun', dryRun: true });
  if (from.mode !== to.mode) modeCmds.push({ type: 'setMode', mode: to.mode });
  if (rt < rf) first.push(...modeCmds);
  else if (rt > rf) last.push(...modeCmds);
  else middle.push(...modeCmds);
  if (!to.dryRun && from.dryRun) last.push({ type: 'setDryRun', dryRun: false });
  if (from.dns.mode !== to.dns.mode) middle.push({ type: 'setDnsMode', mode: to.dns.mode });

  const cmds = [...first, ...adds, ...middle, ...removes, ...last];
  const bulkSize = 1 + to.allowCidrs.length + to.denyCidrs.length + to.dns.allowDomains.length + to.dns.denyDomains.length;
  // a bulkUpdate also re-validates learned addresses and resets TTLs: use it only when cheaper
  if (cmds.length > bulkSize) return bulk();
  return cmds;
}
