import { parseAddress, parseCidr } from './cidr';
import { normalizeDomain, parseDomainPattern } from './domain-name';
import { domainRuleSetFromDns, noMatchVerdict, passesDns } from './domain-rules';
import { PolicyError, inputText, quote } from './policy-error';
import type {
  AttachmentPolicyState,
  CidrEntryInput,
  CidrRule,
  DnsConfigInput,
  DnsMode,
  DnsState,
  DomainEntryInput,
  LearnedAddress,
  PolicyCommand,
  PolicyMode,
} from './types';

export const POLICY_MODES: readonly PolicyMode[] = Object.freeze(['disabled', 'allowlist', 'denylist', 'block_all']);
export const DNS_MODES: readonly DnsMode[] = Object.freeze(['disabled', 'allowlist', 'denylist', 'proxy']);

/** Validate a policy mode ('unspecified' or anything else -> NETFENCE_ERR_INVALID_MODE). */
export function checkPolicyMode(mode: unknown): PolicyMode {
  if (typeof mode === 'string' && (POLICY_MODES as readonly string[]).includes(mode)) return mode as PolicyMode;
  throw new PolicyError(
    'NETFENCE_ERR_INVALID_MODE',
    `invalid policy mode ${quote(mode)}: expected one of ${POLICY_MODES.join(', ')}`,
    { input: inputText(mode) },
  );
}

/** Validate a DNS mode ('unspecified' or anything else -> NETFENCE_ERR_INVALID_MODE). */
export function checkDnsMode(mode: unknown): DnsMode {
  if (typeof mode === 'string' && (DNS_MODES as readonly string[]).includes(mode)) return mode as DnsMode;
  throw new PolicyError('NETFENCE_ERR_INVALID_MODE', `invalid DNS mode ${quote(mode)}: expected one of ${DNS_MODES.join(', ')}`, {
    input: inputText(mode),
  });
}

// ---------------------------------------------------------------------------
// internal mutable working copy

type DomainEntry = { domain: string; includeSubdomains: boolean };

interface Work {
  mode: PolicyMode;
  dryRun: boolean;
  allow: Map<string, CidrRule>;
  deny: Map<string, CidrRule>;
  dnsMode: DnsMode;
  allowDomains: Map<string, DomainEntry>;
  denyDomains: Map<string, DomainEntry>;
  upstreamServers: string[];
  learned: LearnedAddress[];
}

const domainKey = (d: DomainEntry): string => (d.includeSubdomains ? `*.${d.domain}` : d.domain);

function toWork(s: AttachmentPolicyState): Work {
  return {
    mode: s.mode,
    dryRun: s.dryRun,
    allow: new Map(s.allowCidrs.map((r) => [r.cidr, r])),
    deny: new Map(s.denyCidrs.map((r) => [r.cidr, r])),
    dnsMode: s.dns.mode,
    allowDomains: new Map(s.dns.allowDomains.map((d) => [domainKey(d), d])),
    denyDomains: new Map(s.dns.denyDomains.map((d) => [domainKey(d), d])),
    upstreamServers: [...s.dns.upstreamServers],
    learned: [...s.learned],
  };
}

const frozen = <T extends object>(x: T): T => (Object.isFrozen(x) ? x : Object.freeze({ ...x }));

function freezeState(w: Work): AttachmentPolicyState {
  const dns: DnsState = Object.freeze({
    mode: w.dnsMode,
    allowDomains: Object.freeze([...w.allowDomains.values()].map(frozen)),
    denyDomains: Object.freeze([...w.denyDomains.values()].map(frozen)),
    upstreamServers: Object.freeze([...w.upstreamServers]),
  });
  return Object.freeze({
    mode: w.mode,
    dryRun: w.dryRun,
    allowCidrs: Object.freeze([...w.allow.values()].map(frozen)),
    denyCidrs: Object.freeze([...w.deny.values()].map(frozen)),
    dns,
    learned: Object.freeze(w.learned.map(frozen)),
  });
}

