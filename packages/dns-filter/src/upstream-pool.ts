// Upstream forwarding: a few shared UDP sockets (one random source port each)
// with an ID-mapped pending table, random query IDs per query, every answer
// checked for source address/port, ID and question; TCP retry on TC=1;
// failover across several servers with health tracking (a server that times
// out or refuses TCP is marked down for an exponential backoff period).

import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import type net from 'node:net';

import { healthOrder, healthStatus, markFailed, markOk, type ServerHealth, type UpstreamStatus } from './upstream-health';
import type { UpstreamServer } from './upstream-server';
import { createSweepTimer } from './sweep-timer';
import { queryOverTcp } from './upstream-tcp';
import { RCODE, parseResponse, type ParsedResponse } from './wire';


export interface UpstreamCounters {
  upstreamQueries: number;
  upstreamTimeouts: number;
  upstreamErrors: number;
  tcpFallbacks: number;
  spoofedDropped: number;
}

export interface UpstreamAnswer {
  readonly buf: Buffer;
  readonly parsed: ParsedResponse;
  readonly server: string;
}

export type UpstreamCallback = (answer: UpstreamAnswer | undefined) => void;

export interface UpstreamPoolOptions {
  readonly servers: readonly UpstreamServer[];
  readonly attemptTimeoutMs: number;
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly socketsPerFamily: number;
  readonly counters: UpstreamCounters;
}

export interface UpstreamPool {
  /**
   * Sends `query` (a full DNS message; its ID is overwritten) to the servers
   * in health order until one answers the question; calls back with the
   * answer, or undefined when every attempt failed.
   */
  query(query: Buffer, name: string, qtype: number, qclass: number, cb: UpstreamCallback): void;
  setServers(servers: readonly UpstreamServer[]): void;
  status(): UpstreamStatus[];
  readonly serverCount: number;
  close(): void;
}

interface ServerState extends ServerHealth {
  /** Connected UDP sockets to this server (created on first use). */
  socks: SockState[];
  removed: boolean;
}

interface Pending {
  query: Buffer;
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly cb: UpstreamCallback;
  order: readonly ServerState[];
  attempt: number;
  sock: SockState | undefined;
  id: number;
  deadline: number;
  server: ServerState | undefined;
  done: boolean;
  tcp: net.Socket | undefined;
}

interface SockState {
  readonly sock: dgram.Socket;
  readonly pending: Map<number, Pending>;
  readonly owner: ServerState;
  /** Sends queued until connect() completes. */
  queue: Buffer[] | undefined;
}

const ID_POOL = new Uint16Array(4096);
let idPoolPos = ID_POOL.length;
function randomId(): number {
  if (idPoolPos >= ID_POOL.length) {
    randomFillSync(ID_POOL);
    idPoolPos = 0;
  }
  return ID_POOL[idPoolPos++]!;
}

const SWEEP_MS = 20;

