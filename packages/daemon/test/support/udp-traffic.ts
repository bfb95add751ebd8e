// Continuous UDP traffic through a filter, counted at both ends: a sink in the lab's "net"
// namespace counts the datagrams each sender tag got through to each destination, a sender (in
// the workload namespace for TC, in a cgroup for cgroup attachments) sends one datagram per
// destination every few milliseconds and counts the sends the kernel refused (EPERM from a
// cgroup hook). What was sent and not received was lost; what reached a blocked destination was
// let through.

import type { LabCgroup, LabNetns } from '@netfence/lab';
import { waitForLine, type DaemonLab } from './daemon-lab';

export const UDP_PORT = 9999;

const SINK_PY = `
import socket, select, sys, time, json
addrs, port, secs = sys.argv[1].split(','), int(sys.argv[2]), float(sys.argv[3])
socks = {}
for a in addrs:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22); s.bind((a, port)); socks[s] = a
seen = {}
print('ready', flush=True)
end = time.monotonic() + secs
while True:
    left = end - time.monotonic()
    if left <= 0: break
    r, _, _ = select.select(list(socks), [], [], min(left, 0.2))
    for s in r:
        data = s.recv(64).decode().split()
        if len(data) == 2: seen.setdefault(data[0] + '@' + socks[s], set()).add(int(data[1]))
print(json.dumps({k: len(v) for k, v in seen.items()}), flush=True)
`;

const SEND_PY = `
import socket, sys, time, json
tag, dsts, port, secs, every = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]) / 1000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out = {d: {'sent': 0, 'failed': 0} for d in dsts}
seq = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for d in dsts:
        try:
            s.sendto(('%s %d' % (tag, seq)).encode(), (d, port)); out[d]['sent'] += 1
        except OSError:
            out[d]['failed'] += 1
    seq += 1
    time.sleep(every)
print(json.dumps(out), flush=True)
`;

export type SinkCounts = Record<string, number>;
export type SendCounts = Record<string, { sent: number; failed: number }>;

/** Starts the sink on `addrs` (addresses of the net namespace) for `secs`; resolves once it listens, with the final counts (`tag@addr`). */
export async function startUdpSink(dl: DaemonLab, addrs: readonly string[], secs: number): Promise<{ counts: Promise<SinkCounts> }> {
  const child = dl.net.spawn('python3', ['-c', SINK_PY, addrs.join(','), String(UDP_PORT), String(secs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  await waitForLine(child, 'ready', 10_000);
  return {
    counts: exited.then((code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) throw new Error(`udp sink exited ${code}: ${out}`);
      return JSON.parse(last) as SinkCounts;
    }),
  };
}

/** Sends to each of `dsts` every `everyMs` for `secs` from `ns` (inside `cgroup` when given), tagged `tag`. */
export async function sendUdpStream(dl: DaemonLab, from: { ns: LabNetns; cgroup?: LabCgroup }, tag: string, dsts: readonly string[], secs: number, everyMs = 4): Promise<SendCounts> {
  const r = await dl.run(from.ns, 'python3', ['-c', SEND_PY, tag, dsts.join(','), String(UDP_PORT), String(secs), String(everyMs)], { cgroup: from.cgroup, timeoutMs: (secs + 15) * 1000 });
  if (r.code !== 0) throw new Error(`udp sender ${tag} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as SendCounts;
}
