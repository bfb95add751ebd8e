// An attachment's DNS server skips a port another process holds (dns-filter's
// NETFENCE_ERR_DNS_ADDRESS_IN_USE), and a pool with no free port left is refused by name.

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDaemonLab, HOST_ADDR, startDaemon, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';

jest.setTimeout(60_000);

const PORT_MIN = 11700;
let dl: DaemonLab;
let d: DaemonProcess;
let holder: ChildProcess | undefined;

beforeAll(async () => {
  dl = await createDaemonLab();
  // another process in the daemon's namespace holds the first port of the pool (UDP)
  holder = dl.host.spawn('python3', ['-c', `import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('${HOST_ADDR}',${PORT_MIN}))\nprint('bound',flush=True)\ntime.sleep(120)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder!.stdout!.once('data', () => resolve());
    holder!.once('exit', (code) => reject(new Error(`port holder exited ${code}`)));
  });
  const policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, 'version: 1\npolicies:\n  - name: any\n    mode: block_all\n');
  d = await startDaemon(dl, writeDaemonConfig(dl, 'ports', { policy_file: policy, dns: { port_min: PORT_MIN, port_max: PORT_MIN + 1 } }));
});

afterAll(async () => {
  holder?.kill('SIGKILL');
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

test('a port held by another process is skipped; an exhausted pool is refused by name', async () => {
  const first = await d.cli(['attach', '--cgroup', dl.cgroup('port-a').path, '--json']);
  expect(first.code).toBe(0);
  expect(JSON.parse(first.stdout).dnsAddress).toBe(`${HOST_ADDR}:${PORT_MIN + 1}`);

  const second = await d.cli(['attach', '--cgroup', dl.cgroup('port-b').path]);
  expect(second.code).not.toBe(0);
  expect(second.stdout).toBe('');
  expect(second.stderr).toContain('NETFENCE_ERR_DNS_PORTS_EXHAUSTED');
});
