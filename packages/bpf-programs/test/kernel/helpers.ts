// Shared helpers of the kernel tests: a thin policy handle over a loaded
// collection (config, allow/deny entries, stats, events), pin dirs, probes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  attachCgroup,
  attachTcx,
  attachXdp,
  createMap,
  createRingBufferConsumer,
  ifindexOf,
  loadCollection,
  withNetns,
  type BpfLink,
  type BpfMap,
  type Collection,
  type LoadOptions,
  type RingBufferConsumer,
} from '@netfence/bpf-loader';
import { ensureBpffs, type Lab, type LabCgroup, type LabNetns } from '@netfence/lab';
import {
  CGROUP_ATTACH_ORDER,
  CGROUP_ONLY_MAPS,
  decodeEvent,
  decodeRule,
  decodeStats,
  encodeConfig,
  encodeDnsLimit,
  encodeRule,
  encodeSlot,
  decodeDevSlots,
  devBinding,
  encodeDevSlots,
  FIXED_SLOT,
  fixedSlotCgroupObjectPath,
  HOST_MAPS,
  objectPath,
  OBJECTS,
  RULE_TRIES,
  ruleKey,
  STATS,
  sumPerCpuStats,
  TC_PROGRAM_BY_DIRECTION,
  type AttachmentConfig,
  type DnsRateLimit,
  type NetfenceEvent,
  type NetfenceStats,
  type ObjectName,
  type RuleValue,
} from '@netfence/bpf-programs';

export const PROBE = join(__dirname, 'probe.py');
export const SERVERS = join(__dirname, 'servers.py');
export const SWC_REGISTER = join(__dirname, '..', '..', '..', '..', 'tools', 'swc-register.cjs');

/** Kernel tests need root; they fail (never skip) without it. */
export function assertKernelTestable(): void {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (netns, cgroups, BPF)');
  ensureBpffs();
}

