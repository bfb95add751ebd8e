// `npm run bench:attach -w @netfence/daemon` (issue 11): how fast and how cheaply the daemon makes
// attachments on the host-wide program set. Builds a lab (1,000 cgroups, 500 veths), then runs
// bench/attach-worker.ts inside the lab's host namespace, where it starts the built netfenced
// with a grpc-js control plane on loopback and measures. Bounded to ~4 minutes.

import { createDaemonLab, HOST_ADDR } from '../test/support/daemon-lab';
import { exitWith, labTargets, runWorkerInLabHost } from './lab-run';

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
    const { cgroups, veths } = labTargets(dl, 'a', CGROUPS, VETHS);
    const args: AttachBenchArgs = { tmp: dl.tmp, bpffsRoot: dl.bpffsRoot, cgroups, veths, dnsListen: HOST_ADDR };
    return await runWorkerInLabHost(dl, 'attach-worker.ts', args, LIMIT_MS);
  } finally {
    await dl.close();
  }
}

exitWith(main);
