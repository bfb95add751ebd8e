// `npm run bench:attach -w @netfence/daemon` (issue 11): how fast and how cheaply the daemon makes
// attachments on the host-wide program set. Builds a lab (1,000 cgroups, 500 veths), then runs
// bench/attach-worker.ts inside the lab's host namespace, where it starts the built netfenced
// with a grpc-js control plane on loopback and measures. Bounded to ~4 minutes.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createDaemonLab, HOST_ADDR } from '../test/support/daemon-lab';

const CGROUPS = 1000;
const VETHS = 500;
const LIMIT_MS = 240_000;

export interface AttachBenchArgs {
  readonly tmp: string;
  readonly bpffsRoot: string;
  readonly cgroups: string[];
  readonly veths: string[];
  readonly dnsListen: string;
}

async function main(): Promise<number> {
  const dl = await createDaemonLab();
  try {
    const t0 = Date.now();
    const cgroups = Array.from({ length: CGROUPS }, (_, i) => dl.cgroup(`a${i}`).path);
    const veths = Array.from({ length: VETHS }, () => dl.extraVeth().a);
    process.stderr.write(`lab ready in ${Date.now() - t0} ms (${CGROUPS} cgroups, ${VETHS} veths)\n`);
    const args: AttachBenchArgs = { tmp: dl.tmp, bpffsRoot: dl.bpffsRoot, cgroups, veths, dnsListen: HOST_ADDR };
    const worker = spawn('nsenter', [`--net=${dl.host.path}`, '--', process.execPath, '-r', join(__dirname, '..', '..', '..', 'tools', 'swc-register.cjs'), join(__dirname, 'attach-worker.ts')], {
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
