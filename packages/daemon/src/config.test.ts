import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from './config';
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
    expect(c.dns.upstream).toEqual(['10.200.0.53:53', '10.200.0.54']);
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

  it('requires a policy file when no control plane URL is set', () => {
    expect(() => loadConfig({ env: {} })).toThrow(/policy_file/);
  });
});