/** mode 'disabled', DNS 'disabled', no rules, nothing learned, not dry-run. */
export function emptyState(): AttachmentPolicyState {
  return freezeState({
    mode: 'disabled',
    dryRun: false,
    allow: new Map(),
    deny: new Map(),
    dnsMode: 'disabled',
    allowDomains: new Map(),
    denyDomains: new Map(),
    upstreamServers: [],
    learned: [],
  });
}

// ---------------------------------------------------------------------------
// validation of command parts

function badCommand(what: string, input: unknown, cause?: unknown): PolicyError {
  return new PolicyError('NETFENCE_ERR_INVALID_COMMAND', `${what}: ${quote(input)}`, { input: inputText(input), cause });
}

function checkNow(nowMs: unknown): number {
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) throw badCommand('nowMs must be a finite number', nowMs);
  return nowMs;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Validate a CIDR entry into a rule (canonical prefix, absolute expiry). */
export function cidrRuleOf(entry: CidrEntryInput, nowMs: number): CidrRule {
  if (!isObject(entry)) throw badCommand('a CIDR entry must be an object {cidr, ttlMs?}', entry);
  const cidr = parseCidr(entry.cidr as string).text;
  const ttl = entry.ttlMs;
  if (ttl === undefined || ttl === 0) return { cidr };
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) {
    throw new PolicyError('NETFENCE_ERR_INVALID_TTL', `invalid TTL ${quote(ttl)} on CIDR ${quote(entry.cidr)}: ms >= 0`, {
      input: inputText(ttl),
    });
  }
  return { cidr, expiresAt: nowMs + ttl };
}

function domainEntryOf(entry: DomainEntryInput): DomainEntry {
  if (!isObject(entry)) throw badCommand('a domain entry must be an object {domain, includeSubdomains}', entry);
  if (entry.includeSubdomains !== undefined && typeof entry.includeSubdomains !== 'boolean') {
    throw badCommand('includeSubdomains must be a boolean', entry);
  }
  return parseDomainPattern(entry.domain as string, entry.includeSubdomains === true);
}

function cidrList(list: unknown, what: string): readonly CidrEntryInput[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw badCommand(`${what} must be an array`, list);
  return list as CidrEntryInput[];
}

interface ParsedDns {
  mode: DnsMode;
  allowDomains: DomainEntry[];
  denyDomains: DomainEntry[];
  upstreamServers: string[];
}

function parseDnsConfig(dns: unknown): ParsedDns {
  if (!isObject(dns)) throw badCommand('dns must be an object {mode, allowDomains, denyDomains, upstreamServers}', dns);
  const mode = checkDnsMode(dns.mode);
  const list = (x: unknown, what: string): unknown[] => {
    if (x === undefined) return [];
    if (!Array.isArray(x)) throw badCommand(`dns.${what} must be an array`, x);
    return x;
  };
  const allowDomains = list(dns.allowDomains, 'allowDomains').map((d) => domainEntryOf(d as DomainEntryInput));
  const denyDomains = list(dns.denyDomains, 'denyDomains').map((d) => domainEntryOf(d as DomainEntryInput));
  const upstreamServers = list(dns.upstreamServers, 'upstreamServers').map((u) => checkUpstream(u));
  return { mode, allowDomains, denyDomains, upstreamServers };
}

function checkUpstream(u: unknown): string {
  if (typeof u !== 'string' || u.length === 0 || u.length > 300 || /\s/.test(u)) {
    throw badCommand('an upstream server must be a non-empty string without spaces', u);
  }
  return u;
}

// ---------------------------------------------------------------------------
// learned addresses and DNS config changes

function dnsRulesKey(w: Pick<Work, 'dnsMode' | 'allowDomains' | 'denyDomains'>): string {
  return JSON.stringify([w.dnsMode, [...w.allowDomains.keys()].sort(), [...w.denyDomains.keys()].sort()]);
}

/**
 * After a DNS config change, keep only learned addresses whose name the new
 * config still lets through: none when DNS is disabled; in allowlist mode the
 * name must be allowed by a rule; in denylist and proxy mode it must not be denied.
 */
