import { createControlPlane, type ControlPlane } from '@netfence/reference-controlplane';
import type { Logger } from 'pino';

export interface EmbeddedControlPlane {
  /** Loopback URL the daemon's client connects to. */
  readonly url: string;
  readonly controlPlane: ControlPlane;
  /** True when it runs without a policy file: no policy matches, every attachment is block-all. */
  readonly emptyPolicy: boolean;
  close(): Promise<void>;
}

/** How the daemon reaches its control plane, as DaemonStatus.control_plane_mode reports it. */
export type ControlPlaneMode = 'remote' | 'embedded' | 'embedded-empty';

/**
 * The embedded default for a single host: the reference control plane, run in-process from a
 * policy file and served on a loopback port, so the daemon talks to it over the same gRPC
 * stream as to a remote one (one code path, one set of semantics). Without a policy file
 * (netfence.v1 starts with no config at all) it serves an empty policy set: the reference
 * control plane answers every Subscribed with BLOCK_ALL, so the host fails closed. Its metrics
 * registry leaves out prom-client's process metrics: the daemon's registry has them, and serves
 * this one's netfence_cp_* merged into its own /metrics.
 */
export async function startEmbeddedControlPlane(opts: { policyFile?: string; logger: Logger; listen?: string }): Promise<EmbeddedControlPlane> {
  const emptyPolicy = opts.policyFile === undefined;
  const controlPlane = createControlPlane({ policy: opts.policyFile ?? { policies: [] }, logger: opts.logger, processMetrics: false });
  const addr = await controlPlane.listen(opts.listen ?? '127.0.0.1:0');
  return { url: addr.url, controlPlane, emptyPolicy, close: () => controlPlane.close() };
}
