import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DaemonError } from './daemon-error';

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** A duration: a number of seconds, or text like '250ms', '5s', '2m', '1h'. Parsed to milliseconds. */
const duration = z.union([z.number().nonnegative(), z.string().regex(DURATION_RE, 'a duration like 500ms, 5s, 2m or 1h')]).transform((v) => {
  if (typeof v === 'number') return Math.round(v * 1000);
  const m = DURATION_RE.exec(v)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
});

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):\d{1,5}$/, 'host:port');

export const configSchema = z
  .object({
    socket: z.string().min(1).default('/var/run/netfence.sock'),
    socket_mode: z
      .union([z.number().int(), z.string().regex(/^0?[0-7]{3}$/)])
      .transform((v) => (typeof v === 'number' ? v : parseInt(v, 8)))
      .default(0o600),
    data_dir: z.string().min(1).default('/var/lib/netfence'),
    log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    daemon_id: z.string().min(1).max(128).optional(),
    hostname: z.string().min(1).optional(),
    metadata: z.record(z.string(), z.string()).default({}),
    bpffs_root: z.string().min(1).default('/sys/fs/bpf/netfence'),
    policy_file: z.string().min(1).optional(),
    detach_on_exit: z.boolean().default(false),
    shutdown_timeout: duration.default(10_000),
    target_watch_interval: duration.default(2_000),
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
      })
      .strict()
      .default({ allow_entries: 65_536, deny_entries: 65_536, ringbuf_bytes: 262_144 }),
    dns: z
      .object({
        listen_addr: z.string().min(1).default('127.0.0.1'),
        port_min: z.number().int().min(1).max(65535).default(11000),
        port_max: z.number().int().min(1).max(65535).default(11500),
        /** Upstream resolvers, host[:port]. Default: the nameservers of /etc/resolv.conf. */
        upstream: z.array(z.string().min(1)).default([]),
        min_ttl: duration.default(5_000),
        max_ttl: duration.default(3_600_000),
        /** Learned addresses outlive their TTL while the kernel saw traffic to them within this period. */
        grace: duration.default(300_000),
        blocked_rcode: z.enum(['refused', 'nxdomain']).default('refused'),
        query_timeout: duration.default(2_000),
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
        blocked_rcode: 'refused',
        query_timeout: 2_000,
      }),
    control_plane: z
      .object({
        url: z.union([z.url(), z.literal('')]).default(''),
        subscribe_ack_timeout: duration.default(5_000),
        heartbeat_interval: duration.default(30_000),
        query_dns_timeout: duration.default(2_000),
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
    if (!c.control_plane.url && !c.policy_file)
      ctx.addIssue({ code: 'custom', path: ['policy_file'], message: 'required when control_plane.url is empty (the embedded control plane needs a policy file)' });
  });

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
  } else if (d.type !== 'record') {
    out.push({ path, kind: d.type === 'number' ? 'number' : d.type === 'boolean' ? 'boolean' : d.type === 'array' ? 'array' : 'text' });
  }
  return out;
}

const ENV_LEAVES = envLeaves(configSchema as unknown as ZodNode);

function envValue(kind: LeafKind, raw: string): unknown {
  switch (kind) {
    case 'array':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'boolean':
      return raw === 'true' || raw === '1';
    case 'number':
      return /^\d+$/.test(raw) ? Number(raw) : raw; // anything else: let the schema name the key
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
  }
  doc = deepMerge(doc, (opts.overrides ?? {}) as Record<string, unknown>);
  const result = configSchema.safeParse(doc);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new DaemonError('NETFENCE_ERR_CONFIG', `invalid config${opts.file ? ` in ${opts.file}` : ''}: ${problems.join('; ')}`, { cause: result.error });
  }
  return deepFreeze(result.data);
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