function revalidateLearned(w: Work): void {
  if (w.learned.length === 0) return;
  if (w.dnsMode === 'disabled') {
    w.learned = [];
    return;
  }
  const rules = domainRuleSetFromDns({
    mode: w.dnsMode,
    allowDomains: [...w.allowDomains.values()],
    denyDomains: [...w.denyDomains.values()],
    upstreamServers: [],
  });
  const cache = new Map<string, boolean>();
  const noMatch = noMatchVerdict(w.dnsMode);
  w.learned = w.learned.filter((l) => {
    let keep = cache.get(l.name);
    if (keep === undefined) {
      keep = passesDns(rules.decide(l.name).verdict, noMatch);
      cache.set(l.name, keep);
    }
    return keep;
  });
}

// ---------------------------------------------------------------------------
// applyCommand

/**
 * Apply one control command to a state and return the new state (the input is
 * not modified). Everything is validated before anything changes: a command with
 * one bad part throws a PolicyError and changes nothing.
 *
 * - setMode / setDnsMode: mode 'unspecified' (or anything not a mode) -> NETFENCE_ERR_INVALID_MODE.
 * - allowCidr / denyCidr: adds or replaces (new TTL) the prefix; a prefix in the other list moves.
 * - removeCidr: removes that exact prefix from both lists (absent: no change).
 * - allowDomain / denyDomain: adds the rule; the same (domain, includeSubdomains) in the other list moves.
 * - removeDomain: removes every rule at that name (exact and subdomain) from both lists.
 * - bulkUpdate: replaces mode, CIDRs, DNS config and dry-run (missing dns = DNS disabled, no rules;
 *   missing dryRun = false). Learned addresses are kept (they are DNS facts, not config).
 * - subscribedAck: applies its config on top of the current state: mode replaced; its CIDRs and
 *   domain rules are added (an entry for a prefix/rule in the other list moves); its dns, when present,
 *   replaces the DNS mode (and the upstream servers when it lists some); dryRun when present.
 * - Whenever the DNS mode or domain rules change, learned addresses whose name the new DNS config no
 *   longer lets through are dropped (all of them when DNS becomes disabled).
 */
