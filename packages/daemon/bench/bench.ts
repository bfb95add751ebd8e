// `npm run bench -w @netfence/daemon`: builds a lab (namespaces, 250 cgroups, 50 veths,
// dnsmasq), then runs bench/worker.ts inside the lab's host namespace, where it starts the
// built netfenced, a grpc-js control plane on loopback, and measures. Bounded to ~2 minutes.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createDaemonLab, HOST_ADDR, UPSTREAM } from '../test/support/daemon-lab';

const CGROUPS = 250;
const VETHS = 50;
const LIMIT_MS = 150_000;

export interface BenchArgs {
  readonly tmp: string;
  readonly bpffsRoot: string;
  readonly cgroups: string[];
  readonly veths: string[];
  readonly dnsListen: string;
  readonly upstream: string;
}

async function main(): Promise<number> {
  const dl = await createDaemonLab();
  try {
    const t0 = Date.now();
    const cgroups = Array.from({ length: CGROUPS }, (_, i) => dl.cgroup(`b${i}`).path);
    const veths = Array.from({ length: VETHS }, () => dl.extraVeth().a);
    process.stderr.write(`lab ready in ${Date.now() - t0} ms (${CGROUPS} cgroups, ${VETHS} veths)\n`);
    const args: BenchArgs = { tmp: dl.tmp, bpffsRoot: dl.bpffsRoot, cgroups, veths, dnsListen: HOST_ADDR, upstream: UPSTREAM };
    const worker = spawn('nsenter', [`--net=${dl.host.path}`, '--', process.execPath, '-r', join(__dirname, '..', '..', '..', 'tools', 'swc-register.cjs'), join(__dirname, 'worker.ts')], {
      stdio: 'inherit',
      env: { ...process.env, NFBENCH_ARGS: JSON.stringify(args) },
    });
    const timer = setTimeout(() => {
      process.stderr.write(`benchmark over its ${LIMIT_MS} ms limit: stopping it\n`);
      worker.kill('SIGKILL');
    }, LIMIT_MS);
    const code = await new Promise<number>((r) => worker.on('exit', (c) => r(c ?? 1)));
    clearTimeout(timer);
    return code;
  } finally {
    await dl.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
