import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { autoAttachSchema } from './auto-attach-rules';
import { DaemonError } from './daemon-error';
import { NODE_TIMER_MAX_MS, parseDurationMs, toTimerMs } from './go-duration';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function showMs(ms: number): string {
  if (ms % HOUR === 0) return `${ms / HOUR}h`;
  if (ms % MINUTE === 0) return `${ms / MINUTE}m`;
  if (ms % SECOND === 0) return `${ms / SECOND}s`;
  return `${ms}ms`;
}

/**
 * A duration: Go syntax (`300ms`, `1.5h`, `1m30s`, `2h45m`, `250us`, `0`) or a bare number of
 * seconds (also from the environment), to whole milliseconds (rounded up: `300us` is 1 ms, not
 * 0). Each key has a maximum, so a value that cannot be meant (an ack timeout of 5e9 s, which
 * would also overflow Node's timers and fire at once) is refused naming the key; every maximum
 * is below NODE_TIMER_MAX_MS.
 */
function duration(bounds: { max: number; min?: number }) {
  if (bounds.max > NODE_TIMER_MAX_MS) throw new Error('duration maximum above the timer limit');
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const raw = typeof v === 'number' ? (Number.isFinite(v) && v >= 0 ? v * SECOND : undefined) : parseDurationMs(v);
    if (raw === undefined) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration (Go syntax such as 300ms, 1.5h, 1m30s, 2h45m, or a number of seconds)` });
      return z.NEVER;
    }
    const ms = toTimerMs(raw);
    if (ms > bounds.max) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is longer than the maximum ${showMs(bounds.max)}` });
      return z.NEVER;
    }
    if (bounds.min !== undefined && ms < bounds.min) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is shorter than the minimum ${showMs(bounds.min)}` });
      return z.NEVER;
    }
    return ms;
  });
}

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):\d{1,5}$/, 'host:port');

/**
 * One DNS upstream as an IP literal with an optional port (default 53), normalised to
 * `ip:port` / `[ip6]:port`. Host names are refused: the daemon does no DNS lookups of its own
 * at start (a name would need a resolver to find the resolver, and a lookup that fails later
 * would fail every attach).
 */
function parseUpstream(text: string): { value: string } | { error: string } {
  const s = text.trim();
  let host = s;
  let port = '53';
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    port = bracket[2] ?? '53';
  } else if (isIP(s) === 0) {
    const i = s.lastIndexOf(':');
    if (i > 0 && s.indexOf(':') === i) {
      host = s.slice(0, i);
      port = s.slice(i + 1);
    }
  }
  const family = isIP(host);
  if (family === 0) {
    return /^[A-Za-z0-9.-]+$/.test(host)
      ? { error: `${JSON.stringify(s)} names a host; give an IP address (host:port with an IP literal): netfenced does not resolve names at start` }
      : { error: `${JSON.stringify(s)} is not host:port with an IP address` };
  }
  const n = Number(port);
  if (!/^\d{1,5}$/.test(port) || n < 1 || n > 65535) return { error: `${JSON.stringify(s)}: port ${port} is not 1-65535` };
  return { value: family === 6 ? `[${host}]:${n}` : `${host}:${n}` };
}

/**
 * dns.upstream: netfence.v1 writes one `host:port` string; a list (or a comma-separated string,
 * e.g. from NETFENCE_DNS_UPSTREAM) is Netfence's extension. Empty = the host's resolv.conf.
 */
const upstreams = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  const items = (typeof v === 'string' ? v.split(',') : v).map((x) => x.trim());
  const list = typeof v === 'string' ? items.filter(Boolean) : items;
  const out: string[] = [];
  list.forEach((item, i) => {
    const r = parseUpstream(item);
    if ('error' in r) ctx.addIssue({ code: 'custom', message: r.error, path: typeof v === 'string' ? [] : [i] });
    else out.push(r.value);
  });
  return out;
});

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/** netfence.v1's log levels: case-insensitive, `warning` = `warn`, anything else falls back to info. */
export function normalizeLogLevel(raw: string): { level: LogLevel; known: boolean } {
  const l = raw.trim().toLowerCase();
  const level = l === 'warning' ? 'warn' : l;
  return (LOG_LEVELS as readonly string[]).includes(level) ? { level: level as LogLevel, known: true } : { level: 'info', known: false };
}

/** Where `data_dir: ""` keeps the state: per boot, and per bpffs root (the pins the state describes). */
export const EPHEMERAL_DATA_ROOT = '/run/netfence';
const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/netfence';

export function ephemeralDataDir(bpffsRoot: string): string {
  return bpffsRoot === DEFAULT_BPFFS_ROOT ? EPHEMERAL_DATA_ROOT : join(EPHEMERAL_DATA_ROOT, createHash('sha256').update(bpffsRoot).digest('hex').slice(0, 16));
}

export const configSchema = z
  .object({
    socket: z.string().min(1).default('/var/run/netfence.sock'),
    socket_mode: z
      .union([z.number().int(), z.string().regex(/^0?[0-7]{3}$/)])
      .transform((v) => (typeof v === 'number' ? v : parseInt(v, 8)))
      .default(0o600),
    /** Empty (netfence.v1: nothing persisted): kept under EPHEMERAL_DATA_ROOT instead, see ephemeralDataDir. */
    data_dir: z.string().default('/var/lib/netfence'),
    log_level: z
      .string()
      .transform((v) => normalizeLogLevel(v).level)
      .default('info'),
    daemon_id: z.string().min(1).max(128).optional(),
    hostname: z.string().min(1).optional(),
    metadata: z.record(z.string(), z.string()).default({}),
    bpffs_root: z.string().min(1).default(DEFAULT_BPFFS_ROOT),
    policy_file: z.string().min(1).optional(),
    detach_on_exit: z.boolean().default(false),
    shutdown_timeout: duration({ max: HOUR }).default(10_000),
    /**
     * netfence.v1's polling period of the target watch. Targets are now watched by kernel events
     * (target-watch.ts); this is the retry period of what events cannot cover (a failed link
     * watch, a cgroup rule's directory that does not exist yet).
     */
    target_watch_interval: duration({ min: 10, max: HOUR }).default(2_000),
    /** Interfaces and cgroups attached as they appear (auto-attach-rules.ts); file only. */
    auto_attach: autoAttachSchema,
    metrics: z
      .object({
        /** host:port for Prometheus text at /metrics; empty disables. */
        listen: z.union([hostPort, z.literal('')]).default(''),
      })
      .strict()
      .default({ listen: '' }),
    maps: z
      .object({
        allow_entries: z.number().int().min(1).max(16_777_216).default(65_536),
        deny_entries: z.number().int().min(1).max(16_777_216).default(65_536),
        ringbuf_bytes: z
          .number()
          .int()
          .min(4096)
          .refine((n) => (n & (n - 1)) === 0, 'a power of two')
          .default(262_144),
        /**
         * Attachments this host can hold at once: the size of the host-wide maps (one slot each;
         * fixed when they are first created, see docs/DESIGN.md). Bounded so the per-CPU counters
         * (24 per slot) stay small: 65535 slots are 12.6 MB per CPU.
         */
        max_attachments: z.number().int().min(1).max(65_535).default(4096),
      })
      .strict()
      .default({ allow_entries: 65_536, deny_entries: 65_536, ringbuf_bytes: 262_144, max_attachments: 4096 }),
    dns: z
      .object({
        listen_addr: z.string().min(1).default('127.0.0.1'),
        port_min: z.number().int().min(1).max(65535).default(11000),
        port_max: z.number().int().min(1).max(65535).default(11500),
        /** Upstream resolvers, host[:port]. Default: the nameservers of /etc/resolv.conf. */
        upstream: upstreams.default([]),
        min_ttl: duration({ max: 7 * DAY }).default(5_000),
        max_ttl: duration({ max: 7 * DAY }).default(3_600_000),
        /** Learned addresses outlive their TTL while the kernel saw traffic to them within this period. */
        grace: duration({ max: 7 * DAY }).default(300_000),
        /** At most this many learned addresses per DNS name (rotating CDN names must not fill the map); the oldest unused go first. */
        max_addresses_per_name: z.number().int().min(1).max(65_536).default(64),
        blocked_rcode: z.enum(['refused', 'nxdomain']).default('refused'),
        query_timeout: duration({ min: 1, max: MINUTE }).default(2_000),
        /** Queries a second a workload may send to its own DNS server (UDP datagrams, TCP SYNs), enforced in the kernel; 0 = unlimited. */
        rate_limit_qps: z.number().int().min(0).max(1_000_000).default(2_000),
        /** Queries the kernel lets through at once after a quiet period (the bucket size). */
        rate_limit_burst: z.number().int().min(1).max(1_000_000).default(4_000),
      })
      .strict()
      .default({
        listen_addr: '127.0.0.1',
        port_min: 11000,
        port_max: 11500,
        upstream: [],
        min_ttl: 5_000,
        max_ttl: 3_600_000,
        grace: 300_000,
        max_addresses_per_name: 64,
        blocked_rcode: 'refused',
        query_timeout: 2_000,
        rate_limit_qps: 2_000,
        rate_limit_burst: 4_000,
      }),
    control_plane: z
      .object({
        url: z.union([z.url(), z.literal('')]).default(''),
        /** 0 = Attach does not wait for the SubscribedAck (the filter blocks all until it is applied). */
        subscribe_ack_timeout: duration({ max: HOUR }).default(5_000),
        heartbeat_interval: duration({ max: HOUR }).default(30_000),
        query_dns_timeout: duration({ min: 1, max: MINUTE }).default(2_000),
        token: z.string().optional(),
        token_file: z.string().optional(),
        tls: z
          .object({ ca_file: z.string().optional(), cert_file: z.string().optional(), key_file: z.string().optional() })
          .strict()
          .default({}),
      })
      .strict()
      .default({ url: '', subscribe_ack_timeout: 5_000, heartbeat_interval: 30_000, query_dns_timeout: 2_000, tls: {} }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.dns.port_min > c.dns.port_max) ctx.addIssue({ code: 'custom', path: ['dns', 'port_max'], message: 'must be >= dns.port_min' });
    if (c.dns.min_ttl > c.dns.max_ttl) ctx.addIssue({ code: 'custom', path: ['dns', 'max_ttl'], message: 'must be >= dns.min_ttl' });
  })
  // No control plane URL and no policy file: the embedded control plane runs with an empty policy.
  .transform((c) => (c.data_dir === '' ? { ...c, data_dir: ephemeralDataDir(c.bpffs_root) } : c));

/** The validated, frozen daemon configuration. Durations are in milliseconds. */
export type DaemonConfig = z.output<typeof configSchema>;
export type DaemonConfigInput = z.input<typeof configSchema>;

type LeafKind = 'number' | 'boolean' | 'array' | 'text';

interface ZodNode {
  _zod: { def: { type: string; innerType?: ZodNode; in?: ZodNode; shape?: Record<string, ZodNode> } };
}

/**
 * Every leaf key of the schema with how an environment string becomes its value, so each
 * config key can be set as NETFENCE_<PATH> (control_plane.url -> NETFENCE_CONTROL_PLANE_URL)
 * without a second list to keep in step. Maps (metadata) are YAML only.
 */
function envLeaves(node: ZodNode, path: string[] = [], out: { path: string[]; kind: LeafKind }[] = []) {
  let t = node;
  for (;;) {
    const d = t._zod.def;
    if ((d.type === 'default' || d.type === 'optional') && d.innerType) t = d.innerType;
    else if (d.type === 'pipe' && d.in) t = d.in;
    else break;
  }
  const d = t._zod.def;
  if (d.type === 'object' && d.shape) {
    for (const [k, v] of Object.entries(d.shape)) envLeaves(v, [...path, k], out);
  } else if (d.type !== 'record' && !FILE_ONLY.has(path.join('.'))) {
    out.push({ path, kind: d.type === 'number' ? 'number' : d.type === 'boolean' ? 'boolean' : d.type === 'array' ? 'array' : 'text' });
  }
  return out;
}

/** Keys a list of objects: set in the file only (no environment variable). */
const FILE_ONLY = new Set(['auto_attach']);

const ENV_LEAVES = envLeaves(configSchema as unknown as ZodNode);

function envValue(kind: LeafKind, raw: string): unknown {
  switch (kind) {
    case 'array':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'boolean':
      return raw === 'true' || raw === '1';
    case 'number':
      return /^\d+$/.test(raw) ? Number(raw) : raw; // anything else: let the schema name the key (and the variable)
    case 'text':
      return raw;
  }
}

/**
 * Builds the daemon config from an optional YAML file, then NETFENCE_* environment
 * variables (NETFENCE_CONTROL_PLANE_URL -> control_plane.url), then explicit overrides.
 * Validated once; every problem is reported with its key path; the result is frozen.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: DaemonConfigInput } = {}): DaemonConfig {
  let doc: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new DaemonError('NETFENCE_ERR_CONFIG', `cannot read config file ${opts.file}: ${(e as Error).message}`, { cause: e });
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (e) {
      throw new DaemonError('NETFENCE_ERR_CONFIG', `${opts.file}: invalid YAML: ${(e as Error).message}`, { cause: e });
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed)))
      throw new DaemonError('NETFENCE_ERR_CONFIG', `${opts.file}: the top level must be a mapping`);
    doc = (parsed ?? {}) as Record<string, unknown>;
  }
  const env = opts.env ?? process.env;
  /** Which key paths an environment variable set, and which variable: its errors name it. */
  const fromEnv = new Map<string, string>();
  for (const { path, kind } of ENV_LEAVES) {
    const name = `NETFENCE_${path.join('_').toUpperCase()}`;
    const raw = env[name];
    if (raw === undefined) continue;
    let node = doc;
    for (const k of path.slice(0, -1)) {
      if (typeof node[k] !== 'object' || node[k] === null) node[k] = {};
      node = node[k] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = envValue(kind, raw);
    fromEnv.set(path.join('.'), name);
  }
  doc = deepMerge(doc, (opts.overrides ?? {}) as Record<string, unknown>);
  for (const p of leafPaths((opts.overrides ?? {}) as Record<string, unknown>)) fromEnv.delete(p);
  const result = configSchema.safeParse(doc);
  if (!result.success) {
    const problems = result.error.issues.map((i) => {
      const key = i.path.join('.');
      let source = opts.file ? `${opts.file}: ` : '';
      for (let n = i.path.length; n > 0; n--) {
        const v = fromEnv.get(i.path.slice(0, n).join('.'));
        if (v) {
          source = `environment variable ${v}: `;
          break;
        }
      }
      return `${source}${key || '(top level)'}: ${i.message}`;
    });
    throw new DaemonError('NETFENCE_ERR_CONFIG', `invalid config: ${problems.join('; ')}`, { cause: result.error });
  }
  const cfg = deepFreeze(result.data);
  const notes: string[] = [];
  const rawLevel = doc.log_level;
  if (typeof rawLevel === 'string' && !normalizeLogLevel(rawLevel).known)
    notes.push(`log_level ${JSON.stringify(rawLevel)}${fromEnv.has('log_level') ? ' (from NETFENCE_LOG_LEVEL)' : ''} is not a level (trace, debug, info, warn, error): using info`);
  if (doc.data_dir === '') notes.push(`data_dir is empty: attachment state is kept for this boot only, under ${cfg.data_dir}`);
  WARNINGS.set(cfg, notes);
  return cfg;
}

const WARNINGS = new WeakMap<DaemonConfig, readonly string[]>();

/** What loadConfig accepted but the operator should hear about (the caller logs each at warn). */
export function configWarnings(cfg: DaemonConfig): readonly string[] {
  return WARNINGS.get(cfg) ?? [];
}

function leafPaths(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v === undefined ? [] : v && typeof v === 'object' && !Array.isArray(v) ? leafPaths(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
