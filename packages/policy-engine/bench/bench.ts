// Benchmark of @netfence/policy-engine. Run: npm run bench -w @netfence/policy-engine
// Prints figures; asserts nothing. Bounded: about 15 s in total.
import os from 'node:os';
import {
  applyCommand,
  createCidrTable,
  createDomainRuleSet,
  emptyState,
  kernelView,
  learnAddresses,
  LearnedTable,
  parseCidr,
  planKernelOps,
  type Cidr,
  type CidrEntryInput,
  type DomainRule,
} from '../src/index';

// deterministic PRNG (mulberry32)
let seed = 0x9e3779b9;
function rnd(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number): number => Math.floor(rnd() * n);

function rate(label: string, fn: (i: number) => unknown, minMs = 1000): number {
  // warm-up
  for (let i = 0; i < 20_000; i++) fn(i);
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minMs) {
    for (let i = 0; i < 10_000; i++) fn(n + i);
    n += 10_000;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  const perSec = (n / elapsed) * 1000;
  console.log(`${label.padEnd(58)} ${Math.round(perSec).toLocaleString('en-US').padStart(12)} /s`);
  return perSec;
}

console.log(`@netfence/policy-engine benchmark, ${new Date().toISOString()}`);
console.log(`node ${process.version}, ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'}), kernel ${os.release()}`);
console.log('');

// ---------------------------------------------------------------------------
// domain decisions
const words = ['api', 'www', 'cdn', 'files', 'static', 'img', 'login', 'mail'];
function ruleSet(n: number): { rules: DomainRule[]; queries: string[] } {
  const rules: DomainRule[] = [];
  for (let i = 0; i < n; i++) {
    rules.push({ domain: `host${i}.example${i % 97}.com`, includeSubdomains: i % 2 === 0, action: i % 5 === 0 ? 'deny' : 'allow' });
  }
  const queries: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const k = int(n * 2); // half the queries hit a rule, half miss
    queries.push(`${words[int(words.length)]}.host${k}.example${k % 97}.com`);
  }
  return { rules, queries };
}
for (const n of [10, 100_000]) {
  const { rules, queries } = ruleSet(n);
  const set = createDomainRuleSet(rules);
  let hits = 0;
  rate(`domain decisions, ${n.toLocaleString('en-US')} rules (4-label names)`, (i) => {
    if (set.decide(queries[i % queries.length]!).verdict !== 'none') hits++;
  });
  if (hits < 0) console.log(hits);
}

// ---------------------------------------------------------------------------
// CIDR look-ups
function randomV4Prefix(): string {
  const len = 8 + int(25);
  return `${int(224)}.${int(256)}.${int(256)}.${int(256)}/${len}`;
}
function randomV6Prefix(): string {
  const g = (): string => int(0x10000).toString(16);
  return `2001:db8:${g()}:${g()}:${g()}:${g()}::/${32 + int(97)}`;
}
for (const [family, gen] of [
  ['IPv4', randomV4Prefix],
  ['IPv6', randomV6Prefix],
] as const) {
  const table = createCidrTable<number>();
  let i = 0;
  while (table.size < 100_000) table.set(gen(), i++);
  const probes: Cidr[] = [];
  const probeText: string[] = [];
  const entries = [...table.entries()];
  for (let k = 0; k < 10_000; k++) {
    // half inside a stored prefix, half random
    const c = k % 2 === 0 ? entries[int(entries.length)]![0] : parseCidr(gen());
    const host = c.text.split('/')[0]!;
    probes.push(parseCidr(host));
    probeText.push(host);
  }
  let found = 0;
  rate(`CIDR look-ups, 100,000 ${family} prefixes (parsed address)`, (k) => {
    if (table.lookup(probes[k % probes.length]!)) found++;
  });
  rate(`CIDR look-ups, 100,000 ${family} prefixes (address string)`, (k) => {
    if (table.lookup(probeText[k % probeText.length]!)) found++;
  });
  if (found < 0) console.log(found);
}