export function applyCommand(state: AttachmentPolicyState, cmd: PolicyCommand, nowMs: number): AttachmentPolicyState {
  checkNow(nowMs);
  if (!isObject(cmd)) throw badCommand('a command must be an object with a type', cmd);
  const w = toWork(state);
  const before = dnsRulesKey(w);
  switch (cmd.type) {
    case 'setMode':
      w.mode = checkPolicyMode(cmd.mode);
      break;
    case 'setDryRun':
      if (typeof (cmd.dryRun as unknown) !== 'boolean') throw badCommand('setDryRun needs a boolean dryRun', cmd.dryRun);
      w.dryRun = cmd.dryRun;
      break;
    case 'allowCidr': {
      const r = cidrRuleOf(cmd.entry, nowMs);
      w.deny.delete(r.cidr);
      w.allow.delete(r.cidr);
      w.allow.set(r.cidr, r);
      break;
    }
    case 'denyCidr': {
      const r = cidrRuleOf(cmd.entry, nowMs);
      w.allow.delete(r.cidr);
      w.deny.delete(r.cidr);
      w.deny.set(r.cidr, r);
      break;
    }
    case 'removeCidr': {
      const c = parseCidr(cmd.cidr).text;
      w.allow.delete(c);
      w.deny.delete(c);
      break;
    }
    case 'setDnsMode':
      w.dnsMode = checkDnsMode(cmd.mode);
      break;
    case 'allowDomain': {
      const d = domainEntryOf(cmd.entry);
      const k = domainKey(d);
      w.denyDomains.delete(k);
      w.allowDomains.set(k, d);
      break;
    }
    case 'denyDomain': {
      const d = domainEntryOf(cmd.entry);
      const k = domainKey(d);
      w.allowDomains.delete(k);
      w.denyDomains.set(k, d);
      break;
    }
    case 'removeDomain': {
      const name = parseDomainPattern(cmd.domain).domain;
      for (const k of [name, `*.${name}`]) {
        w.allowDomains.delete(k);
        w.denyDomains.delete(k);
      }
      break;
    }
    case 'bulkUpdate': {
      const mode = checkPolicyMode(cmd.mode);
      const allow = cidrList(cmd.allowCidrs, 'allowCidrs').map((e) => cidrRuleOf(e, nowMs));
      const deny = cidrList(cmd.denyCidrs, 'denyCidrs').map((e) => cidrRuleOf(e, nowMs));
      const dns: ParsedDns =
        cmd.dns === undefined || cmd.dns === null
          ? { mode: 'disabled', allowDomains: [], denyDomains: [], upstreamServers: [] }
          : parseDnsConfig(cmd.dns);
      if (cmd.dryRun !== undefined && typeof cmd.dryRun !== 'boolean') throw badCommand('dryRun must be a boolean', cmd.dryRun);
      w.mode = mode;
      w.dryRun = cmd.dryRun ?? false;
      w.allow = new Map(allow.map((r) => [r.cidr, r]));
      w.deny = new Map(deny.map((r) => [r.cidr, r]));
      w.dnsMode = dns.mode;
      w.allowDomains = new Map(dns.allowDomains.map((d) => [domainKey(d), d]));
      w.denyDomains = new Map(dns.denyDomains.map((d) => [domainKey(d), d]));
      w.upstreamServers = dns.upstreamServers;
      break;
    }
    case 'subscribedAck': {
      const mode = checkPolicyMode(cmd.mode);
      const allow = cidrList(cmd.allowCidrs, 'allowCidrs').map((e) => cidrRuleOf(e, nowMs));
      const deny = cidrList(cmd.denyCidrs, 'denyCidrs').map((e) => cidrRuleOf(e, nowMs));
      const dns = cmd.dns === undefined || cmd.dns === null ? undefined : parseDnsConfig(cmd.dns);
      if (cmd.dryRun !== undefined && typeof cmd.dryRun !== 'boolean') throw badCommand('dryRun must be a boolean', cmd.dryRun);
      w.mode = mode;
      if (cmd.dryRun !== undefined) w.dryRun = cmd.dryRun;
      // the ack's entries override the current entries for the same prefix
      for (const r of allow) w.deny.delete(r.cidr);
      for (const r of deny) w.allow.delete(r.cidr);
      for (const r of allow) w.allow.set(r.cidr, r);
      for (const r of deny) w.deny.set(r.cidr, r);
      if (dns) {
        w.dnsMode = dns.mode;
        for (const d of dns.allowDomains) w.denyDomains.delete(domainKey(d));
        for (const d of dns.denyDomains) w.allowDomains.delete(domainKey(d));
        for (const d of dns.allowDomains) w.allowDomains.set(domainKey(d), d);
        for (const d of dns.denyDomains) w.denyDomains.set(domainKey(d), d);
        if (dns.upstreamServers.length > 0) w.upstreamServers = dns.upstreamServers;
      }
      break;
    }
    default:
      throw badCommand('unknown command type', (cmd as { type?: unknown }).type);
  }
  if (dnsRulesKey(w) !== before) revalidateLearned(w);
  return freezeState(w);
}

// ---------------------------------------------------------------------------
// learned addresses, expiry

export interface LearnOptions {
  /** TTLs below this are raised to it (default 0). */
  readonly minTtlSec?: number;
  /** TTLs above this are lowered to it (default: no limit). */
  readonly maxTtlSec?: number;
}

/**
 * Position of each (address, name) in a learned list. Owned by one list at a time: learning
 * hands it from the old list to the new one (existing entries keep their positions), so a
 * daemon that learns answer after answer pays for the answer, not for everything learned.
 * A list whose index was handed on rebuilds one when it is learned from again.
 */
const learnedPositions = new WeakMap<readonly LearnedAddress[], Map<string, number>>();

const learnedKey = (address: string, name: string): string => `${address} ${name}`;

