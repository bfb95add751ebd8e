// Auto-attach rules (config `auto_attach`, DaemonService Get/SetAutoAttachRules): which
// interfaces and cgroups the daemon attaches to by itself as they appear, and with what
// metadata. Pure: the rules, their validation and matching; auto-attach.ts drives them from
// the kernel's events.
//
// What a rule may never do by accident: a glob never matches the loopback, a device that
// carries a default route (the host's uplink), or a device that is not a veth, tap or tun
// (a physical NIC, a bridge, a bond): those match only a rule that names them exactly.

import picomatch from 'picomatch';
import { posix } from 'node:path';
import { z } from 'zod';
import { DaemonError } from './daemon-error';

/** The interface kinds a rule may ask for; `any` is any of veth, tap, tun. */
export const AUTO_KINDS = ['tap', 'tun', 'veth', 'any'] as const;
export type AutoKind = (typeof AUTO_KINDS)[number];

export interface InterfaceRule {
  readonly interface: string;
  readonly kind: AutoKind;
  readonly metadata: Readonly<Record<string, string>>;
  readonly xdp: boolean;
}

export interface CgroupRule {
  readonly cgroup: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export type AutoAttachRule = InterfaceRule | CgroupRule;

/** Bounds: a rule set is configuration, not data. */
export const AUTO_LIMITS = { rules: 64, pattern: 512, metadataPairs: 32, metadataText: 1024 } as const;

const metadata = z
  .record(z.string().min(1).max(AUTO_LIMITS.metadataText), z.string().max(AUTO_LIMITS.metadataText))
  .refine((m) => Object.keys(m).length <= AUTO_LIMITS.metadataPairs, `at most ${AUTO_LIMITS.metadataPairs} metadata pairs`)
  .default({});

const interfaceRule = z
  .object({
    interface: z.string().min(1).max(AUTO_LIMITS.pattern),
    kind: z.enum(AUTO_KINDS).default('any'),
    metadata,
    xdp: z.boolean().default(false),
  })
  .strict();

const cgroupRule = z
  .object({
    cgroup: z
      .string()
      .min(2)
      .max(AUTO_LIMITS.pattern)
      .refine((p) => p.startsWith('/'), 'an absolute path (a glob under the cgroup2 mount)')
      .refine((p) => !/[*?[\]{}]/.test(posix.dirname(p)), 'wildcards only in the last path component (its directory is watched)'),
    metadata,
  })
  .strict();

/** One rule: the shape is chosen by its target key, so an error names the field that is wrong. */
const rule = z.unknown().transform((v, ctx): AutoAttachRule => {
  const o = (v ?? {}) as Record<string, unknown>;
  const both = typeof o === 'object' && 'interface' in o && 'cgroup' in o;
  const schema = typeof o === 'object' && 'interface' in o && !both ? interfaceRule : typeof o === 'object' && 'cgroup' in o && !both ? cgroupRule : undefined;
  if (!schema) {
    ctx.addIssue({ code: 'custom', message: 'a rule has exactly one of `interface` (a glob on names) or `cgroup` (a glob on paths)' });
    return z.NEVER;
  }
  const r = schema.safeParse(v);
  if (!r.success) {
    for (const i of r.error.issues) ctx.addIssue({ code: 'custom', message: i.message, path: i.path as (string | number)[] });
    return z.NEVER;
  }
  return r.data;
});

/** The `auto_attach` list of the config file (and of SetAutoAttachRules). */
export const autoAttachSchema = z.array(rule).max(AUTO_LIMITS.rules).default([]);

/** Validates a rule list as a whole; the error names the rule. */
export function parseAutoAttachRules(input: unknown, source: string): AutoAttachRule[] {
  const r = autoAttachSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i?.path.length ? `${source}[${i.path.join('.')}]` : source;
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `${where}: ${i?.message ?? 'invalid auto-attach rules'}`);
  }
  return r.data;
}

export const isInterfaceRule = (r: AutoAttachRule): r is InterfaceRule => 'interface' in r;

