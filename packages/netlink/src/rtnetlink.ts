// rtnetlink messages about links, as bytes: what the kernel sends (RTM_NEWLINK, RTM_DELLINK,
// NLMSG_DONE, NLMSG_ERROR) parsed into LinkRecords, and the dump request that lists links.
// Pure: no socket here (libc.ts), so every case is unit-tested on crafted buffers.
// Layouts: include/uapi/linux/netlink.h, rtnetlink.h, if_link.h (host byte order, 4-byte aligned).

import { NetlinkError } from './netlink-error';

export const NLMSG = { ERROR: 2, DONE: 3, OVERRUN: 4 } as const;
export const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18 } as const;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_HDRLEN = 16;
const IFINFOMSG_LEN = 16;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFF_UP = 0x1;
/** ARPHRD_* of ifinfomsg.ifi_type that matter here. */
export const ARPHRD = { ETHER: 1, LOOPBACK: 772, NONE: 65534 } as const;

/** One link as a message describes it. */
export interface LinkRecord {
  /** 'new': it exists (created, changed, or listed); 'del': it is gone from this namespace. */
  readonly event: 'new' | 'del';
  readonly ifindex: number;
  /** IFLA_IFNAME; '' when the message had none. */
  readonly name: string;
  /** IFLA_INFO_KIND ('veth', 'tun' for tun and tap, 'bridge', ...); undefined for devices without one (e.g. physical NICs, lo). */
  readonly kind: string | undefined;
  /** ifi_type: ARPHRD_ETHER for Ethernet-like devices (tap, veth), ARPHRD_NONE for a tun. */
  readonly arphrd: number;
  /** IFF_UP in ifi_flags. */
  readonly up: boolean;
}

/** What one buffer of messages held. */
export interface ParsedBatch {
  readonly links: LinkRecord[];
  /** NLMSG_DONE seen: a dump is complete. */
  readonly done: boolean;
  /** A negative errno from NLMSG_ERROR (a refused request), if any. */
  readonly error?: number;
}

const align4 = (n: number): number => (n + 3) & ~3;

function cString(b: Buffer, start: number, end: number): string {
  const z = b.indexOf(0, start);
  return b.toString('utf8', start, z >= 0 && z < end ? z : end);
}

/** Walks rtattrs in [start, end): calls `each(type, dataStart, dataEnd)`; stops at a malformed one. */
function attrs(b: Buffer, start: number, end: number, each: (type: number, s: number, e: number) => void): void {
  let off = start;
  while (off + 4 <= end) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2) & 0x3fff; // minus NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (len < 4 || off + len > end) return;
    each(type, off + 4, off + len);
    off += align4(len);
  }
}

function parseLink(b: Buffer, body: number, end: number, event: 'new' | 'del'): LinkRecord {
  if (end - body < IFINFOMSG_LEN) throw new NetlinkError('NETLINK_ERR_MESSAGE', `link message body of ${end - body} bytes, want at least ${IFINFOMSG_LEN}`);
  const arphrd = b.readUInt16LE(body + 2);
  const ifindex = b.readInt32LE(body + 4);
  const flags = b.readUInt32LE(body + 8);
  let name = '';
  let kind: string | undefined;
  attrs(b, body + IFINFOMSG_LEN, end, (type, s, e) => {
    if (type === IFLA_IFNAME) name = cString(b, s, e);
    else if (type === IFLA_LINKINFO)
      attrs(b, s, e, (t, ss, ee) => {
        if (t === IFLA_INFO_KIND) kind = cString(b, ss, ee);
      });
  });
  return { event, ifindex, name, kind, arphrd, up: (flags & IFF_UP) !== 0 };
}

/**
 * Parses one recv() buffer: every netlink message in it. Link messages become LinkRecords,
 * other types are skipped. A message whose length does not fit the buffer ends the walk with
 * NETLINK_ERR_MESSAGE (the kernel never sends one; a short read would).
 */