/**
 * Per learned list: each address's latest-expiring entry (for learnedFrom, asked on every drop
 * event). Handed from list to list by learnAddresses like the positions above.
 */
const learnedIndex = new WeakMap<readonly LearnedAddress[], Map<string, LearnedAddress>>();

function positionsOf(learned: readonly LearnedAddress[]): Map<string, number> {
  const owned = learnedPositions.get(learned);
  if (owned) {
    learnedPositions.delete(learned);
    return owned;
  }
  const index = new Map<string, number>();
  learned.forEach((l, i) => index.set(learnedKey(l.address, l.name), i));
  return index;
}

/**
 * Validates one DNS answer for learning: the canonical name, its distinct canonical addresses
 * (answer order) and the absolute expiry of the clamped TTL. One bad address rejects it whole.
 */
export function checkLearnInput(
  input: { name: string; addresses: readonly string[]; ttlSec: number },
  nowMs: number,
  opts: LearnOptions = {},
): { name: string; addresses: string[]; expiresAt: number } {
  checkNow(nowMs);
  if (!isObject(input)) throw badCommand('learnAddresses needs {name, addresses, ttlSec}', input);
  const name = normalizeDomain(input.name);
  if (!Array.isArray(input.addresses)) throw badCommand('addresses must be an array', input.addresses);
  const addresses = [...new Set(input.addresses.map((a) => parseAddress(a).text))];
  const ttl = input.ttlSec;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) {
    throw new PolicyError('NETFENCE_ERR_INVALID_TTL', `invalid TTL ${quote(ttl)} for ${quote(name)}: seconds >= 0`, {
      input: inputText(ttl),
    });
  }
  const min = opts.minTtlSec ?? 0;
  const max = opts.maxTtlSec ?? Infinity;
  const clamped = Math.min(Math.max(ttl, min), max);
  return { name, addresses, expiresAt: nowMs + clamped * 1000 };
}

/**
 * Record addresses from a DNS answer for `name`, expiring after the (clamped) TTL.
 * One entry per (address, name): learning again extends the expiry (never shortens it).
 * Every address is validated first: one bad address changes nothing.
 *
 * Existing entries keep their positions in `learned` and new ones are appended, so the
 * entries after the old state's length are exactly the (address, name) pairs this answer
 * added. Cost: O(addresses in the answer) when called on the latest state (amortised),
 * O(learned) when an older state is learned from again.
 */
export function learnAddresses(
  state: AttachmentPolicyState,
  input: { name: string; addresses: readonly string[]; ttlSec: number },
  nowMs: number,
  opts: LearnOptions = {},
): AttachmentPolicyState {
  const { name, addresses, expiresAt } = checkLearnInput(input, nowMs, opts);
  if (addresses.length === 0) return state;
  const index = positionsOf(state.learned);
  let learned: LearnedAddress[] | undefined; // copied on the first change
  const changed: LearnedAddress[] = [];
  for (const address of addresses) {
    const k = learnedKey(address, name);
    const i = index.get(k);
    if (i !== undefined && state.learned[i]!.expiresAt >= expiresAt) continue;
    learned ??= [...state.learned];
    const entry = Object.freeze({ address, name, expiresAt });
    changed.push(entry);
    if (i === undefined) {
      index.set(k, learned.length);
      learned.push(entry);
    } else {
      learned[i] = entry;
    }
  }
  if (!learned) {
    learnedPositions.set(state.learned, index);
    return state;
  }
  Object.freeze(learned);
  learnedPositions.set(learned, index);
  const byAddress = learnedIndex.get(state.learned);
  if (byAddress) {
    learnedIndex.delete(state.learned);
    // changed entries are new or later-expiring versions of old ones
    for (const l of changed) {
      const best = byAddress.get(l.address);
      if (best === undefined || l.expiresAt >= best.expiresAt) byAddress.set(l.address, l);
    }
    learnedIndex.set(learned, byAddress);
  }
  return Object.freeze({ ...state, learned });
}

