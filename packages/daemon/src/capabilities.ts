import { readFileSync } from 'node:fs';
import { DaemonError } from './daemon-error';

/** Capability numbers (linux/capability.h). */
export const CAP = { NET_ADMIN: 12, SYS_PTRACE: 19, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;
export type CapabilityName = `CAP_${keyof typeof CAP}`;

/**
 * What netfenced needs, and why (the README lists these):
 * - CAP_BPF: create maps, load programs, pin to bpffs;
 * - CAP_NET_ADMIN: TC/TCX and cgroup-skb/sock-addr programs, attaching them;
 * - CAP_PERFMON: the socket iterators that sever connections (tracing programs);
 * - CAP_SYS_ADMIN: entering a workload's network namespace (setns) to sever its connections.
 */
export const REQUIRED_CAPABILITIES: readonly CapabilityName[] = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN'];

/**
 * Recommended, not required: CAP_SYS_PTRACE lets the daemon open /proc/<pid>/ns/net of a
 * workload process running as another user, to reset (sever) its TCP connections to a removed
 * address. Without it those sockets are not reset, but it fails closed: the cgroup_skb
 * backstop still drops every packet of the removed flow. A missing one is a warning at start.
 */
export const RECOMMENDED_CAPABILITIES: readonly CapabilityName[] = ['CAP_SYS_PTRACE'];

/** The effective capability set from the text of /proc/<pid>/status (CapEff, hex). */
export function parseCapEff(status: string): bigint {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  if (!m) throw new DaemonError('NETFENCE_ERR_INTERNAL', 'no CapEff line in /proc/self/status');
  return BigInt(`0x${m[1]}`);
}

/** The names in `required` that the capability set `eff` lacks. */
export function missingCapabilities(eff: bigint, required: readonly CapabilityName[] = REQUIRED_CAPABILITIES): CapabilityName[] {
  return required.filter((name) => ((eff >> BigInt(CAP[name.slice(4) as keyof typeof CAP])) & 1n) === 0n);
}

/** Fails with NETFENCE_ERR_PERMISSION naming every missing capability. */
export function checkCapabilities(status: string = readFileSync('/proc/self/status', 'utf8')): void {
  const missing = missingCapabilities(parseCapEff(status));
  if (missing.length)
    throw new DaemonError('NETFENCE_ERR_PERMISSION', `netfenced lacks ${missing.join(', ')} (it needs ${REQUIRED_CAPABILITIES.join(', ')}): run it as root or grant them, e.g. systemd AmbientCapabilities=`);
}

/** Recommended capabilities this process lacks, each with what it costs (for a warning at start). */
export function capabilityWarnings(status: string = readFileSync('/proc/self/status', 'utf8')): string[] {
  return missingCapabilities(parseCapEff(status), RECOMMENDED_CAPABILITIES).map(
    (name) => `${name} is missing: connections of workload processes running as another user are not reset when their address is removed (their packets are still dropped)`,
  );
}

/**
 * A kernel EPERM (what bpf(2) and the attach calls return without the capabilities), whatever
 * wraps it. EACCES is not taken for one: the verifier uses it for a rejected program.
 */
export function isPermissionError(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const x = c as { errno?: unknown; code?: unknown };
    if (x.errno === 1 || x.errno === -1 || x.code === 'EPERM') return true;
  }
  return false;
}

/** A datapath error caused by missing privileges, re-told with the capabilities it takes (others unchanged). */
export function withCapabilityHint(e: DaemonError): DaemonError {
  if (!isPermissionError(e)) return e;
  return new DaemonError('NETFENCE_ERR_PERMISSION', `${e.message.replace(/^NETFENCE_ERR_[A-Z_]+: /, '')} (the kernel said EPERM: netfenced needs ${REQUIRED_CAPABILITIES.join(', ')})`, { cause: e });
}
