import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configWarnings, ephemeralDataDir, loadConfig } from './config';
import { parseDurationMs } from './go-duration';
import { DaemonError } from './daemon-error';

function file(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'nf-cfg-'));
  const p = join(dir, 'netfence.yaml');
  writeFileSync(p, text);
  return p;
}

describe('loadConfig', () => {
  it('applies the netfence.v1 defaults', () => {
    const c = loadConfig({ env: {}, overrides: { policy_file: '/p.yaml' } });
    expect(c.socket).toBe('/var/run/netfence.sock');
    expect(c.socket_mode).toBe(0o600);
    expect(c.dns.listen_addr).toBe('127.0.0.1');
    expect([c.dns.port_min, c.dns.port_max]).toEqual([11000, 11500]);
    expect(c.control_plane.subscribe_ack_timeout).toBe(5000);
    expect(Object.isFrozen(c.dns)).toBe(true);
  });

  it('reads YAML, then NETFENCE_* env over it', () => {
    const p = file('control_plane:\n  url: http://127.0.0.1:9000\n  subscribe_ack_timeout: 250ms\ndns:\n  port_min: 12000\n  port_max: 12010\n');
    const c = loadConfig({ file: p, env: { NETFENCE_DNS_PORT_MIN: '12005', NETFENCE_DNS_UPSTREAM: '10.200.0.53:53, 10.200.0.54' } });
    expect(c.control_plane.url).toBe('http://127.0.0.1:9000');
    expect(c.control_plane.subscribe_ack_timeout).toBe(250);
    expect(c.dns.port_min).toBe(12005);
    expect(c.dns.upstream).toEqual(['10.200.0.53:53', '10.200.0.54:53']);
  });

  it('lets NETFENCE_* set every key of the schema, typed as the key is', () => {
    const c = loadConfig({
      env: {
        NETFENCE_POLICY_FILE: '/p.yaml',
        NETFENCE_DETACH_ON_EXIT: 'true',
        NETFENCE_MAPS_ALLOW_ENTRIES: '1024',
        NETFENCE_CONTROL_PLANE_TLS_CA_FILE: '/etc/netfence/ca.pem',
        NETFENCE_CONTROL_PLANE_HEARTBEAT_INTERVAL: '10s',
      },
    });
    expect(c.detach_on_exit).toBe(true);
    expect(c.maps.allow_entries).toBe(1024);
    expect(c.control_plane.tls.ca_file).toBe('/etc/netfence/ca.pem');
    expect(c.control_plane.heartbeat_interval).toBe(10_000);
    expect(() => loadConfig({ env: { NETFENCE_POLICY_FILE: '/p.yaml', NETFENCE_MAPS_DENY_ENTRIES: 'lots' } })).toThrow(/maps\.deny_entries/);
  });

  it('maps.max_attachments: 4096 by default, set from the file or NETFENCE_MAPS_MAX_ATTACHMENTS, refused outside 1..65535 naming the key', () => {
    expect(loadConfig({ env: { NETFENCE_POLICY_FILE: '/p.yaml' } }).maps.max_attachments).toBe(4096);
    expect(loadConfig({ env: { NETFENCE_POLICY_FILE: '/p.yaml', NETFENCE_MAPS_MAX_ATTACHMENTS: '16' } }).maps.max_attachments).toBe(16);
    expect(loadConfig({ file: file('maps:\n  max_attachments: 1\n'), env: {} }).maps.max_attachments).toBe(1);
    for (const bad of ['0', '65536', '2.5', 'many']) {
      expect(() => loadConfig({ env: { NETFENCE_POLICY_FILE: '/p.yaml', NETFENCE_MAPS_MAX_ATTACHMENTS: bad } })).toThrow(/maps\.max_attachments.*NETFENCE_MAPS_MAX_ATTACHMENTS|NETFENCE_MAPS_MAX_ATTACHMENTS.*maps\.max_attachments/s);
    }
  });

  it('names the key path of every problem', () => {
    const p = file('dns:\n  port_min: 70000\n  bogus: 1\ncontrol_plane:\n  subscribe_ack_timeout: soon\n');
    let err: unknown;
    try {
      loadConfig({ file: p, env: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DaemonError);
    const msg = (err as DaemonError).message;
    expect((err as DaemonError).code).toBe('NETFENCE_ERR_CONFIG');
    expect(msg).toContain('dns.port_min');
    expect(msg).toContain('dns');
    expect(msg).toContain('bogus');
    expect(msg).toContain('control_plane.subscribe_ack_timeout');
    expect(msg).toContain(p);
  });
});

/** The NETFENCE_ERR_CONFIG message loadConfig throws, or '' when it accepts. */
function refusal(opts: Parameters<typeof loadConfig>[0]): string {
  try {
    loadConfig(opts);
    return '';
  } catch (e) {
    expect(e).toBeInstanceOf(DaemonError);
    expect((e as DaemonError).code).toBe('NETFENCE_ERR_CONFIG');
    return (e as DaemonError).message;
  }
}

describe('loadConfig: a netfence.v1 config file and environment', () => {
  it('starts from no file and no environment at all (embedded control plane, empty policy)', () => {
    const c = loadConfig({ env: {} });
    expect(c.control_plane.url).toBe('');
    expect(c.policy_file).toBeUndefined();
    expect(c.dns.upstream).toEqual([]); // the host's resolv.conf, never a public resolver
  });

  it('takes dns.upstream as one host:port string (netfence.v1) or a list (extension)', () => {
    expect(loadConfig({ file: file('dns:\n  upstream: "10.0.0.2:53"\n'), env: {} }).dns.upstream).toEqual(['10.0.0.2:53']);
    expect(loadConfig({ file: file('dns:\n  upstream: ["10.0.0.2:5353", "[2001:db8::53]:53", "2001:db8::54", "10.0.0.3"]\n'), env: {} }).dns.upstream).toEqual([
      '10.0.0.2:5353',
      '[2001:db8::53]:53',
      '[2001:db8::54]:53',
      '10.0.0.3:53',
    ]);
    expect(loadConfig({ env: { NETFENCE_DNS_UPSTREAM: '10.0.0.2:53' } }).dns.upstream).toEqual(['10.0.0.2:53']);
    expect(loadConfig({ file: file('dns:\n  upstream: ""\n'), env: {} }).dns.upstream).toEqual([]);
  });

  it('refuses a host name in dns.upstream at start, naming the key (and the variable)', () => {
    const f = file('dns:\n  upstream: "dns.example.test:53"\n');
    const m = refusal({ file: f, env: {} });
    expect(m).toContain(`${f}: dns.upstream: "dns.example.test:53" names a host; give an IP address`);
    const e = refusal({ env: { NETFENCE_DNS_UPSTREAM: 'resolver.test:53' } });
    expect(e).toContain('environment variable NETFENCE_DNS_UPSTREAM: dns.upstream: "resolver.test:53" names a host');
    expect(refusal({ file: file('dns:\n  upstream: ["10.0.0.2:53", "ns.test"]\n'), env: {} })).toContain('dns.upstream.1: "ns.test" names a host');
    expect(refusal({ env: { NETFENCE_DNS_UPSTREAM: '10.0.0.2:70000' } })).toContain('port 70000 is not 1-65535');
  });

  it.each([
    ['1m30s', 90_000],
    ['1.5h', 5_400_000],
    ['250ms', 250],
    ['2h45m', 9_900_000],
    ['300us', 1], // rounded up: a tiny non-zero duration never becomes "do not wait"
    ['300µs', 1],
    ['1500000ns', 2],
    ['0', 0],
    ['0s', 0],
    ['5', 5_000],
    ['0.5', 500],
  ])('reads the Go duration %j (file and environment)', (text, ms) => {
    expect(loadConfig({ file: file(`dns:\n  grace: "${text}"\n`), env: {} }).dns.grace).toBe(ms);
    expect(loadConfig({ env: { NETFENCE_DNS_GRACE: text } }).dns.grace).toBe(ms);
    if (ms <= 3_600_000) expect(loadConfig({ env: { NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: text } }).control_plane.subscribe_ack_timeout).toBe(ms);
  });

  it('reads a bare YAML number as seconds', () => {
    expect(loadConfig({ file: file('control_plane:\n  subscribe_ack_timeout: 2\n'), env: {} }).control_plane.subscribe_ack_timeout).toBe(2000);
  });

  it('refuses durations that cannot be meant, naming the key and the variable rather than the file', () => {
    const f = file('control_plane:\n  subscribe_ack_timeout: 2s\n');
    const m = refusal({ file: f, env: { NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: '5000000000' } });
    expect(m).toContain('environment variable NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: control_plane.subscribe_ack_timeout: "5000000000" is longer than the maximum 1h');
    expect(m).not.toContain(f);
    expect(refusal({ file: f, env: { NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: 'soon' } })).toContain('NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: control_plane.subscribe_ack_timeout: "soon" is not a duration');
    const y = file('control_plane:\n  subscribe_ack_timeout: 5000000000\n');
    expect(refusal({ file: y, env: {} })).toContain(`${y}: control_plane.subscribe_ack_timeout: 5000000000 is longer than the maximum 1h`);
    for (const bad of ['-1s', '1d', '5 s', 'ms', '1.2.3s', '']) expect(refusal({ env: { NETFENCE_SHUTDOWN_TIMEOUT: bad } })).toContain('NETFENCE_SHUTDOWN_TIMEOUT: shutdown_timeout');
    expect(refusal({ env: { NETFENCE_TARGET_WATCH_INTERVAL: '0' } })).toContain('shorter than the minimum 10ms');
    expect(refusal({ env: { NETFENCE_DNS_MAX_TTL: '8760h' } })).toContain('dns.max_ttl: "8760h" is longer than the maximum 168h');
    expect(refusal({ env: { NETFENCE_DNS_MIN_TTL: '2h', NETFENCE_DNS_MAX_TTL: '1h' } })).toContain('dns.max_ttl: must be >= dns.min_ttl');
  });

  it('parses Go durations exactly as Go does', () => {
    expect(parseDurationMs('1h2m3s4ms5us6ns')).toBeCloseTo(3_723_004.005006, 6);
    expect(parseDurationMs('.5s')).toBe(500);
    expect(parseDurationMs('1.s')).toBe(1000);
    expect(parseDurationMs('1')).toBe(1000);
    for (const bad of ['', 's', '1x', '1h 2m', '+1s', '-1s', '1e3s', 'NaN']) expect(parseDurationMs(bad)).toBeUndefined();
  });

  it('reads log_level case-insensitively, warning as warn, and anything else as info with a warning', () => {
    expect(loadConfig({ file: file('log_level: warning\n'), env: {} }).log_level).toBe('warn');
    expect(loadConfig({ env: { NETFENCE_LOG_LEVEL: 'DEBUG' } }).log_level).toBe('debug');
    const c = loadConfig({ file: file('log_level: verbose\n'), env: {} });
    expect(c.log_level).toBe('info');
    expect(configWarnings(c)).toEqual(['log_level "verbose" is not a level (trace, debug, info, warn, error): using info']);
    expect(configWarnings(loadConfig({ env: {} }))).toEqual([]);
  });

  it('keeps the state of data_dir: "" for this boot, beside the pins it describes', () => {
    const c = loadConfig({ file: file('data_dir: ""\n'), env: {} });
    expect(c.data_dir).toBe('/run/netfence');
    expect(configWarnings(c)[0]).toContain('data_dir is empty');
    const other = loadConfig({ env: { NETFENCE_DATA_DIR: '', NETFENCE_BPFFS_ROOT: '/sys/fs/bpf/nftest' } });
    expect(other.data_dir).toBe(ephemeralDataDir('/sys/fs/bpf/nftest'));
    expect(other.data_dir).toMatch(/^\/run\/netfence\/[0-9a-f]{16}$/);
  });

  it('blames a command-line override, not the environment variable it replaced', () => {
    const m = refusal({ env: { NETFENCE_SOCKET: '/x.sock' }, overrides: { socket: '' } });
    expect(m).toContain('socket:');
    expect(m).not.toContain('NETFENCE_SOCKET');
  });
});

describe('loadConfig: the kernel DNS rate limit', () => {
  it('defaults to 2,000 queries a second with a burst of 4,000; 0 is unlimited; a burst below 1 or a negative rate is refused, naming the key', () => {
    const d = loadConfig({ env: {}, overrides: { policy_file: '/p.yaml' } });
    expect([d.dns.rate_limit_qps, d.dns.rate_limit_burst]).toEqual([2000, 4000]);
    const c = loadConfig({ env: { NETFENCE_POLICY_FILE: '/p.yaml', NETFENCE_DNS_RATE_LIMIT_QPS: '0', NETFENCE_DNS_RATE_LIMIT_BURST: '10' } });
    expect([c.dns.rate_limit_qps, c.dns.rate_limit_burst]).toEqual([0, 10]);
    expect(refusal({ env: { NETFENCE_POLICY_FILE: '/p.yaml', NETFENCE_DNS_RATE_LIMIT_BURST: '0' } })).toContain('dns.rate_limit_burst');
    expect(refusal({ env: {}, overrides: { policy_file: '/p.yaml', dns: { rate_limit_qps: -1 } } })).toContain('dns.rate_limit_qps');
  });
});

describe('loadConfig: auto_attach', () => {
  it('reads the rules in the issue shape, defaults filled; none by default', () => {
    const p = file(
      'auto_attach:\n  - interface: "tap*"\n    metadata: { vm_id: "{name}", tenant: sandbox }\n  - cgroup: "/sys/fs/cgroup/jobs/*"\n    metadata: { job: "{basename}" }\n',
    );
    const c = loadConfig({ file: p, env: {} });
    expect(c.auto_attach).toEqual([
      { interface: 'tap*', kind: 'any', metadata: { vm_id: '{name}', tenant: 'sandbox' }, xdp: false },
      { cgroup: '/sys/fs/cgroup/jobs/*', metadata: { job: '{basename}' } },
    ]);
    expect(Object.isFrozen(c.auto_attach[0])).toBe(true);
    expect(loadConfig({ env: {} }).auto_attach).toEqual([]);
  });

  it('names the key path and the rule of a problem, and is not an environment variable', () => {
    const bad = (text: string) => {
      try {
        loadConfig({ file: file(text), env: {} });
      } catch (e) {
        return (e as DaemonError).message;
      }
      return 'accepted';
    };
    expect(bad('auto_attach:\n  - interface: "tap*"\n  - interface: "x"\n    kind: bond\n')).toMatch(/auto_attach\.1\.kind/);
    expect(bad('auto_attach:\n  - cgroup: "jobs/*"\n')).toMatch(/auto_attach\.0\.cgroup: .*absolute path/);
    expect(bad('auto_attach:\n  - name: "tap*"\n')).toMatch(/auto_attach\.0: a rule has exactly one of/);
    expect(bad('auto_attach: "tap*"\n')).toMatch(/auto_attach: /);
    // A list of objects cannot come from one variable: it is not read (and not half-parsed).
    expect(loadConfig({ env: { NETFENCE_AUTO_ATTACH: 'tap*' } }).auto_attach).toEqual([]);
  });
});