/** A test-unique directory under /sys/fs/bpf. */
export function makePinDir(label: string): string {
  const dir = join('/sys/fs/bpf', `nfbp-${label}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
  mkdirSync(dir);
  return dir;
}

export function removePinDir(dir: string): void {
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
}

const u32 = (n: number): Buffer => encodeSlot(n);

/** Binds a device program's direction on `ifindex` to `slot` (0 unbinds), in dev_slots or tc_slots as devBinding says. */
export function bindDevice(coll: Collection, ifindex: number, direction: 'ingress' | 'egress' | 'xdp', slot: number): void {
  const b = devBinding(ifindex, direction);
  const m = coll.map(b.map);
  if (b.kind === 'hash') {
    if (slot) m.update(b.key, u32(slot));
    else m.delete(b.key);
    return;
  }
  const cur = decodeDevSlots(m.lookup(b.key) ?? Buffer.alloc(12));
  m.update(b.key, encodeDevSlots({ ...cur, [direction]: slot }));
}

export interface PolicyOptions extends LoadOptions {
  /** The attachment's slot in the host maps (default FIXED_SLOT, what the fixed-slot cgroup build judges for). */
  readonly slot?: number;
  /** max_entries of the attachment's rules tries (default 65536). */
  readonly ruleEntries?: number;
}

/**
 * One attachment of a loaded program set, with typed helpers (what the daemon's datapath does):
 * its slot's config, DNS limit and counters in the host maps, its own rules tries (created here
 * and put at its slot), its binding to a TC device or a cgroup, and the event ring.
 */
export class Policy {
  readonly events: NetfenceEvent[] = [];
  readonly slot: number;
  readonly tries: { readonly 4: BpfMap; readonly 6: BpfMap };
  #rb: RingBufferConsumer | undefined;

  constructor(
    readonly coll: Collection,
    opts: { slot?: number; ruleEntries?: number } = {},
    /** False for a second attachment of an already loaded set: close() leaves the collection open. */
    private readonly ownsCollection = true,
  ) {
    this.slot = opts.slot ?? FIXED_SLOT;
    const trie = (t: (typeof RULE_TRIES)['v4' | 'v6']) => createMap({ name: t.name, type: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries: opts.ruleEntries ?? 65536, flags: t.flags });
    this.tries = { 4: trie(RULE_TRIES.v4), 6: trie(RULE_TRIES.v6) };
    this.map(HOST_MAPS.rulesV4.name).update(u32(this.slot), u32(this.tries[4].fd));
    this.map(HOST_MAPS.rulesV6.name).update(u32(this.slot), u32(this.tries[6].fd));
  }

  /** Loads an object (`cgroupFixedSlot`: the test build of the cgroup object that judges for FIXED_SLOT). */
  static load(name: ObjectName | 'cgroupFixedSlot', opts: PolicyOptions = {}): Policy {
    const { slot, ruleEntries, ...load } = opts;
    const path = name === 'cgroupFixedSlot' ? fixedSlotCgroupObjectPath() : objectPath(name);
    return new Policy(loadCollection(path, load), { slot, ruleEntries });
  }

  map(name: string): BpfMap {
    return this.coll.map(name);
  }

  setConfig(c: AttachmentConfig): void {
    this.map(HOST_MAPS.config.name).update(u32(this.slot), encodeConfig(c));
  }

  /** Writes the DNS rate limit (a full bucket). */
  setDnsLimit(l: DnsRateLimit): void {
    this.map(HOST_MAPS.dnsLimit.name).update(u32(this.slot), encodeDnsLimit(l));
  }

  /** Makes the TC (or XDP) program judge packets on this device and direction for this attachment. */
  bindTc(ifindex: number, direction: 'ingress' | 'egress' | 'xdp'): void {
    bindDevice(this.coll, ifindex, direction, this.slot);
  }

  /** Attaches the TC program of `direction` to a device (in `netnsPath`), bound to this attachment first. */
  attachTc(opts: { ifname: string; netnsPath: string; direction?: 'ingress' | 'egress' }): BpfLink {
    const direction = opts.direction ?? 'ingress';
    this.bindTc(withNetns(opts.netnsPath, () => ifindexOf(opts.ifname)), direction);
    return attachTcx(this.coll.program(OBJECTS.tc.programs[TC_PROGRAM_BY_DIRECTION[direction]].name), { ifname: opts.ifname, netnsPath: opts.netnsPath, direction, mode: 'tcx' });
  }

  /** Attaches the XDP program to a device (in `netnsPath`), bound to this attachment first (tc_slots, direction xdp). */
  attachXdp(opts: { ifname: string; netnsPath: string; mode?: 'auto' | 'native' | 'generic' }): BpfLink {
    this.bindTc(withNetns(opts.netnsPath, () => ifindexOf(opts.ifname)), 'xdp');
    return attachXdp(this.coll.program(OBJECTS.xdp.programs.filter.name), { ifname: opts.ifname, netnsPath: opts.netnsPath, mode: opts.mode ?? 'auto' });
  }

  /** Attaches the program of a device hook: TC (ingress) or XDP. */
  attachDevice(hook: 'tc' | 'xdp', opts: { ifname: string; netnsPath: string }): BpfLink {
    return hook === 'tc' ? this.attachTc(opts) : this.attachXdp(opts);
  }

  /** Attaches every cgroup program to a cgroup in the daemon's order: storage first, then the slot, then the judges. */
  attachCgroup(cgroupPath: string): BpfLink[] {
    const links: BpfLink[] = [];
    const one = (k: keyof typeof OBJECTS.cgroup.programs) => links.push(attachCgroup(this.coll.program(OBJECTS.cgroup.programs[k].name), { cgroup: cgroupPath }));
    for (const k of CGROUP_ATTACH_ORDER.storage) one(k);
    const id = statSync(cgroupPath, { bigint: true }).ino;
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(id);
    this.map(CGROUP_ONLY_MAPS.cgSlot.name).update(key, encodeSlot(this.slot, 8));
    for (const k of CGROUP_ATTACH_ORDER.judging) one(k);
    return links;
  }

  /** Writes a rules entry as given. */
  setRule(cidr: string, v: Omit<RuleValue, 'prefixLen'>): void {
    const k = ruleKey(cidr);
    this.tries[k.family].update(k.key, encodeRule({ ...v, prefixLen: k.prefix.prefixLen }));
  }

  /** The entry of exactly this prefix (a trie look-up answers the longest match: checked against the prefix). */
  rule(cidr: string): RuleValue | undefined {
    const k = ruleKey(cidr);
    const v = this.tries[k.family].lookup(k.key);
    const r = v === undefined ? undefined : decodeRule(v);
    return r?.prefixLen === k.prefix.prefixLen ? r : undefined;
  }

  /** Puts prefixes on a list (an entry on both lists denies). */
  private add(list: 'allow' | 'deny', cidrs: readonly string[]): void {
    for (const c of cidrs) {
      const held = this.rule(c);
      this.setRule(c, { allow: list === 'allow' || !!held?.allow, deny: list === 'deny' || !!held?.deny, lastSeenNs: held?.lastSeenNs ?? 0n, expiresS: held?.expiresS ?? 0 });
    }
  }

  allow(...cidrs: string[]): void {
    this.add('allow', cidrs);
  }

  deny(...cidrs: string[]): void {
    this.add('deny', cidrs);
  }

  /** Takes a prefix off a list; true when it was on it. */
  remove(list: 'allow' | 'deny', cidr: string): boolean {
    const held = this.rule(cidr);
    if (!held?.[list]) return false;
    const k = ruleKey(cidr);
    const rest = { ...held, [list]: false };
    if (rest.allow || rest.deny) this.tries[k.family].update(k.key, encodeRule(rest));
    else this.tries[k.family].delete(k.key);
    return true;
  }

  lastSeen(cidr: string): bigint | undefined {
    return this.rule(cidr)?.lastSeenNs;
  }

  stats(): NetfenceStats {
    const v = this.map(HOST_MAPS.stats.name).lookup(u32(this.slot));
    return decodeStats(v ? sumPerCpuStats(v) : new Array<bigint>(STATS.COUNT).fill(0n));
  }

  /** Starts collecting ring buffer events into `events`. */
  watch(): void {
    if (this.#rb) return;
    this.#rb = createRingBufferConsumer(this.map(HOST_MAPS.events.name), (rec) => this.events.push(decodeEvent(rec)), { intervalMs: 10 });
  }

  /** Consumes what is pending now and returns (and clears) the collected events. */
  drain(): NetfenceEvent[] {
    this.#rb?.consume();
    return this.events.splice(0);
  }

  close(): void {
    this.#rb?.close();
    this.#rb = undefined;
    this.tries[4].close();
    this.tries[6].close();
    if (this.ownsCollection) this.coll.close();
  }

  /** Another attachment (slot) of the same loaded program set. */
  sibling(slot: number): Policy {
    return new Policy(this.coll, { slot }, false);
  }
}

export type Probe =
  | { readonly kind: 'tcp'; readonly addr: string; readonly port: number; readonly timeout?: number }
  | { readonly kind: 'udp'; readonly addr: string; readonly port: number; readonly timeout?: number; readonly connect?: boolean }
  | { readonly kind: 'ping'; readonly addr: string; readonly timeout?: number }
  | { readonly kind: 'tcp-hold'; readonly addr: string; readonly port: number };

export interface ProbeResult {
  readonly ok: boolean;
  /** errno name (EPERM, ETIMEDOUT, ECONNREFUSED, ...) or 'timeout'. */
  readonly err?: string;
  /** Reply payload (servers answer with their tag). */
  readonly data?: string;
  /** [address, port] the reply came from (UDP). */
  readonly from?: [string, number];
}

/**
 * Starts a process in the namespace and (optionally) the cgroup. The lab's own
 * ns.spawn(…, {cgroup}) passes the netns path to the command as its first
 * argument (its `sh -c` lacks a `shift`), so cgroup spawns go through here;
 * the process is killed on lab close.
 */
export function spawnIn(lab: Lab, ns: LabNetns, cmd: string, args: readonly string[], cgroup?: LabCgroup): ChildProcess {
  if (!cgroup) return ns.spawn(cmd, args);
  const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && ns="$1" && shift && exec nsenter --net="$ns" -- "$@"', cgroup.path, ns.path, cmd, ...args], {
    stdio: 'pipe',
  });
  lab.defer(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Runs probes concurrently from a namespace (optionally inside a cgroup) and returns their results. */
export function probe(lab: Lab, ns: LabNetns, probes: readonly Probe[], cgroup?: LabCgroup): Promise<ProbeResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawnIn(lab, ns, 'python3', [PROBE, JSON.stringify(probes)], cgroup);
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`probe exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out) as ProbeResult[]);
      } catch (e) {
        reject(new Error(`bad probe output ${JSON.stringify(out)} ${err}`, { cause: e }));
      }
    });
  });
}

