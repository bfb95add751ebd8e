import { parseCidr } from './cidr';
import { createCidrTable, type CidrTable } from './cidr-table';
import { PolicyError, quote, inputText } from './policy-error';
import type { AttachmentPolicyState, Cidr, KernelOp, KernelView, PolicyMode } from './types';

/** What the kernel maps must hold: allow = static allow CIDRs ∪ learned addresses, deny = deny CIDRs. */
export function kernelView(state: AttachmentPolicyState): KernelView {
  const allow = new Set<string>();
  for (const r of state.allowCidrs) allow.add(r.cidr);
  for (const l of state.learned) allow.add(l.address);
  const deny = new Set<string>();
  for (const r of state.denyCidrs) deny.add(r.cidr);
  return Object.freeze({ mode: state.mode, dryRun: state.dryRun, allow, deny });
}

/** The view of a freshly attached filter: mode disabled, maps empty. */
export function emptyKernelView(): KernelView {
  return Object.freeze({ mode: 'disabled' as PolicyMode, dryRun: false, allow: new Set<string>(), deny: new Set<string>() });
}

// ---------------------------------------------------------------------------
// datapath semantics (the reference the eBPF programs implement)

/** How one destination is judged by a kernel view. */
export interface KernelVerdict {
  /** The policy's verdict, as if not in dry-run. */
  readonly verdict: 'allow' | 'block';
  /** True when the packet really passes: verdict allow, or dry-run (a 'block' is then only reported). */
  readonly passes: boolean;
  /** What decided: the mode itself, an allow entry, a deny entry, or no entry matched (the mode's default). */
  readonly by: 'mode' | 'allow' | 'deny' | 'no-match';
  /** The deciding prefix when `by` is 'allow' or 'deny'. */
  readonly cidr?: string;
}

interface Slot {
  allow: boolean;
  deny: boolean;
}

const tables = new WeakMap<KernelView, CidrTable<Slot>>();

function tableOf(view: KernelView): CidrTable<Slot> {
  let t = tables.get(view);
  if (!t) {
    t = createCidrTable<Slot>();
    for (const c of view.allow) {
      const s = t.get(c);
      if (s) s.allow = true;
      else t.set(c, { allow: true, deny: false });
    }
    for (const c of view.deny) {
      const s = t.get(c);
      if (s) s.deny = true;
      else t.set(c, { allow: false, deny: true });
    }
    tables.set(view, t);
  }
  return t;
}

/**
 * Judge a destination exactly as the datapath does (see README "Datapath semantics"):
 * - disabled: allow; block_all: block;
 * - allowlist / denylist: take the longest prefix in allow ∪ deny containing the address
 *   (IPv4 and IPv6 separately; IPv4-mapped IPv6 is IPv4). If it is in deny -> block (deny wins
 *   a tie: a prefix in both maps counts as deny); if in allow -> allow. No match: allowlist
 *   blocks, denylist allows.
 * - dry-run: the verdict is computed as above, but the packet always passes.
 * The view must not be mutated after the first call (a look-up table is cached per view).
 */
export function evaluateKernelView(view: KernelView, address: string | Cidr): KernelVerdict {
  const passes = (verdict: 'allow' | 'block'): boolean => view.dryRun || verdict === 'allow';
  if (view.mode === 'disabled') return { verdict: 'allow', passes: true, by: 'mode' };
  if (view.mode === 'block_all') return { verdict: 'block', passes: passes('block'), by: 'mode' };
  const m = tableOf(view).lookup(typeof address === 'string' ? parseCidr(address) : address);
  if (m) {
    const verdict = m.value.deny ? 'block' : 'allow';
    return { verdict, passes: passes(verdict), by: m.value.deny ? 'deny' : 'allow', cidr: m.cidr.text };
  }
  const verdict = view.mode === 'denylist' ? 'allow' : 'block';
  return { verdict, passes: passes(verdict), by: 'no-match' };
}

/** True when a packet to `address` passes under this view (dry-run passes everything). */
export function kernelAllows(view: KernelView, address: string | Cidr): boolean {
  return evaluateKernelView(view, address).passes;
}

// ---------------------------------------------------------------------------
// the safe plan

type Kind = 'allow_all' | 'block_all' | 'lpm';

function kindOf(v: KernelView): Kind {
  if (v.dryRun || v.mode === 'disabled') return 'allow_all';
  if (v.mode === 'block_all') return 'block_all';
  return 'lpm';
}

