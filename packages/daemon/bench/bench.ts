// `npm run bench -w @netfence/daemon`: builds a lab (namespaces, 250 cgroups, 50 veths,
// dnsmasq), then runs bench/worker.ts inside the lab's host namespace, where it starts the
// built netfenced, a grpc-js control plane on loopback, and measures. Bounded to ~2 minutes.

import { createDaemonLab, HOST_ADDR, UPSTREAM } from '../test/support/daemon-lab';
import { exitWith, labTargets, runWorkerInLabHost } from './lab-run';

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
    const { cgroups, veths } = labTargets(dl, 'b', CGROUPS, VETHS);
    const args: BenchArgs = { tmp: dl.tmp, bpffsRoot: dl.bpffsRoot, cgroups, veths, dnsListen: HOST_ADDR, upstream: UPSTREAM };
    return await runWorkerInLabHost(dl, 'worker.ts', args, LIMIT_MS);
  } finally {
    await dl.close();
  }
}

exitWith(main);
