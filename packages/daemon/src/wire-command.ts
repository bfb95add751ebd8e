import type { ControlCommand } from '@netfence/proto';
import type { AttachmentPolicyState, PolicyCommand } from '@netfence/policy-engine';
import { commandFromPb, PolicyWireError } from '@netfence/policy-wire';
import { DaemonError } from './daemon-error';

/**
 * The policy-engine command a ControlCommand carries (undefined for SyncAck), read with
 * the shared netfence.v1 mapping; a message it cannot read is INVALID_ARGUMENT, whole.
 */
export function readCommand(cmd: ControlCommand, current: Pick<AttachmentPolicyState, 'mode'>): PolicyCommand | undefined {
  try {
    return commandFromPb(cmd, current);
  } catch (e) {
    if (e instanceof PolicyWireError) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', e.detail, { cause: e });
    throw e;
  }
}