export interface ExpireOptions {
  /** Last time (ms, same clock) the datapath saw traffic to this host prefix (canonical text). */
  readonly lastSeenMs?: (cidr: string) => number | undefined;
  /** A learned address seen within this many ms of now is kept (default 0). */
  readonly graceMs?: number;
}

/**
 * Drop static CIDRs whose expiresAt <= nowMs, and learned addresses whose expiresAt <= nowMs
 * unless lastSeenMs(address) is within graceMs of nowMs; such a kept address gets
 * expiresAt = lastSeen + graceMs (so nextExpiry() stays in the future). Returns the same
 * object when nothing changed.
 */
export function expireState(state: AttachmentPolicyState, nowMs: number, opts: ExpireOptions = {}): AttachmentPolicyState {
  checkNow(nowMs);
  const grace = opts.graceMs ?? 0;
  const live = (r: CidrRule): boolean => r.expiresAt === undefined || r.expiresAt > nowMs;
  const allowCidrs = state.allowCidrs.filter(live);
  const denyCidrs = state.denyCidrs.filter(live);
  let learnedChanged = false;
  const learned: LearnedAddress[] = [];
  for (const l of state.learned) {
    if (l.expiresAt > nowMs) {
      learned.push(l);
      continue;
    }
    learnedChanged = true;
    const seen = opts.lastSeenMs?.(l.address);
    if (seen !== undefined && Number.isFinite(seen) && seen + grace > nowMs) {
      learned.push(Object.freeze({ ...l, expiresAt: seen + grace }));
    }
  }
  if (!learnedChanged && allowCidrs.length === state.allowCidrs.length && denyCidrs.length === state.denyCidrs.length) {
    return state;
  }
  return Object.freeze({
    ...state,
    allowCidrs: Object.freeze(allowCidrs),
    denyCidrs: Object.freeze(denyCidrs),
    learned: Object.freeze(learned),
  });
}

/** The earliest expiresAt in the state (static CIDRs and learned addresses), or undefined. */
export function nextExpiry(state: AttachmentPolicyState): number | undefined {
  let min: number | undefined;
  const see = (t: number | undefined): void => {
    if (t !== undefined && (min === undefined || t < min)) min = t;
  };
  for (const r of state.allowCidrs) see(r.expiresAt);
  for (const r of state.denyCidrs) see(r.expiresAt);
  for (const l of state.learned) see(l.expiresAt);
  return min;
}

/**
 * The DNS name an address was learned from (when several names resolved to it, the one whose
 * entry expires last; any of those on a tie), or undefined (also for an unparsable address).
 * Amortised O(1) on the latest state: the index is handed on by learnAddresses.
 */
export function learnedFrom(state: AttachmentPolicyState, address: string): string | undefined {
  let text: string;
  try {
    text = parseAddress(address).text;
  } catch {
    return undefined;
  }
  // Called for every drop event: index the state once instead of scanning it each time.
  let index = learnedIndex.get(state.learned);
  if (!index) {
    index = new Map();
    for (const l of state.learned) {
      const best = index.get(l.address);
      if (best === undefined || l.expiresAt >= best.expiresAt) index.set(l.address, l);
    }
    learnedIndex.set(state.learned, index);
  }
  return index.get(text)?.name;
}

// ---------------------------------------------------------------------------
// parseState

function stateError(path: string, why: string, value: unknown, cause?: unknown): PolicyError {
  return new PolicyError('NETFENCE_ERR_INVALID_STATE', `invalid saved state at ${path}: ${why} (got ${quote(value)})`, {
    input: path,
    cause,
  });
}

function at<T>(path: string, value: unknown, f: (v: unknown) => T): T {
  try {
    return f(value);
  } catch (e) {
    if (e instanceof PolicyError && e.code === 'NETFENCE_ERR_INVALID_STATE') throw e;
    const pe = PolicyError.from(e);
    throw stateError(path, pe.message.replace(/^NETFENCE_ERR_[A-Z_]+: /, ''), value, pe);
  }
}

function optNumber(path: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw stateError(path, 'expected a finite number', v);
  return v;
}

