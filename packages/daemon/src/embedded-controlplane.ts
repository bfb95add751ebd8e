import { createControlPlane, type ControlPlane } from '@netfence/reference-controlplane';
import type { Logger } from 'pino';

export interface EmbeddedControlPlane {
  /** Loopback URL the daemon's client connects to. */
  readonly url: string;
  readonly controlPlane: ControlPlane;
  close(): Promise<void>;
}

/**
 * The embedded default for a single host: the reference control plane, run in-process from a
 * policy file and served on a loopback port, so the daemon talks to it over the same gRPC
 * stream as to a remote one (one code path, one set of semantics).
 */
export async function startEmbeddedControlPlane(opts: { policyFile: string; logger: Logger; listen?: string }): Promise<EmbeddedControlPlane> {
  const controlPlane = createControlPlane({ policy: opts.policyFile, logger: opts.logger });
  const addr = await controlPlane.listen(opts.listen ?? '127.0.0.1:0');
  return { url: addr.url, controlPlane, close: () => controlPlane.close() };
}
