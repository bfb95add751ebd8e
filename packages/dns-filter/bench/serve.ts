// Bench child process: one netfence-dns filter (allowlist, cache off) whose
// onResolved hook writes every answer address into a real eBPF LPM trie map
// through @netfence/bpf-loader, or into a Map when HOOK=memory.
// Env: LISTEN_ADDR, UPSTREAM, HOOK (bpf|memory), BPF_OBJ. Prints one JSON line when ready.

import { createDnsFilter, type ResolvedInfo } from '@netfence/dns-filter';

type Learn = (info: ResolvedInfo) => void;

function parseV4(a: string): Uint8Array {
  return Uint8Array.from(a.split('.').map(Number));
}

async function makeHook(kind: string): Promise<{ learn: Learn; describe: string; count: () => number; close: () => void }> {
  if (kind === 'bpf') {
    const bpf = await import('@netfence/bpf-loader');
    const coll = bpf.loadCollection(process.env.BPF_OBJ!);
    const map = coll.takeMap('allow_v4');
    coll.close();
    const lpm = bpf.createLpmTrieMap(map, { dataSize: 4, value: bpf.codecs.u64 });
    let writes = 0;
    return {
      describe: 'eBPF LPM trie map (BPF_MAP_TYPE_LPM_TRIE, 1M entries) written via @netfence/bpf-loader',
      learn(info) {
        const expires = BigInt(Date.now() + info.ttlSec * 1000);
        for (const a of info.addresses) {
          if (a.includes(':')) continue;
          lpm.set({ prefixLen: 32, data: parseV4(a) }, expires);
          writes++;
        }
      },
      count: () => writes,
      close: () => map.close(),
    };
  }
  const m = new Map<string, number>();
  let writes = 0;
  return {
    describe: 'in-memory Map (no eBPF)',
    learn(info) {
      for (const a of info.addresses) {
        m.set(a, Date.now() + info.ttlSec * 1000);
        writes++;
      }
    },
    count: () => writes,
    close: () => m.clear(),
  };
}

async function main(): Promise<void> {
  const hook = await makeHook(process.env.HOOK ?? 'memory');
  const filter = await createDnsFilter({
    address: process.env.LISTEN_ADDR ?? '127.0.0.1',
    port: 0,
    mode: 'allowlist',
    allow: ['*.bench.test'],
    upstreams: [process.env.UPSTREAM!],
    cacheSize: 0,
    maxInFlight: 8192,
    onResolved: async (info) => hook.learn(info),
  });
  process.stdout.write(`${JSON.stringify({ ready: true, port: filter.address.port, hook: hook.describe })}\n`);
  const stop = async (): Promise<void> => {
    const s = filter.stats();
    process.stdout.write(
      `${JSON.stringify({ stats: { queries: s.queries, allowed: s.allowed, failed: s.failed, overloaded: s.overloaded, spoofedDropped: s.spoofedDropped }, mapWrites: hook.count() })}\n`,
    );
    await filter.close();
    hook.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`serve failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