function prefixLenOf(cidr: string): number {
  // canonical text ends in '/<len>': read the digits from the end
  let n = 0;
  let mul = 1;
  for (let i = cidr.length - 1; i >= 0 && mul <= 1000; i--) {
    const c = cidr.charCodeAt(i);
    if (c === 47 /* / */) return mul > 1 && n <= 128 ? n : parseCidr(cidr).prefixLen;
    if (c < 48 || c > 57) break;
    n += (c - 48) * mul;
    mul *= 10;
  }
  return parseCidr(cidr).prefixLen;
}

/**
 * Plan the kernel map and mode operations that turn `from` into `to`, ordered so that
 * no intermediate state blocks a destination both `from` and `to` let through, nor lets
 * through one both block (dry-run and disabled count as "everything passes").
 *
 * Map operations: adds go longest prefix first, and at the same prefix the deny entry
 * before the allow entry; deletes go shortest prefix first, allow entry before deny entry.
 * Mode change (mode or dry-run differ):
 * - `from` passes everything or blocks everything: all map operations, then the mode;
 * - else `to` passes everything or blocks everything: the mode, then all map operations;
 * - else (allowlist/denylist to allowlist/denylist): adds, then the mode, then deletes.
 * While the plan runs the maps hold at most |from ∪ to| entries. The proof is in the README.
 */
export function planKernelOps(from: KernelView, to: KernelView): KernelOp[] {
  const addBuckets: KernelOp[][] = [];
  const delBuckets: KernelOp[][] = [];
  const push = (buckets: KernelOp[][], len: number, op: KernelOp): void => {
    (buckets[len] ??= []).push(op);
  };
  // deny-adds first within a length bucket, then allow-adds
  for (const c of to.deny) if (!from.deny.has(c)) push(addBuckets, prefixLenOf(c), { op: 'add', map: 'deny', cidr: c });
  for (const c of to.allow) if (!from.allow.has(c)) push(addBuckets, prefixLenOf(c), { op: 'add', map: 'allow', cidr: c });
  // allow-deletes first within a length bucket, then deny-deletes
  for (const c of from.allow) if (!to.allow.has(c)) push(delBuckets, prefixLenOf(c), { op: 'delete', map: 'allow', cidr: c });
  for (const c of from.deny) if (!to.deny.has(c)) push(delBuckets, prefixLenOf(c), { op: 'delete', map: 'deny', cidr: c });
  const adds: KernelOp[] = [];
  for (let len = 128; len >= 0; len--) {
    const b = addBuckets[len];
    if (b) for (const op of b) adds.push(op);
  }
  const dels: KernelOp[] = [];
  for (let len = 0; len <= 128; len++) {
    const b = delBuckets[len];
    if (b) for (const op of b) dels.push(op);
  }
  if (from.mode === to.mode && from.dryRun === to.dryRun) return [...adds, ...dels];
  const setMode: KernelOp = { op: 'setMode', mode: to.mode, dryRun: to.dryRun };
  const kf = kindOf(from);
  const kt = kindOf(to);
  if (kf !== 'lpm') return [...adds, ...dels, setMode];
  if (kt !== 'lpm') return [setMode, ...adds, ...dels];
  return [...adds, setMode, ...dels];
}

/** Apply planned operations to a view (pure; for tests and dry runs). */
export function applyKernelOps(view: KernelView, ops: readonly KernelOp[]): KernelView {
  let mode = view.mode;
  let dryRun = view.dryRun;
  const allow = new Set(view.allow);
  const deny = new Set(view.deny);
  for (const o of ops) {
    if (o.op === 'setMode') {
      mode = o.mode;
      dryRun = o.dryRun;
      continue;
    }
    const set = o.map === 'allow' ? allow : o.map === 'deny' ? deny : undefined;
    if (!set) throw new PolicyError('NETFENCE_ERR_INVALID_COMMAND', `invalid kernel op ${quote(o)}`, { input: inputText(o) });
    if (o.op === 'add') set.add(o.cidr);
    else if (o.op === 'delete') set.delete(o.cidr);
    else throw new PolicyError('NETFENCE_ERR_INVALID_COMMAND', `invalid kernel op ${quote(o)}`, { input: inputText(o) });
  }
  return Object.freeze({ mode, dryRun, allow, deny });
}