const hasGlob = (p: string): boolean => /[*?[\]{}]/.test(p);
const matchers = new WeakMap<AutoAttachRule, (s: string) => boolean>();
function matcher(r: AutoAttachRule): (s: string) => boolean {
  let m = matchers.get(r);
  if (!m) {
    const pattern = isInterfaceRule(r) ? r.interface : r.cgroup;
    m = hasGlob(pattern) ? picomatch(pattern, { dot: true }) : (s: string) => s === pattern;
    matchers.set(r, m);
  }
  return m;
}

/** An interface as the kernel describes it (from @netfence/netlink). */
export interface LinkFacts {
  readonly name: string;
  /** IFLA_INFO_KIND: veth, tun (tun and tap), ...; undefined for a physical device or lo. */
  readonly kind: string | undefined;
  /** ARPHRD_ETHER (1) for a tap or a veth, ARPHRD_NONE (65534) for a tun, ARPHRD_LOOPBACK (772). */
  readonly arphrd: number;
}

const ARPHRD_ETHER = 1;
const ARPHRD_NONE = 65534;
const ARPHRD_LOOPBACK = 772;

/** The kind a rule sees: tap, tun, veth, or undefined (anything else). */
export function linkKind(l: LinkFacts): Exclude<AutoKind, 'any'> | undefined {
  if (l.kind === 'veth') return 'veth';
  if (l.kind === 'tun') return l.arphrd === ARPHRD_NONE ? 'tun' : l.arphrd === ARPHRD_ETHER ? 'tap' : undefined;
  return undefined;
}

/**
 * The first interface rule that matches this link, or undefined. `protectedNames` are the
 * host's own devices (default-route devices): like the loopback and devices of other kinds,
 * only a rule naming them exactly matches them.
 */
export function matchInterface(rules: readonly AutoAttachRule[], link: LinkFacts, protectedNames: ReadonlySet<string>): InterfaceRule | undefined {
  const kind = linkKind(link);
  const guarded = link.arphrd === ARPHRD_LOOPBACK || protectedNames.has(link.name) || kind === undefined;
  for (const r of rules) {
    if (!isInterfaceRule(r) || !matcher(r)(link.name)) continue;
    if (guarded && hasGlob(r.interface)) continue;
    if (r.kind !== 'any' && r.kind !== kind && !(guarded && !hasGlob(r.interface))) continue;
    return r;
  }
  return undefined;
}

/** The first cgroup rule that matches this cgroup path, or undefined. */
export function matchCgroup(rules: readonly AutoAttachRule[], path: string): CgroupRule | undefined {
  for (const r of rules) if (!isInterfaceRule(r) && matcher(r)(path)) return r;
  return undefined;
}

/** The directories the cgroup rules need watched (the parent of each pattern). */
export function cgroupWatchDirs(rules: readonly AutoAttachRule[]): string[] {
  return [...new Set(rules.filter((r): r is CgroupRule => !isInterfaceRule(r)).map((r) => posix.dirname(r.cgroup)))];
}

/** `s` cut to at most `max` UTF-8 bytes, on a character boundary. */
function cutBytes(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = Buffer.from(s).subarray(0, max).toString('utf8');
  while (Buffer.byteLength(out) > max || out.endsWith('\ufffd')) out = out.slice(0, -1);
  return out;
}

/**
 * A rule's metadata for one target: `{name}` (interface), `{basename}` and `{path}` (cgroup)
 * filled in. Each key and value is cut to AUTO_LIMITS.metadataText bytes after filling (a
 * value of many `{path}`s would otherwise grow far beyond what a rule holds).
 */
export function ruleMetadata(r: AutoAttachRule, target: string): Record<string, string> {
  const vars: Record<string, string> = isInterfaceRule(r) ? { name: target } : { basename: posix.basename(target), path: target };
  const fill = (s: string) => cutBytes(s.replace(/\{(name|basename|path)\}/g, (whole, k: string) => vars[k] ?? whole), AUTO_LIMITS.metadataText);
  return Object.fromEntries(Object.entries(r.metadata).map(([k, v]) => [fill(k), fill(v)]));
}

/** How a rule reads in List and logs: its pattern. */
export function rulePattern(r: AutoAttachRule): string {
  return isInterfaceRule(r) ? `interface:${r.interface}` : `cgroup:${r.cgroup}`;
}