export interface ServerSpec {
  readonly proto: 'tcp' | 'udp';
  readonly addr: string;
  readonly port: number;
  readonly tag: string;
}

/** Starts tagged echo servers (TCP and UDP) in a namespace; resolves once they listen. */
export function startServers(ns: LabNetns, specs: readonly ServerSpec[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = ns.spawn('python3', ['-u', SERVERS, JSON.stringify(specs)]);
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`servers did not start: ${out} ${err}`)), 5000);
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`servers exited ${code}: ${err}`));
    });
  });
}

/** Runs a TypeScript file in a fresh node process (swc on the fly), optionally in a netns. */
export function runTsChild(file: string, args: readonly string[], opts: { netnsPath?: string; timeoutMs?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const argv = [process.execPath, '-r', SWC_REGISTER, file, ...args];
  const r = opts.netnsPath
    ? spawnSync('nsenter', [`--net=${opts.netnsPath}`, '--', ...argv], { encoding: 'utf8', timeout: opts.timeoutMs ?? 20_000 })
    : spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: opts.timeoutMs ?? 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A UDP server that only counts what it receives (a 16 MiB receive buffer, so the count is
 * what the kernel let through, not what fit a small buffer). `stop()` resolves the count.
 */
export function startCountingServer(ns: LabNetns, addr: string, port: number): Promise<{ stop(): Promise<number> }> {
  const script = `
import socket, sys, threading
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], int(sys.argv[2])))
n = [0]
def count():
    while True:
        s.recv(2048); n[0] += 1
threading.Thread(target=count, daemon=True).start()
print('READY', flush=True)
sys.stdin.read()
print(n[0], flush=True)
`;
  return new Promise((resolve, reject) => {
    const child = ns.spawn('python3', ['-u', '-c', script, addr, String(port)]);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`counting server did not start: ${out}`)), 5000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('READY\n')) {
        clearTimeout(timer);
        resolve({
          stop: () =>
            new Promise<number>((res) => {
              child.on('exit', () => res(Number(out.slice('READY\n'.length).trim())));
              child.stdin?.end();
            }),
        });
      }
    });
  });
}

/** Sends `count` small UDP datagrams as fast as one process can (errors such as EPERM counted, not fatal). */
export function udpFlood(lab: Lab, ns: LabNetns, addr: string, port: number, count: number, cgroup?: LabCgroup): Promise<{ sent: number; errors: number; seconds: number }> {
  const script = `
import socket, sys, time
a, p, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
sent = errors = 0
t0 = time.monotonic()
for i in range(n):
    try:
        s.sendto(b'q%d' % i, (a, p)); sent += 1
    except OSError:
        errors += 1
print(sent, errors, time.monotonic() - t0)
`;
  return new Promise((resolve, reject) => {
    const child = spawnIn(lab, ns, 'python3', ['-c', script, addr, String(port), String(count)], cgroup);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      const [sent, errors, seconds] = out.trim().split(' ').map(Number);
      if (code !== 0 || sent === undefined || errors === undefined || seconds === undefined) return reject(new Error(`flood exited ${code}: ${out}`));
      resolve({ sent, errors, seconds });
    });
  });
}