// Longer than ~150 lines (about 240), on purpose: what remains is one state machine, the
// UDP attempts of every query (send, answer, timeout sweep, socket error, failover), over
// state all its steps share (the in-flight set, the per-socket ID tables, the server
// list, closed). Server health (upstream-health.ts) and the TCP retry (upstream-tcp.ts)
// are already their own modules; cutting the sockets from the attempts would pass those
// tables and callbacks both ways across a module boundary on the hot path.
export function createUpstreamPool(opts: UpstreamPoolOptions): UpstreamPool {
  const counters = opts.counters;
  const newState = (server: UpstreamServer): ServerState => ({ server, failures: 0, downUntil: 0, socks: [], removed: false });
  let states: ServerState[] = opts.servers.map(newState);
  /** Every UDP attempt in flight, in send order (deadlines are monotonic). */
  const inflight = new Set<Pending>();
  const tcpPending = new Set<Pending>();
  let closed = false;

  // Runs only while a UDP attempt is in flight (see sweep-timer.ts).
  const sweep = createSweepTimer(SWEEP_MS, () => {
    const now = Date.now();
    for (const p of inflight) {
      if (p.deadline > now) break;
      counters.upstreamTimeouts++;
      markFailed(p.server, opts);
      detachUdp(p);
      next(p);
    }
    return inflight.size > 0;
  });

  // One connected UDP socket per (server, slot): the kernel then delivers only
  // datagrams from that server's address and port, sends need no address
  // lookup, and an ICMP port-unreachable surfaces as ECONNREFUSED at once.
  function getSockets(s: ServerState): SockState[] {
    if (s.socks.length > 0) return s.socks;
    const fam = s.server.family;
    for (let i = 0; i < Math.max(1, opts.socketsPerFamily); i++) {
      const sock = dgram.createSocket({ type: fam === 6 ? 'udp6' : 'udp4' });
      const st: SockState = { sock, pending: new Map(), owner: s, queue: [] };
      sock.on('message', (msg, rinfo) => onMessage(st, msg, rinfo));
      sock.on('error', (err: NodeJS.ErrnoException) => onSocketError(st, err));
      sock.bind(0, fam === 6 ? '::' : '0.0.0.0', () => {
        try {
          sock.setRecvBufferSize(4 * 1024 * 1024);
          sock.setSendBufferSize(1024 * 1024);
        } catch {
          // best effort
        }
      });
      sock.connect(s.server.port, s.server.host, () => {
        const q = st.queue ?? [];
        st.queue = undefined;
        for (const b of q) sock.send(b);
      });
      s.socks.push(st);
    }
    return s.socks;
  }

  function onSocketError(st: SockState, _err: NodeJS.ErrnoException): void {
    // ECONNREFUSED (ICMP unreachable) or a send error: the server is down for
    // every query waiting on this socket; each fails over at once.
    if (st.pending.size === 0) return;
    counters.upstreamErrors++;
    markFailed(st.owner, opts);
    for (const p of [...st.pending.values()]) {
      detachUdp(p);
      next(p);
    }
  }

  function detachUdp(p: Pending): void {
    inflight.delete(p);
    if (p.sock && p.sock.pending.get(p.id) === p) p.sock.pending.delete(p.id);
    p.sock = undefined;
  }

  function finish(p: Pending, answer: UpstreamAnswer | undefined): void {
    if (p.done) return;
    p.done = true;
    detachUdp(p);
    tcpPending.delete(p);
    if (p.tcp) {
      p.tcp.destroy();
      p.tcp = undefined;
    }
    p.cb(answer);
  }

  function next(p: Pending): void {
    if (p.done) return;
    if (closed || p.attempt >= p.order.length || p.attempt >= opts.maxAttempts) {
      finish(p, undefined);
      return;
    }
    const s = p.order[p.attempt++]!;
    if (s.removed) {
      next(p);
      return;
    }
    p.server = s;
    const list = getSockets(s);
    const st = list[list.length === 1 ? 0 : (Math.random() * list.length) | 0]!;
    let id = randomId();
    for (let tries = 0; st.pending.has(id) && tries < 64; tries++) id = randomId();
    if (st.pending.has(id)) {
      finish(p, undefined);
      return;
    }
    p.id = id;
    p.sock = st;
    p.query[0] = id >> 8;
    p.query[1] = id & 0xff;
    p.deadline = Date.now() + opts.attemptTimeoutMs;
    st.pending.set(id, p);
    inflight.add(p);
    sweep.wake();
    counters.upstreamQueries++;
    if (st.queue) st.queue.push(p.query);
    else st.sock.send(p.query); // connected: errors arrive as 'error' events (onSocketError)
  }

  function onMessage(st: SockState, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return;
    const id = (msg[0]! << 8) | msg[1]!;
    const p = st.pending.get(id);
    if (p === undefined) {
      counters.spoofedDropped++;
      return;
    }
    const s = p.server!.server;
    if (rinfo.port !== s.port || rinfo.address !== s.host) {
      counters.spoofedDropped++;
      return;
    }
    const parsed = parseResponse(msg, p.name, p.qtype, p.qclass);
    if (parsed === null) {
      counters.spoofedDropped++;
      return;
    }
    detachUdp(p);
    markOk(p.server);
    if (parsed.truncated) {
      counters.tcpFallbacks++;
      tcpAttempt(p);
      return;
    }
    answered(p, msg, parsed);
  }

  function answered(p: Pending, buf: Buffer, parsed: ParsedResponse): void {
    const rc = parsed.rcode;
    if ((rc === RCODE.SERVFAIL || rc === RCODE.REFUSED || rc === RCODE.NOTIMP || rc === RCODE.FORMERR) &&
      p.attempt < p.order.length && p.attempt < opts.maxAttempts) {
      next(p); // another server may do better; this one is alive, not marked down
      return;
    }
    finish(p, { buf, parsed, server: p.server!.server.text });
  }

  /** The retry over TCP after a truncated UDP answer, to the same server. */
  function tcpAttempt(p: Pending): void {
    const s = p.server!;
    const id = randomId();
    p.id = id;
    p.query[0] = id >> 8;
    p.query[1] = id & 0xff;
    const sock = queryOverTcp({
      server: s.server,
      query: p.query,
      id,
      name: p.name,
      qtype: p.qtype,
      qclass: p.qclass,
      timeoutMs: opts.attemptTimeoutMs,
      counters,
      onAnswer(buf, parsed) {
        p.tcp = undefined;
        tcpPending.delete(p);
        markOk(s);
        answered(p, buf, parsed);
      },
      onFail() {
        if (p.done || p.tcp !== sock) return;
        p.tcp = undefined;
        tcpPending.delete(p);
        counters.upstreamErrors++;
        markFailed(s, opts);
        next(p);
      },
    });
    p.tcp = sock;
    tcpPending.add(p);
  }

  function closeSock(st: SockState): void {
    try {
      st.sock.close();
    } catch {
      // already closed
    }
  }

  return {
    query(query, name, qtype, qclass, cb) {
      const p: Pending = {
        query,
        name,
        qtype,
        qclass,
        cb,
        order: healthOrder(states),
        attempt: 0,
        sock: undefined,
        id: 0,
        deadline: 0,
        server: undefined,
        done: false,
        tcp: undefined,
      };
      next(p);
    },
    setServers(servers) {
      const old = new Map(states.map((s) => [s.server.text, s]));
      states = servers.map((server) => old.get(server.text) ?? newState(server));
      const kept = new Set(states);
      for (const s of old.values()) {
        if (kept.has(s)) continue;
        s.removed = true;
        for (const st of s.socks) {
          for (const p of [...st.pending.values()]) {
            detachUdp(p);
            next(p);
          }
          closeSock(st);
        }
        s.socks = [];
      }
    },
    status() {
      return healthStatus(states);
    },
    get serverCount() {
      return states.length;
    },
    close() {
      if (closed) return;
      closed = true;
      sweep.close();
      for (const p of [...inflight, ...tcpPending]) finish(p, undefined);
      for (const s of states) for (const st of s.socks) closeSock(st);
    },
  };
}
