import type { ControlCommand } from '@netfence/proto';
import type { AttachmentPolicyState, PolicyCommand, PolicyMode } from '@netfence/policy-engine';
import { commandFromPb, PolicyWireError } from '@netfence/policy-wire';
import type { AttachmentRuntime } from './attachments';
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

/**
 * The one place a netfence.v1 command reaches an attachment: a ControlCommand from the stream
 * and a SubscribedAck (waited for by Attach, or applied in the background) both go through
 * here. Reads it against the runtime's current mode, or `readModeAs` when the command must be
 * read as if the attachment were still in that mode (the background ack: an unspecified mode
 * in it means disabled, as it would have before Attach returned), then applies it whole.
 */
export async function applyWireCommand(rt: AttachmentRuntime, cmd: ControlCommand, readModeAs?: PolicyMode): Promise<void> {
  const pc = readCommand(cmd, readModeAs ? { mode: readModeAs } : rt.state);
  if (pc) await rt.applyCommand(pc);
}
