// An attachment's datapath held in memory (the kernel side is covered end to end in test/): what
// the runtime asks of it, recorded, for the unit tests of the runtime and the registry.
import type { KernelOp, KernelView } from '@netfence/policy-engine';
import type { AttachmentDatapath } from '../../src/datapath';

export function memoryDatapath() {
  const view = { mode: 'disabled', dryRun: false, allow: new Set<string>(), deny: new Set<string>() } as { mode: KernelView['mode']; dryRun: boolean; allow: Set<string>; deny: Set<string> };
  const applied: KernelOp[][] = [];
  let deadlines = new Map<string, number>();
  const dp: AttachmentDatapath = {
    tcDirection: undefined,
    hook: 'cgroup',
    xdpFallback: undefined,
    apply(ops) {
      applied.push([...ops]);
      for (const o of ops) {
        if (o.op === 'setMode') {
          view.mode = o.mode;
          view.dryRun = o.dryRun;
        } else if (o.op === 'add') view[o.map].add(o.cidr);
        else view[o.map].delete(o.cidr);
      }
    },
    readView: () => ({ ...view, allow: new Set(view.allow), deny: new Set(view.deny) }),
    configureDns: () => undefined,
    counters: () => ({ allowed: 0n, blocked: 0n, dryRunWouldBlock: 0n }),
    setAllowDeadlines: (d) => {
      deadlines = new Map(d);
    },
    lastSeenMs: () => undefined,
    sever: () => Promise.resolve(),
    close: () => undefined,
    destroy: () => undefined,
  };
  return { dp, view, applied, deadlines: () => deadlines };
}
