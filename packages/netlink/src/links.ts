// The links of this network namespace (an RTM_GETLINK dump), and a watcher of their events
// (RTM_NEWLINK / RTM_DELLINK from the RTMGRP_LINK multicast group). The watcher's socket is
// read on a worker thread, blocked in recv() (with a 100 ms timeout so it can be stopped):
// events arrive as the kernel sends them, no polling, and neither the event loop nor libuv's
// thread pool (which DNS lookups and fs calls share) is held.

import { Worker } from 'node:worker_threads';
import { closeFd, EAGAIN, EINTR, ENOBUFS, inNetns, openRouteSocket, recvOnce, RTMGRP_LINK, sendAll } from './libc';
import { NetlinkError } from './netlink-error';
import { linkByNameRequest, linkDumpRequest, parseMessages, type LinkRecord } from './rtnetlink';

const RECV_TIMEOUT_MS = 100;
/** Receive buffer of the event socket: room for a burst of thousands of link events (a full buffer loses events: ENOBUFS, then a resync). */
const EVENT_RCVBUF = 8 << 20;
const DUMP_TIMEOUT_MS = 2000;

let seq = 1;

/** Every link of the calling thread's network namespace (or the one at `netnsPath`), by an RTM_GETLINK dump. */
export function listLinks(netnsPath?: string): LinkRecord[] {
  const fd = inNetns(netnsPath, () => openRouteSocket(0, RECV_TIMEOUT_MS, 1 << 20));
  try {
    sendAll(fd, linkDumpRequest(seq++));
    const buf = Buffer.alloc(64 * 1024);
    const out: LinkRecord[] = [];
    const deadline = Date.now() + DUMP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const r = recvOnce(fd, buf);
      if (typeof r === 'number') {
        if (r === -EAGAIN || r === -EINTR) continue;
        throw new NetlinkError('NETLINK_ERR_SOCKET', `reading the link dump: errno ${-r}`, { errno: -r });
      }
      const batch = parseMessages(r);
      if (batch.error !== undefined) throw new NetlinkError('NETLINK_ERR_SOCKET', `the kernel refused the link dump: errno ${-batch.error}`, { errno: -batch.error });
      out.push(...batch.links);
      if (batch.done) return out;
    }
    throw new NetlinkError('NETLINK_ERR_SOCKET', `the link dump did not end within ${DUMP_TIMEOUT_MS} ms`);
  } finally {
    closeFd(fd);
  }
}

const ENODEV = 19;

/**
 * One link of the calling thread's namespace (or `netnsPath`'s) by name or alternative name
 * (RTM_GETLINK for that name: no dump); undefined when there is none.
 */
export function getLink(name: string, netnsPath?: string): LinkRecord | undefined {
  const req = linkByNameRequest(seq++, name);
  const fd = inNetns(netnsPath, () => openRouteSocket(0, RECV_TIMEOUT_MS, 64 * 1024));
  try {
    sendAll(fd, req);
    const buf = Buffer.alloc(64 * 1024);
    const deadline = Date.now() + DUMP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const r = recvOnce(fd, buf);
      if (typeof r === 'number') {
        if (r === -EAGAIN || r === -EINTR) continue;
        throw new NetlinkError('NETLINK_ERR_SOCKET', `asking for link ${JSON.stringify(name)}: errno ${-r}`, { errno: -r });
      }
      const batch = parseMessages(r);
      if (batch.error === -ENODEV) return undefined;
      if (batch.error !== undefined) throw new NetlinkError('NETLINK_ERR_SOCKET', `the kernel refused to describe link ${JSON.stringify(name)}: errno ${-batch.error}`, { errno: -batch.error });
      if (batch.links.length > 0) return batch.links[0];
    }
    throw new NetlinkError('NETLINK_ERR_SOCKET', `no answer about link ${JSON.stringify(name)} within ${DUMP_TIMEOUT_MS} ms`);
  } finally {
    closeFd(fd);
  }
}

export interface LinkWatchOptions {
  /** Every link event, in the kernel's order. */
  readonly onLink: (link: LinkRecord) => void;
  /**
   * The event socket overflowed (the kernel dropped events: ENOBUFS): here is the full list of
   * links now, to reconcile against. Without it, an overflow is reported to onError.
   */
  readonly onResync?: (links: LinkRecord[]) => void;
  /** A failure of the watcher (it stops after a socket error). */
  readonly onError?: (e: NetlinkError) => void;
  /** Watch this network namespace (a path such as /run/netns/x) instead of the calling thread's. */
  readonly netnsPath?: string;
}

export interface LinkWatcher {
  /** The links that existed when the watch started (listed after subscribing: nothing falls between). */
  readonly existing: readonly LinkRecord[];
  readonly closed: boolean;
  /** Stops the reader thread and closes the socket. */
  close(): Promise<void>;
}

// The reader thread: plain JavaScript (it runs from source under ts tooling and from dist alike).
const READER = `
const { parentPort, workerData } = require('node:worker_threads');
const koffi = require(workerData.koffi);
const recv = koffi.load('libc.so.6').func('long recv(int fd, void *buf, size_t len, int flags)');
const stop = new Int32Array(workerData.stop);
const buf = Buffer.alloc(256 * 1024);
while (Atomics.load(stop, 0) === 0) {
  const n = recv(workerData.fd, buf, buf.length, 0);
  if (n > 0) { parentPort.postMessage(Uint8Array.prototype.slice.call(buf, 0, n)); continue; }
  if (n === 0) continue;
  const errno = koffi.errno();
  if (errno === ${EAGAIN} || errno === ${EINTR}) continue;
  parentPort.postMessage({ errno });
  if (errno !== ${ENOBUFS}) break;
}
`;

/**
 * Subscribes to link events of the calling thread's network namespace, then lists the links
 * that exist (`existing`): an event racing the listing shows up in both, never in neither.
 */
export function watchLinks(opts: LinkWatchOptions): LinkWatcher {
  const fd = inNetns(opts.netnsPath, () => openRouteSocket(RTMGRP_LINK, RECV_TIMEOUT_MS, EVENT_RCVBUF));
  let existing: LinkRecord[];
  try {
    existing = listLinks(opts.netnsPath);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  const stop = new SharedArrayBuffer(4);
  const worker = new Worker(READER, { eval: true, workerData: { fd, stop, koffi: require.resolve('koffi') } });
  worker.unref(); // a watcher alone does not keep the process alive
  let closed = false;
  const report = (e: NetlinkError) => (opts.onError ? opts.onError(e) : undefined);
  worker.on('message', (m: Uint8Array | { errno: number }) => {
    if (closed) return;
    if (m instanceof Uint8Array) {
      let batch;
      try {
        batch = parseMessages(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
      } catch (e) {
        return report(e as NetlinkError);
      }
      for (const l of batch.links) opts.onLink(l);
    } else if (m.errno === ENOBUFS && opts.onResync) {
      try {
        opts.onResync(listLinks(opts.netnsPath));
      } catch (e) {
        report(e as NetlinkError);
      }
    } else {
      report(new NetlinkError('NETLINK_ERR_SOCKET', m.errno === ENOBUFS ? 'link events were lost (receive buffer overflow)' : `reading link events: errno ${m.errno}`, { errno: m.errno }));
    }
  });
  worker.on('error', (e) => report(new NetlinkError('NETLINK_ERR_SOCKET', `link event reader failed: ${e.message}`, { cause: e })));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    existing,
    get closed() {
      return closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      Atomics.store(new Int32Array(stop), 0, 1);
      await exited; // within one receive timeout
      closeFd(fd);
    },
  };
}