export function parseMessages(b: Buffer): ParsedBatch {
  const links: LinkRecord[] = [];
  let done = false;
  let error: number | undefined;
  let off = 0;
  while (off + NLMSG_HDRLEN <= b.length) {
    const len = b.readUInt32LE(off);
    const type = b.readUInt16LE(off + 4);
    if (len < NLMSG_HDRLEN || off + len > b.length) throw new NetlinkError('NETLINK_ERR_MESSAGE', `netlink message of length ${len} at offset ${off} of a ${b.length}-byte buffer`);
    const body = off + NLMSG_HDRLEN;
    if (type === RTM.NEWLINK || type === RTM.DELLINK) links.push(parseLink(b, body, off + len, type === RTM.NEWLINK ? 'new' : 'del'));
    else if (type === NLMSG.DONE) done = true;
    else if (type === NLMSG.ERROR && len >= NLMSG_HDRLEN + 4) {
      const errno = b.readInt32LE(body);
      if (errno !== 0) error = errno;
    }
    off += align4(len);
  }
  return { links, done, ...(error !== undefined ? { error } : {}) };
}

/** An RTM_GETLINK dump request (every link of the socket's namespace). */
export function linkDumpRequest(seq: number): Buffer {
  const b = Buffer.alloc(NLMSG_HDRLEN + IFINFOMSG_LEN);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(RTM.GETLINK, 4);
  b.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  // ifinfomsg all zero: AF_UNSPEC, every type, every index
  return b;
}

const IFLA_ALT_IFNAME = 53;
const IFNAMSIZ = 16;

/**
 * An RTM_GETLINK request for one link by name: IFLA_IFNAME for a name of at most 15 bytes,
 * IFLA_ALT_IFNAME for a longer alternative name (the kernel looks both up in one table, so an
 * alternative name of 15 bytes or less is found through IFLA_IFNAME too).
 */
export function linkByNameRequest(seq: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length > 127 || bytes.includes(0)) throw new NetlinkError('NETLINK_ERR_MESSAGE', `interface name ${JSON.stringify(name)} cannot be asked for`);
  const type = bytes.length < IFNAMSIZ ? IFLA_IFNAME : IFLA_ALT_IFNAME;
  const attrLen = 4 + bytes.length + 1;
  const b = Buffer.alloc(NLMSG_HDRLEN + IFINFOMSG_LEN + align4(attrLen));
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(RTM.GETLINK, 4);
  b.writeUInt16LE(NLM_F_REQUEST, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  const a = NLMSG_HDRLEN + IFINFOMSG_LEN;
  b.writeUInt16LE(attrLen, a);
  b.writeUInt16LE(type, a + 2);
  bytes.copy(b, a + 4);
  return b;
}

/** Builds a link message as the kernel would (tests, and documentation of the layout). */
export function encodeLinkMessage(r: LinkRecord): Buffer {
  const attr = (type: number, data: Buffer): Buffer => {
    const a = Buffer.alloc(align4(4 + data.length));
    a.writeUInt16LE(4 + data.length, 0);
    a.writeUInt16LE(type, 2);
    data.copy(a, 4);
    return a;
  };
  const z = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
  const parts = [attr(IFLA_IFNAME, z(r.name))];
  if (r.kind !== undefined) parts.push(attr(IFLA_LINKINFO | 0x8000, attr(IFLA_INFO_KIND, z(r.kind))));
  const body = Buffer.alloc(IFINFOMSG_LEN);
  body.writeUInt16LE(r.arphrd, 2);
  body.writeInt32LE(r.ifindex, 4);
  body.writeUInt32LE(r.up ? IFF_UP : 0, 8);
  const payload = Buffer.concat([body, ...parts]);
  const h = Buffer.alloc(NLMSG_HDRLEN);
  h.writeUInt32LE(NLMSG_HDRLEN + payload.length, 0);
  h.writeUInt16LE(r.event === 'new' ? RTM.NEWLINK : RTM.DELLINK, 4);
  return Buffer.concat([h, payload]);
}
