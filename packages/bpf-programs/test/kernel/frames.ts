// Crafted frames for BPF_PROG_TEST_RUN: Ethernet (with VLAN tags), IPv4, IPv6
// (extension headers), TCP, UDP, ICMP. Checksums are not computed: the
// programs never look at them.
import { parseIp } from '@netfence/bpf-programs';

export const ETH_P = { IP: 0x0800, IPV6: 0x86dd, ARP: 0x0806, VLAN: 0x8100, QINQ: 0x88a8, LLDP: 0x88cc } as const;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** Ethernet frame; `tags` are the VLAN TPIDs outermost first (0x8100 or 0x88a8). */
export function eth(ethertype: number, payload: Buffer, tags: readonly number[] = []): Buffer {
  const dst = Buffer.from([0x02, 0, 0, 0, 0, 1]);
  const src = Buffer.from([0x02, 0, 0, 0, 0, 2]);
  const parts: Buffer[] = [dst, src];
  let vid = 10;
  for (const tpid of tags) parts.push(u16(tpid), u16(vid++));
  parts.push(u16(ethertype), payload);
  return Buffer.concat(parts);
}

/** A TCP header; `flags` defaults to a bare SYN (0x10 is ACK). */
export function tcp(dport: number, sport = 40000, flags = 0x02): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt8(5 << 4, 12);
  b.writeUInt8(flags, 13);
  return b;
}

export function udp(dport: number, sport = 40000, data = Buffer.from('hi')): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + data.length, 4);
  return Buffer.concat([b, data]);
}

export function icmp(type: number, code = 0): Buffer {
  return Buffer.from([type, code, 0, 0, 0, 1, 0, 1]);
}

export const PROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, GRE: 47 } as const;

export interface V4Opts {
  readonly src?: string;
  readonly dst: string;
  readonly proto: number;
  readonly payload: Buffer;
  /** Fragment offset in 8-byte units. */
  readonly fragOffset?: number;
  readonly moreFragments?: boolean;
  readonly ihl?: number;
  readonly version?: number;
}

export function ipv4(o: V4Opts): Buffer {
  const ihl = o.ihl ?? 5;
  const h = Buffer.alloc(Math.max(20, ihl * 4));
  h.writeUInt8(((o.version ?? 4) << 4) | ihl, 0);
  h.writeUInt16BE(h.length + o.payload.length, 2);
  h.writeUInt16BE(((o.moreFragments ? 1 : 0) << 13) | (o.fragOffset ?? 0), 6);
  h.writeUInt8(64, 8);
  h.writeUInt8(o.proto, 9);
  Buffer.from(parseIp(o.src ?? '10.200.1.2').bytes).copy(h, 12);
  Buffer.from(parseIp(o.dst).bytes).copy(h, 16);
  return Buffer.concat([h, o.payload]);
}

export interface V6Opts {
  readonly src?: string;
  readonly dst: string;
  /** Next header of the fixed header (first extension header or the L4 protocol). */
  readonly nexthdr: number;
  /** Extension headers (already encoded) followed by the L4 payload. */
  readonly payload: Buffer;
  readonly hopLimit?: number;
}

export function ipv6(o: V6Opts): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(6 << 28, 0);
  h.writeUInt16BE(o.payload.length, 4);
  h.writeUInt8(o.nexthdr, 6);
  h.writeUInt8(o.hopLimit ?? 64, 7);
  Buffer.from(parseIp(o.src ?? '2001:db8:1::2').bytes).copy(h, 8);
  Buffer.from(parseIp(o.dst).bytes).copy(h, 24);
  return Buffer.concat([h, o.payload]);
}

export const NEXTHDR = { HOP: 0, ROUTING: 43, FRAGMENT: 44, AUTH: 51, DEST: 60, NONE: 59 } as const;

/** A generic 8-byte extension header (hop-by-hop / destination options: PadN). */
export function extOpts(next: number): Buffer {
  return Buffer.from([next, 0, 1, 4, 0, 0, 0, 0]);
}

export function extRouting(next: number, segmentsLeft: number): Buffer {
  return Buffer.from([next, 0, 4, segmentsLeft, 0, 0, 0, 0]);
}

/** Fragment header; offset in 8-byte units. */
export function extFragment(next: number, offset: number, more: boolean): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(next, 0);
  b.writeUInt16BE((offset << 3) | (more ? 1 : 0), 2);
  b.writeUInt32BE(0x1234, 4);
  return b;
}

/** Authentication header with a 12-byte ICV (payload len 4 => (4+2)*4 = 24 bytes). */
export function extAuth(next: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt8(next, 0);
  b.writeUInt8(4, 1);
  return b;
}

export function arp(): Buffer {
  return Buffer.alloc(28, 1);
}