function arrayAt(path: string, v: unknown, optional: boolean): unknown[] {
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) throw stateError(path, 'expected an array', v);
  return v;
}

/**
 * Validate a saved state (an object, or its JSON text) and return it as a frozen
 * state with canonical prefixes and names. Throws NETFENCE_ERR_INVALID_STATE naming
 * the key path (e.g. `allowCidrs[3].cidr`). Unknown keys are ignored; a missing
 * `dryRun` is false and a missing `learned` is empty.
 */
export function parseState(json: unknown): AttachmentPolicyState {
  let v = json;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw stateError('$', 'not valid JSON', json, e);
    }
  }
  if (!isObject(v)) throw stateError('$', 'expected an object', v);
  const mode = at('mode', v.mode, checkPolicyMode);
  const dryRun = v.dryRun === undefined ? false : v.dryRun;
  if (typeof dryRun !== 'boolean') throw stateError('dryRun', 'expected a boolean', dryRun);
  const cidrs = (key: 'allowCidrs' | 'denyCidrs'): Map<string, CidrRule> => {
    const m = new Map<string, CidrRule>();
    arrayAt(key, v[key], false).forEach((r, i) => {
      const p = `${key}[${i}]`;
      if (!isObject(r)) throw stateError(p, 'expected an object {cidr, expiresAt?}', r);
      const cidr = at(`${p}.cidr`, r.cidr, (x) => parseCidr(x as string).text);
      const expiresAt = optNumber(`${p}.expiresAt`, r.expiresAt);
      m.set(cidr, expiresAt === undefined ? { cidr } : { cidr, expiresAt });
    });
    return m;
  };
  const allow = cidrs('allowCidrs');
  const deny = cidrs('denyCidrs');
  const dns = v.dns;
  if (!isObject(dns)) throw stateError('dns', 'expected an object', dns);
  const dnsMode = at('dns.mode', dns.mode, checkDnsMode);
  const domains = (key: 'allowDomains' | 'denyDomains'): Map<string, DomainEntry> => {
    const m = new Map<string, DomainEntry>();
    arrayAt(`dns.${key}`, dns[key], false).forEach((d, i) => {
      const p = `dns.${key}[${i}]`;
      if (!isObject(d)) throw stateError(p, 'expected an object {domain, includeSubdomains}', d);
      if (typeof d.includeSubdomains !== 'boolean') throw stateError(`${p}.includeSubdomains`, 'expected a boolean', d.includeSubdomains);
      const e = at(`${p}.domain`, d.domain, (x) => parseDomainPattern(x as string, d.includeSubdomains as boolean));
      m.set(domainKey(e), e);
    });
    return m;
  };
  const allowDomains = domains('allowDomains');
  const denyDomains = domains('denyDomains');
  const upstreamServers = arrayAt('dns.upstreamServers', dns.upstreamServers, false).map((u, i) =>
    at(`dns.upstreamServers[${i}]`, u, checkUpstream),
  );
  const learned: LearnedAddress[] = [];
  const seen = new Set<string>();
  arrayAt('learned', v.learned, true).forEach((l, i) => {
    const p = `learned[${i}]`;
    if (!isObject(l)) throw stateError(p, 'expected an object {address, name, expiresAt}', l);
    const address = at(`${p}.address`, l.address, (x) => parseAddress(x as string).text);
    const name = at(`${p}.name`, l.name, (x) => normalizeDomain(x as string));
    const expiresAt = optNumber(`${p}.expiresAt`, l.expiresAt);
    if (expiresAt === undefined) throw stateError(`${p}.expiresAt`, 'expected a finite number', l.expiresAt);
    const k = `${address} ${name}`;
    if (seen.has(k)) throw stateError(p, `duplicate learned address ${address} for ${name}`, l);
    seen.add(k);
    learned.push({ address, name, expiresAt });
  });
  return freezeState({
    mode,
    dryRun,
    allow,
    deny,
    dnsMode,
    allowDomains,
    denyDomains,
    upstreamServers,
    learned,
  });
}

