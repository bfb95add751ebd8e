// The libc socket calls a netlink socket needs, through koffi (Node has no AF_NETLINK).
import { closeSync, openSync } from 'node:fs';
import { koffi } from './koffi';
import { NetlinkError } from './netlink-error';

type Fn = (...args: unknown[]) => unknown;
interface Libc {
  socket: Fn;
  bind: Fn;
  setsockopt: Fn;
  send: Fn;
  recv: Fn;
  close: Fn;
  setns: Fn;
}

let libc: Libc | undefined;
function lib(): Libc {
  if (libc) return libc;
  const c = koffi.load('libc.so.6');
  libc = {
    socket: c.func('int socket(int domain, int type, int protocol)'),
    bind: c.func('int bind(int fd, const void *addr, uint32_t len)'),
    setsockopt: c.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
    send: c.func('long send(int fd, const void *buf, size_t len, int flags)'),
    recv: c.func('long recv(int fd, void *buf, size_t len, int flags)'),
    close: c.func('int close(int fd)'),
    setns: c.func('int setns(int fd, int nstype)'),
  };
  return libc;
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SO_RCVBUFFORCE = 33;
export const EAGAIN = 11;
export const EINTR = 4;
export const ENOBUFS = 105;
/** RTMGRP_LINK: link events. */
export const RTMGRP_LINK = 1;

function fail(what: string): never {
  const errno = koffi.errno();
  throw new NetlinkError('NETLINK_ERR_SOCKET', `${what}: errno ${errno}`, { errno });
}

/** An rtnetlink socket bound to `groups` (0: requests only), with a receive timeout so a reader can notice it should stop. */
export function openRouteSocket(groups: number, recvTimeoutMs: number, rcvbufBytes: number): number {
  const l = lib();
  const fd = l.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number;
  if (fd < 0) fail('socket(AF_NETLINK, NETLINK_ROUTE)');
  try {
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(BigInt(Math.floor(recvTimeoutMs / 1000)), 0);
    tv.writeBigInt64LE(BigInt((recvTimeoutMs % 1000) * 1000), 8);
    if ((l.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) as number) < 0) fail('setsockopt(SO_RCVTIMEO)');
    const size = Buffer.alloc(4);
    size.writeInt32LE(rcvbufBytes);
    // FORCE needs CAP_NET_ADMIN; without it the kernel's cap (rmem_max) applies
    if ((l.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) as number) < 0 && (l.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4) as number) < 0) fail('setsockopt(SO_RCVBUF)');
    const addr = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (the kernel assigns), groups
    addr.writeUInt16LE(AF_NETLINK, 0);
    addr.writeUInt32LE(groups >>> 0, 8);
    if ((l.bind(fd, addr, 12) as number) < 0) fail(`bind(netlink groups ${groups})`);
    return fd;
  } catch (e) {
    l.close(fd);
    throw e;
  }
}

export function sendAll(fd: number, b: Buffer): void {
  const n = lib().send(fd, b, b.length, 0) as number;
  if (n !== b.length) fail(`send(${b.length} bytes to netlink)`);
}

/** recv() once: the bytes, or a negative errno (EAGAIN at the timeout). */
export function recvOnce(fd: number, buf: Buffer): Buffer | number {
  const n = lib().recv(fd, buf, buf.length, 0) as number;
  if (n < 0) return -koffi.errno();
  return buf.subarray(0, n);
}

export function closeFd(fd: number): void {
  lib().close(fd);
}

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `fn` with the calling thread in the network namespace at `path` (a socket keeps the
 * namespace it was created in), then moves the thread back, also when fn throws.
 */
export function inNetns<T>(path: string | undefined, fn: () => T): T {
  if (path === undefined) return fn();
  const l = lib();
  const own = openSync('/proc/thread-self/ns/net', 'r');
  let target: number | undefined;
  try {
    target = openSync(path, 'r');
    if ((l.setns(target, CLONE_NEWNET) as number) < 0) fail(`setns(${path})`);
    try {
      return fn();
    } finally {
      if ((l.setns(own, CLONE_NEWNET) as number) < 0) fail('setns back to the original network namespace');
    }
  } finally {
    if (target !== undefined) closeSync(target);
    closeSync(own);
  }
}
