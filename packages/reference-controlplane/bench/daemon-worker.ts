// Benchmark child process: simulates many netfence daemons with @grpc/grpc-js.
// Each daemon is its own Connect stream with its own SyncRequest; streams are
// multiplexed over a few HTTP/2 connections (one per grpc-js client).

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

interface InitMsg {
  type: 'init';
  address: string;
  protoDir: string;
  first: number;
  count: number;
  attachments: number;
  channels: number;
}
interface ExpectMsg {
  type: 'expect';
  phase: string;
  /** Commands each daemon must receive to be done. */
  n: number;
  /** Count only on a stream opened after this message (restart storm). */
  newStream: boolean;
}
type InMsg = InitMsg | ExpectMsg | { type: 'exit' };

const nowMs = (): number => performance.timeOrigin + performance.now();

interface Sim {
  idx: number;
  id: string;
  client: any;
  call?: grpc.ClientDuplexStream<any, any>;
  gen: number;
  count: number;
  countingFromGen: number;
  doneAt?: number;
  attempt: number;
}

let phase: ExpectMsg | undefined;
let sims: Sim[] = [];
let remaining = 0;
let attachmentsPerDaemon = 10;
let exiting = false;

function send(m: unknown): void {
  process.send?.(m);
}

function checkDone(s: Sim): void {
  if (!phase || s.doneAt !== undefined || s.gen < s.countingFromGen) return;
  if (s.count >= phase.n) {
    s.doneAt = nowMs();
    remaining--;
    if (remaining === 0) send({ type: 'done', phase: phase.phase, times: sims.map((x) => x.doneAt ?? NaN) });
  }
}

function connect(s: Sim): void {
  if (exiting) return;
  const gen = ++s.gen;
  s.count = 0;
  const call = s.client.Connect() as grpc.ClientDuplexStream<any, any>;
  s.call = call;
  let over = false;
  const retry = (): void => {
    if (over || exiting) return;
    over = true;
    const base = Math.min(2000, 100 * 2 ** s.attempt);
    s.attempt++;
    setTimeout(() => connect(s), base / 2 + (Math.random() * base) / 2);
  };
  call.on('data', (cmd: { id: string; nonce: string; command: string }) => {
    if (gen !== s.gen) return;
    if (cmd.command === 'sync_ack') s.attempt = 0;
    if (cmd.nonce) call.write({ command_result: { nonce: cmd.nonce, attachment_id: cmd.id, ok: true } });
    s.count++;
    checkDone(s);
  });
  call.on('error', retry);
  call.on('end', retry);
  const atts = [];
  for (let a = 0; a < attachmentsPerDaemon; a++) {
    atts.push({ id: `${s.id}-a${a}`, target: `veth${a}`, type: 'ATTACHMENT_TYPE_TC', metadata: { tenant: `t${a % 2}` } });
  }
  call.write({ sync: { daemon_id: s.id, hostname: `host-${s.idx}`, attachments: atts, metadata: { rack: `r${s.idx % 10}` } } });
}

process.on('disconnect', () => process.exit(0));

process.on('message', (m: InMsg) => {
  if (m.type === 'init') {
    attachmentsPerDaemon = m.attachments;
    const def = protoLoader.loadSync(['netfence/v1/control.proto'], {
      includeDirs: [m.protoDir],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: false,
      oneofs: true,
    });
    const v1 = (grpc.loadPackageDefinition(def) as any).netfence.v1;
    const clients = Array.from(
      { length: m.channels },
      () =>
        new v1.ControlPlane(m.address, grpc.credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
          'grpc.initial_reconnect_backoff_ms': 100,
          'grpc.max_reconnect_backoff_ms': 1000,
          'grpc.max_receive_message_length': 16 * 1024 * 1024,
        }),
    );
    sims = Array.from({ length: m.count }, (_, i) => ({
      idx: m.first + i,
      id: `bench-daemon-${m.first + i}`,
      client: clients[i % clients.length],
      gen: 0,
      count: 0,
      countingFromGen: 0,
      attempt: 0,
    }));
    phase = { type: 'expect', phase: 'connect', n: attachmentsPerDaemon + 1, newStream: false };
    remaining = sims.length;
    for (const s of sims) connect(s);
    return;
  }
  if (m.type === 'expect') {
    phase = m;
    remaining = sims.length;
    for (const s of sims) {
      delete s.doneAt;
      if (m.newStream) s.countingFromGen = s.gen + 1;
      else s.count = 0;
    }
    send({ type: 'armed', phase: m.phase });
    return;
  }
  if (m.type === 'exit') {
    exiting = true;
    for (const s of sims) s.call?.cancel();
    setTimeout(() => process.exit(0), 50);
  }
});