// ---------------------------------------------------------------------------
// plan a BulkUpdate replacing 100,000 entries
{
  const mk = (base: number): CidrEntryInput[] => {
    const out: CidrEntryInput[] = [];
    for (let k = 0; k < 100_000; k++) out.push({ cidr: `${base + (k >> 16)}.${(k >> 8) & 255}.${k & 255}.0/24` });
    return out;
  };
  const oldEntries = mk(10);
  const newEntries = mk(100);
  const s0 = applyCommand(emptyState(), { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: oldEntries, denyCidrs: [] }, 0);
  const v0 = kernelView(s0);
  const now = (): number => Number(process.hrtime.bigint()) / 1e6;
  const runs: { apply: number; view: number; plan: number; ops: number }[] = [];
  for (let r = 0; r < 10; r++) {
    const t0 = now();
    const s1 = applyCommand(s0, { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: newEntries, denyCidrs: [] }, 1);
    const t1 = now();
    const v1 = kernelView(s1);
    const t2 = now();
    const ops = planKernelOps(v0, v1).length;
    const t3 = now();
    runs.push({ apply: t1 - t0, view: t2 - t1, plan: t3 - t2, ops });
  }
  const med = (f: (r: (typeof runs)[number]) => number): number => {
    const xs = runs.slice(1).map(f).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  const line = (label: string, v: number): void => console.log(`${label.padEnd(58)} ${v.toFixed(1).padStart(12)} ms`);
  console.log(`BulkUpdate replacing 100,000 allow entries (${runs[0]!.ops.toLocaleString('en-US')} kernel ops), median of 9 warm runs:`);
  line('  applyCommand(bulkUpdate): validate + new state', med((r) => r.apply));
  line('  kernelView(new state)', med((r) => r.view));
  line('  planKernelOps(old view, new view)', med((r) => r.plan));
  line('  build view + plan', med((r) => r.view + r.plan));
  line('  total (apply + view + plan)', med((r) => r.apply + r.view + r.plan));
  line('  first (cold) run, total', runs[0]!.apply + runs[0]!.view + runs[0]!.plan);
}

// ---------------------------------------------------------------------------
// the DNS answer path: one answer (1 new address) learned, with 0 and 10,000 already learned
{
  const dnsState = applyCommand(emptyState(), { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: { mode: 'allowlist', allowDomains: [{ domain: 'bench.test', includeSubdomains: true }], denyDomains: [], upstreamServers: [] } }, 0);
  const answer = (i: number) => ({ name: `h${i}.bench.test`, addresses: [`10.${100 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}`], ttlSec: 60 });
  for (const preloaded of [0, 10_000]) {
    // learnAddresses on the frozen state (what the daemon used per answer before LearnedTable)
    let st = dnsState;
    for (let i = 0; i < preloaded; i++) st = learnAddresses(st, answer(1_000_000 + i), 0);
    const base = st;
    let k = 0;
    rate(`learnAddresses (frozen state), new name, ${preloaded.toLocaleString('en-US')} learned`, () => {
      st = learnAddresses(st, answer(k++), 0);
      if (k % 1000 === 0) st = base; // stay near `preloaded`
    }, 500);
    const table = new LearnedTable(base.learned);
    let j = 0;
    rate(`LearnedTable plan + apply, new name, ${preloaded.toLocaleString('en-US')} learned`, () => {
      table.apply(table.plan(answer(2_000_000 + j++), 0));
    }, 500);
  }
  // a name rotating through new addresses at its cap of 64: every answer evicts one
  const capped = new LearnedTable([], { maxAddressesPerName: 64 });
  let r = 0;
  rate('LearnedTable, one name rotating at its cap (64): plan + apply + evict', () => {
    const i = r++;
    capped.apply(capped.plan({ name: 'cdn.bench.test', addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], ttlSec: 60 }, i));
  }, 500);
  // what the daemon does per answer: learn it, then ask for the next expiry (to arm its timer)
  for (const preloaded of [10_000, 100_000]) {
    const t = new LearnedTable(Array.from({ length: preloaded }, (_, i) => ({ address: `10.2.${(i >> 8) & 255}.${i & 255}/32`, name: `p${i}.bench.test`, expiresAt: 1e12 + i })));
    let q = 0;
    rate(`LearnedTable plan + apply + nextExpiry, ${preloaded.toLocaleString('en-US')} learned`, () => {
      t.apply(t.plan(answer(3_000_000 + q++), 0));
      t.nextExpiry();
    }, 500);
  }
  // one sweep chunk (256) when 10,000 of 100,000 learned entries have expired
  {
    const t = new LearnedTable(Array.from({ length: 100_000 }, (_, i) => ({ address: `10.3.${(i >> 8) & 255}.${i & 255}/32`, name: `e${i}.bench.test`, expiresAt: i < 10_000 ? 1_000 + i : 1e12 })));
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) t.planExpiry(50_000, { limit: 256 });
    console.log(`${'LearnedTable.planExpiry, a chunk of 256 (10,000 of 100,000 expired)'.padEnd(58)} ${(Number(process.hrtime.bigint() - t1) / 20e6).toFixed(2).padStart(12)} ms`);
  }
  const big = new LearnedTable(Array.from({ length: 10_000 }, (_, i) => ({ address: `10.1.${i >> 8}.${i & 255}/32`, name: `h${i}.bench.test`, expiresAt: 1e12 })));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) big.planExpiry(1);
  console.log(`${'LearnedTable.planExpiry, 10,000 learned (the sweep scan)'.padEnd(58)} ${(Number(process.hrtime.bigint() - t0) / 20e6).toFixed(2).padStart(12)} ms`);
}
