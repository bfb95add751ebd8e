import { closeSync, openSync } from 'node:fs';
import { BpfError } from './errors';
import { getLibc, lastErrno } from './libbpf';

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` synchronously with the calling thread (Node's main JS thread) switched into the
 * network namespace at `path` (e.g. `/run/netns/NAME` or `/proc/PID/ns/net`) via setns(2),
 * then switches back, also when fn throws. Only this thread moves: libuv/koffi worker threads
 * stay where they were, so fn must be synchronous (a returned promise is refused). Interface
 * names and ifindexes (TCX/clsact attach, if_nametoindex, netlink) resolve in `path`'s netns
 * inside fn. Needs CAP_SYS_ADMIN.
 */
export function withNetns<T>(path: string, fn: () => T): T {
  const c = getLibc();
  let self: number;
  let target: number;
  try {
    self = openSync('/proc/thread-self/ns/net', 'r');
  } catch (e) {
    throw BpfError.from(e);
  }
  try {
    target = openSync(path, 'r');
  } catch (e) {
    closeSync(self);
    throw BpfError.from(e);
  }
  try {
    if ((c.setns(target, CLONE_NEWNET) as number) !== 0) {
      throw BpfError.fromErrno(lastErrno(), `setns(${path}, CLONE_NEWNET)`);
    }
    try {
      const result = fn();
      if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
        throw new BpfError('BPF_ERR_INVALID_ARGUMENT', 'withNetns: fn must be synchronous (it returned a promise)');
      }
      return result;
    } finally {
      if ((c.setns(self, CLONE_NEWNET) as number) !== 0) {
        // The thread is stuck in the wrong namespace: nothing sane can continue.
        // eslint-disable-next-line no-unsafe-finally
        throw BpfError.fromErrno(lastErrno(), 'setns back to the original network namespace');
      }
    }
  } finally {
    closeSync(target);
    closeSync(self);
  }
}

/** if_nametoindex in the caller's netns, or in `netnsPath`'s. Throws BPF_ERR_NOT_FOUND. */
export function ifindexOf(ifname: string, netnsPath?: string): number {
  const lookup = (): number => {
    const i = getLibc().if_nametoindex(ifname) as number;
    if (i === 0) throw new BpfError('BPF_ERR_NOT_FOUND', `no interface '${ifname}'${netnsPath ? ` in ${netnsPath}` : ''}`, { errno: lastErrno() });
    return i;
  };
  return netnsPath === undefined ? lookup() : withNetns(netnsPath, lookup);
}
