// The decision and the parsers on crafted frames (BPF_PROG_TEST_RUN): every
// mode, VLAN / QinQ, IPv6 extension headers, fragments, L3 devices, truncated
// and unknown frames, implicit allows, DNS bypass, dry-run, events and stats.
// The same frames go through the TC program and the cgroup_skb backstop.
import type { BpfProgram } from '@netfence/bpf-loader';
import { encodeConfig, isTcDrop, mapSizes, OBJECTS, REASON, type AttachmentConfig, type ReasonName } from '@netfence/bpf-programs';
import { arp, eth, ETH_P, extAuth, extFragment, extOpts, extRouting, icmp, ipv4, ipv6, NEXTHDR, PROTO, tcp, udp } from './frames';
import { assertKernelTestable, Policy } from './helpers';

const ID = 4242;
const LOOPBACK = 1;
const DNS = { v4: '10.200.1.1', v6: '2001:db8:1::1', port: 5353 };
const base = (mode: AttachmentConfig['mode'], extra: Partial<AttachmentConfig> = {}): AttachmentConfig => ({
  mode,
  attachmentId: ID,
  dnsServer: DNS,
  ...extra,
});

const v4 = (dst: string, l4: Buffer, proto: number, tags: number[] = []) => eth(ETH_P.IP, ipv4({ dst, proto, payload: l4 }), tags);
const v6 = (dst: string, l4: Buffer, proto: number, hopLimit?: number) =>
  eth(ETH_P.IPV6, ipv6({ dst, nexthdr: proto, payload: l4, ...(hopLimit !== undefined ? { hopLimit } : {}) }));

describe('datapath decisions on crafted frames', () => {
  let tc: Policy;
  let xdp: Policy;
  let cg: Policy;
  let tcProg: BpfProgram;
  let xdpProg: BpfProgram;
  let skbProg: BpfProgram;

  beforeAll(() => {
    assertKernelTestable();
    tc = Policy.load('tc');
    tc.bindTc(LOOPBACK, 'ingress'); // a test run's skb is on the loopback device
    // BPF_PROG_TEST_RUN zeroes a cgroup program's storage on every run: the fixed-slot build
    cg = Policy.load('cgroupFixedSlot', { programs: [OBJECTS.cgroup.programs.egress.name] });
    tcProg = tc.coll.program(OBJECTS.tc.programs.ingress.name);
    xdp = Policy.load('xdp');
    xdp.bindTc(LOOPBACK, 'xdp'); // and an XDP test run's frame arrives on the loopback's queue 0
    xdpProg = xdp.coll.program(OBJECTS.xdp.programs.filter.name);
    skbProg = cg.coll.program(OBJECTS.cgroup.programs.egress.name);
    for (const p of [tc, xdp, cg]) {
      p.allow('10.200.2.0/24', '203.0.113.7', '2001:db8:2::/48', '10.200.9.0/24', '10.200.8.0/24');
      p.deny('10.200.2.66', '2001:db8:2:1::/64', '10.200.9.0/24', '10.200.8.0/21', '10.200.2.128/25');
      p.allow('10.200.2.130'); // allow /32 inside deny /25 inside allow /24
      p.watch();
    }
  });
  afterAll(() => {
    tc?.close();
    xdp?.close();
    cg?.close();
  });

  /** Runs the frame through the TC program; returns 'pass' | 'drop'. */
  function runTc(frame: Buffer): 'pass' | 'drop' {
    return isTcDrop(tcProg.testRun({ data: frame }).retval) ? 'drop' : 'pass';
  }
  /** Runs the frame through the XDP program: XDP_DROP 1, XDP_PASS 2. */
  function runXdp(frame: Buffer): 'pass' | 'drop' {
    const r = xdpProg.testRun({ data: frame }).retval;
    if (r !== 1 && r !== 2) throw new Error(`XDP returned ${r}`);
    return r === 1 ? 'drop' : 'pass';
  }
  /** Runs the frame through the cgroup_skb program (test-run strips the Ethernet header). */
  function runSkb(frame: Buffer): 'pass' | 'drop' {
    return skbProg.testRun({ data: frame }).retval === 1 ? 'pass' : 'drop';
  }

  interface Case {
    readonly name: string;
    readonly frame: Buffer;
    readonly mode: AttachmentConfig['mode'];
    readonly extra?: Partial<AttachmentConfig>;
    readonly expect: 'pass' | 'drop';
    readonly reason?: ReasonName;
    /** Frames the skb backstop cannot see the same way (L2-only). */
    readonly tcOnly?: boolean;
  }

  const cases: Case[] = [
    // disabled: everything passes, even garbage
    { name: 'disabled passes a denied address', frame: v4('10.200.2.66', tcp(80), PROTO.TCP), mode: 'DISABLED', expect: 'pass' },
    { name: 'disabled passes an unknown ethertype', frame: eth(ETH_P.LLDP, Buffer.alloc(40)), mode: 'DISABLED', expect: 'pass', tcOnly: true },
    // allowlist, IPv4
    { name: 'allowlist: allowed /24', frame: v4('10.200.2.5', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: allowed /32', frame: v4('203.0.113.7', udp(9), PROTO.UDP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: not allowed', frame: v4('10.200.3.5', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED' },
    { name: 'allowlist: ICMP not allowed', frame: v4('10.200.3.5', icmp(8), PROTO.ICMP), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED' },
    { name: 'allowlist: longer deny wins', frame: v4('10.200.2.66', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'allowlist: deny wins a tie', frame: v4('10.200.9.1', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'allowlist: longer allow beats shorter deny', frame: v4('10.200.8.1', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: /32 allow inside /25 deny', frame: v4('10.200.2.130', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: /25 deny inside /24 allow', frame: v4('10.200.2.131', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'allowlist: 169.254.169.254 is not implicit', frame: v4('169.254.169.254', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'LINK_LOCAL' },
    // allowlist, IPv6
    { name: 'allowlist: IPv6 allowed', frame: v6('2001:db8:2::9', tcp(443), PROTO.TCP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: IPv6 not allowed', frame: v6('2001:db8:3::9', tcp(443), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED' },
    { name: 'allowlist: IPv6 longer deny', frame: v6('2001:db8:2:1::9', tcp(443), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'allowlist: IPv6 link-local not implicit', frame: v6('fe80::1', udp(9), PROTO.UDP), mode: 'ALLOWLIST', expect: 'drop', reason: 'LINK_LOCAL' },
    { name: 'allowlist: IPv4-mapped IPv6 checked as IPv4 (allowed)', frame: v6('::ffff:10.200.2.5', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'allowlist: IPv4-mapped IPv6 checked as IPv4 (not allowed)', frame: v6('::ffff:10.200.3.5', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED' },
    { name: 'allowlist: IPv4-mapped IPv6 checked as IPv4 (denied)', frame: v6('::ffff:10.200.2.66', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR' },
    // extension headers
    {
      name: 'IPv6 hop-by-hop + dest opts + routing(0 left) + AH + fragment(first) to a denied port-less path',
      frame: eth(
        ETH_P.IPV6,
        ipv6({
          dst: '2001:db8:3::1',
          nexthdr: NEXTHDR.HOP,
          payload: Buffer.concat([
            extOpts(NEXTHDR.DEST),
            extOpts(NEXTHDR.ROUTING),
            extRouting(NEXTHDR.AUTH, 0),
            extAuth(NEXTHDR.FRAGMENT),
            extFragment(PROTO.UDP, 0, true),
            udp(53),
          ]),
        }),
      ),
      mode: 'ALLOWLIST',
      expect: 'drop',
      reason: 'NOT_ALLOWED',
    },
    {
      name: 'IPv6 extension headers to an allowed address pass',
      frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.HOP, payload: Buffer.concat([extOpts(NEXTHDR.DEST), extOpts(PROTO.TCP), tcp(443)]) })),
      mode: 'ALLOWLIST',
      expect: 'pass',
    },
    {
      name: 'IPv6 DNS port found behind extension headers (dns filter)',
      frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.HOP, payload: Buffer.concat([extOpts(NEXTHDR.FRAGMENT), extFragment(PROTO.UDP, 0, true), udp(53)]) })),
      mode: 'ALLOWLIST',
      extra: { dnsFilter: true },
      expect: 'drop',
      reason: 'DNS_BYPASS',
    },
    {
      name: 'IPv6 routing header with segments left is refused',
      frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.ROUTING, payload: Buffer.concat([extRouting(PROTO.TCP, 1), tcp(443)]) })),
      mode: 'ALLOWLIST',
      expect: 'drop',
      reason: 'UNPARSABLE',
    },
    {
      name: 'IPv6 with 9 extension headers is refused',
      frame: eth(
        ETH_P.IPV6,
        ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.DEST, payload: Buffer.concat([...Array.from({ length: 8 }, () => extOpts(NEXTHDR.DEST)), extOpts(PROTO.TCP), tcp(1)]) }),
      ),
      mode: 'ALLOWLIST',
      expect: 'drop',
      reason: 'UNPARSABLE',
    },
    {
      name: 'IPv6 non-first fragment to an allowed address passes (address only)',
      frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.FRAGMENT, payload: Buffer.concat([extFragment(PROTO.UDP, 100, false), Buffer.alloc(16)]) })),
      mode: 'ALLOWLIST',
      extra: { dnsFilter: true },
      expect: 'pass',
    },
    {
      name: 'IPv6 non-first fragment to another address is dropped',
      frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:3::1', nexthdr: NEXTHDR.FRAGMENT, payload: Buffer.concat([extFragment(PROTO.UDP, 100, false), Buffer.alloc(16)]) })),
      mode: 'ALLOWLIST',
      expect: 'drop',
      reason: 'NOT_ALLOWED',
    },
    // IPv4 fragments and header checks
    { name: 'IPv4 non-first fragment to an allowed address passes', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.UDP, payload: Buffer.alloc(8), fragOffset: 10 })), mode: 'ALLOWLIST', expect: 'pass' },
    { name: 'IPv4 non-first fragment elsewhere is dropped', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.3.5', proto: PROTO.UDP, payload: Buffer.alloc(8), fragOffset: 10 })), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED' },
    { name: 'IPv4 first fragment is judged on its ports', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.UDP, payload: udp(53), moreFragments: true })), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'IPv4 with options (IHL 6) parses the ports after them', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.TCP, payload: tcp(853), ihl: 6 })), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'IPv4 IHL < 5 is refused', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.TCP, payload: tcp(80), ihl: 4 })), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE' },
    { name: 'IPv4 header with version 6 is refused', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.TCP, payload: tcp(80), version: 6 })), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    // (test-run refuses untagged frames whose IP header the kernel cannot pull: tag them)
    { name: 'truncated IPv4 header is refused', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.TCP, payload: tcp(80) }).subarray(0, 12), [ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    { name: 'truncated TCP header is refused', frame: eth(ETH_P.IP, ipv4({ dst: '10.200.2.5', proto: PROTO.TCP, payload: Buffer.alloc(2) })), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE' },
    { name: 'truncated IPv6 header is refused', frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: PROTO.TCP, payload: tcp(1) }).subarray(0, 30), [ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    { name: 'truncated extension header chain is refused', frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2::1', nexthdr: NEXTHDR.HOP, payload: Buffer.alloc(1) })), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE' },
    { name: 'unknown ethertype is refused in an enforcing mode', frame: eth(ETH_P.LLDP, Buffer.alloc(40)), mode: 'DENYLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    { name: 'tagged frame with no IP header is refused', frame: eth(ETH_P.IP, Buffer.alloc(0), [ETH_P.VLAN]), mode: 'DENYLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    // VLAN / QinQ (TC only: the skb backstop sees L3)
    { name: '802.1Q to a not-allowed address is dropped', frame: v4('10.200.3.5', tcp(80), PROTO.TCP, [ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED', tcOnly: true },
    { name: '802.1Q to an allowed address passes', frame: v4('10.200.2.5', tcp(80), PROTO.TCP, [ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'pass', tcOnly: true },
    { name: 'QinQ (802.1ad + 802.1Q) to a not-allowed address is dropped', frame: v4('10.200.3.5', tcp(80), PROTO.TCP, [ETH_P.QINQ, ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'NOT_ALLOWED', tcOnly: true },
    { name: 'QinQ to an allowed address passes', frame: v4('10.200.2.5', tcp(80), PROTO.TCP, [ETH_P.QINQ, ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'pass', tcOnly: true },
    { name: 'QinQ IPv6 denied', frame: eth(ETH_P.IPV6, ipv6({ dst: '2001:db8:2:1::1', nexthdr: PROTO.UDP, payload: udp(9) }), [ETH_P.QINQ, ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'DENY_CIDR', tcOnly: true },
    { name: 'three VLAN tags are refused', frame: v4('10.200.2.5', tcp(80), PROTO.TCP, [ETH_P.QINQ, ETH_P.VLAN, ETH_P.VLAN]), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    { name: 'VLAN tag with a truncated payload is refused', frame: eth(ETH_P.VLAN, Buffer.alloc(2)), mode: 'ALLOWLIST', expect: 'drop', reason: 'UNPARSABLE', tcOnly: true },
    { name: 'VLAN-tagged ARP passes', frame: eth(ETH_P.ARP, arp(), [ETH_P.VLAN]), mode: 'BLOCK_ALL', expect: 'pass', tcOnly: true },
    // denylist
    { name: 'denylist: unlisted passes', frame: v4('10.200.3.5', tcp(80), PROTO.TCP), mode: 'DENYLIST', expect: 'pass' },
    { name: 'denylist: denied is dropped', frame: v4('10.200.2.66', tcp(80), PROTO.TCP), mode: 'DENYLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'denylist: deny wins a tie', frame: v4('10.200.9.3', tcp(80), PROTO.TCP), mode: 'DENYLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'denylist: longer allow exempts from a shorter deny', frame: v4('10.200.8.3', tcp(80), PROTO.TCP), mode: 'DENYLIST', expect: 'pass' },
    { name: 'denylist: IPv4-mapped denied', frame: v6('::ffff:10.200.2.66', udp(9), PROTO.UDP), mode: 'DENYLIST', expect: 'drop', reason: 'DENY_CIDR' },
    { name: 'denylist: DNS bypass with dns filter', frame: v4('10.200.3.5', udp(53), PROTO.UDP), mode: 'DENYLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'denylist: DNS without dns filter passes', frame: v4('10.200.3.5', udp(53), PROTO.UDP), mode: 'DENYLIST', expect: 'pass' },
    // block_all and the implicit allows
    { name: 'block_all: allowed address dropped', frame: v4('10.200.2.5', tcp(80), PROTO.TCP), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    { name: 'block_all: ARP passes', frame: eth(ETH_P.ARP, arp()), mode: 'BLOCK_ALL', expect: 'pass', tcOnly: true },
    { name: 'block_all: loopback passes', frame: v4('127.0.0.1', tcp(80), PROTO.TCP), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: ::1 passes', frame: v6('::1', tcp(80), PROTO.TCP), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: own DNS server udp passes', frame: v4(DNS.v4, udp(DNS.port), PROTO.UDP), mode: 'BLOCK_ALL', extra: { dnsFilter: true }, expect: 'pass' },
    { name: 'block_all: own DNS server tcp passes', frame: v4(DNS.v4, tcp(DNS.port), PROTO.TCP), mode: 'BLOCK_ALL', extra: { dnsFilter: true }, expect: 'pass' },
    { name: 'block_all: own DNS server v6 passes', frame: v6(DNS.v6, udp(DNS.port), PROTO.UDP), mode: 'BLOCK_ALL', extra: { dnsFilter: true }, expect: 'pass' },
    { name: 'block_all: own DNS server other port dropped', frame: v4(DNS.v4, tcp(22), PROTO.TCP), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    { name: 'block_all: own DNS address port 53 is a bypass', frame: v4(DNS.v4, udp(53), PROTO.UDP), mode: 'BLOCK_ALL', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'block_all: DHCPv4 broadcast passes', frame: v4('255.255.255.255', udp(67, 68), PROTO.UDP), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: DHCPv4 unicast is not implicit', frame: v4('10.200.2.1', udp(67, 68), PROTO.UDP), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    { name: 'block_all: DHCPv6 to ff02::1:2 passes', frame: v6('ff02::1:2', udp(547, 546), PROTO.UDP), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: NDP neighbour solicitation passes', frame: v6('ff02::1:ff00:1', icmp(135), PROTO.ICMPV6, 255), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: NDP router solicitation passes', frame: v6('ff02::2', icmp(133), PROTO.ICMPV6, 255), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: NDP to link-local unicast passes', frame: v6('fe80::1', icmp(136), PROTO.ICMPV6, 255), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: MLDv2 report passes', frame: v6('ff02::16', icmp(143), PROTO.ICMPV6, 1), mode: 'BLOCK_ALL', expect: 'pass' },
    { name: 'block_all: NDP with hop limit 64 is not NDP', frame: v6('ff02::1:ff00:1', icmp(135), PROTO.ICMPV6, 64), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    { name: 'block_all: NDP type to a global address is not implicit', frame: v6('2001:db8:2::1', icmp(135), PROTO.ICMPV6, 255), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    { name: 'block_all: ICMPv6 echo dropped', frame: v6('2001:db8:2::1', icmp(128), PROTO.ICMPV6), mode: 'BLOCK_ALL', expect: 'drop', reason: 'BLOCK_ALL' },
    // DNS filtering
    { name: 'dns filter: udp 53 to an allowed resolver is a bypass', frame: v4('10.200.2.53', udp(53), PROTO.UDP), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'dns filter: tcp 53', frame: v4('10.200.2.53', tcp(53), PROTO.TCP), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'dns filter: tcp 853 (DoT)', frame: v4('10.200.2.53', tcp(853), PROTO.TCP), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'dns filter: IPv6 udp 53', frame: v6('2001:db8:2::53', udp(53), PROTO.UDP), mode: 'ALLOWLIST', extra: { dnsFilter: true }, expect: 'drop', reason: 'DNS_BYPASS' },
    { name: 'dns filter off: udp 53 to an allowed address passes', frame: v4('10.200.2.53', udp(53), PROTO.UDP), mode: 'ALLOWLIST', expect: 'pass' },
    // unknown mode fails closed
    { name: 'unknown mode value fails closed', frame: v4('10.200.2.5', tcp(80), PROTO.TCP), mode: 'ALLOWLIST', extra: { __rawMode: 9 } as Partial<AttachmentConfig>, expect: 'drop', reason: 'BAD_CONFIG' },
  ];

  function configure(p: Policy, c: Case): void {
    const raw = (c.extra as { __rawMode?: number } | undefined)?.__rawMode;
    p.setConfig(base(c.mode, c.extra));
    if (raw !== undefined) {
      const m = p.map('nf_config');
      const slot = Buffer.alloc(4);
      slot.writeUInt32LE(p.slot);
      const v = m.lookup(slot);
      if (!v) throw new Error('no config');
      v.writeUInt32LE(raw, 0);
      m.update(slot, v);
    }
  }

  // The device hooks see the same frames: XDP must give every verdict TC gives.
  const deviceHooks = [
    ['TC', () => tc, (f: Buffer) => runTc(f)],
    ['XDP', () => xdp, (f: Buffer) => runXdp(f)],
  ] as const;
  it.each(deviceHooks.flatMap(([h, get, run]) => cases.map((c) => [h, c.name, get, run, c] as const)))('%s: %s', (hook, _n, get, run, c) => {
    const p = get();
    configure(p, c);
    p.drain();
    const before = p.stats();
    expect(run(c.frame)).toBe(c.expect);
    const after = p.stats();
    const events = p.drain();
    if (c.expect === 'drop') {
      expect(after.blocked - before.blocked).toBe(1n);
      const reason = c.reason as Exclude<ReasonName, 'NONE'>;
      expect(after.byReason[reason] - before.byReason[reason]).toBe(1n);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ reason: c.reason, reasonCode: REASON[reason], hook, dryRun: false, attachmentId: ID, mode: c.reason === 'BAD_CONFIG' ? 'UNKNOWN' : c.mode });
    } else {
      expect(after.allowed - before.allowed).toBe(1n);
      expect(after.blocked).toBe(before.blocked);
      expect(events).toHaveLength(0);
    }
  });

  it.each(cases.filter((c) => !c.tcOnly).map((c) => [c.name, c] as const))('cgroup_skb: %s', (_n, c) => {
    configure(cg, c);
    cg.drain();
    const before = cg.stats();
    expect(runSkb(c.frame)).toBe(c.expect);
    const events = cg.drain();
    if (c.expect === 'drop') {
      expect(cg.stats().blocked - before.blocked).toBe(1n);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ reason: c.reason, hook: 'SKB', dryRun: false });
    } else {
      expect(events).toHaveLength(0);
    }
  });

  it('events carry the destination, port, protocol and deciding prefix', () => {
    tc.setConfig(base('ALLOWLIST'));
    tc.drain();
    runTc(v4('10.200.2.66', tcp(8080), PROTO.TCP));
    runTc(v6('2001:db8:2:1::abcd', udp(9999), PROTO.UDP));
    runTc(v6('::ffff:10.200.3.9', tcp(22), PROTO.TCP));
    const ev = tc.drain();
    expect(ev.map((e) => [e.family, e.dstAddr, e.dstPort, e.protocol, e.reason, e.rulePrefixLen])).toEqual([
      [4, '10.200.2.66', 8080, PROTO.TCP, 'DENY_CIDR', 32],
      [6, '2001:db8:2:1::abcd', 9999, PROTO.UDP, 'DENY_CIDR', 64],
      [4, '10.200.3.9', 22, PROTO.TCP, 'NOT_ALLOWED', undefined],
    ]);
    expect(ev[0]?.tsNs).toBeGreaterThan(0n);
  });

  it('dry-run passes every would-be drop, counts it and reports it', () => {
    tc.setConfig(base('BLOCK_ALL', { dryRun: true, dnsFilter: true }));
    tc.drain();
    const before = tc.stats();
    const frames = [v4('10.200.2.5', tcp(80), PROTO.TCP), v4('10.200.3.5', udp(53), PROTO.UDP), eth(ETH_P.LLDP, Buffer.alloc(40)), v4('10.200.2.5', tcp(80), PROTO.TCP, [ETH_P.QINQ, ETH_P.VLAN, ETH_P.VLAN])];
    for (const f of frames) expect(runTc(f)).toBe('pass');
    const after = tc.stats();
    expect(after.blocked).toBe(before.blocked);
    expect(after.dryRunWouldBlock - before.dryRunWouldBlock).toBe(4n);
    const ev = tc.drain();
    expect(ev.map((e) => [e.reason, e.dryRun])).toEqual([
      ['BLOCK_ALL', true],
      ['DNS_BYPASS', true],
      ['UNPARSABLE', true],
      ['UNPARSABLE', true],
    ]);
  });

  it('an allow entry records when the kernel last saw traffic to it (refreshed at most once a second)', () => {
    tc.setConfig(base('ALLOWLIST'));
    tc.allow('10.200.7.0/24');
    expect(tc.lastSeen('10.200.7.0/24')).toBe(0n);
    const t0 = process.hrtime.bigint();
    runTc(v4('10.200.7.1', tcp(80), PROTO.TCP));
    const seen = tc.lastSeen('10.200.7.0/24') ?? 0n;
    // coarse clock: within a few ticks of CLOCK_MONOTONIC
    expect(seen).toBeGreaterThan(t0 - 50_000_000n);
    expect(seen).toBeLessThanOrEqual(process.hrtime.bigint());
    runTc(v4('10.200.7.2', tcp(80), PROTO.TCP));
    expect(tc.lastSeen('10.200.7.0/24')).toBe(seen);
    // a dropped packet (deny wins) does not touch the allow entry
    tc.deny('10.200.7.2');
    tc.remove('allow', '10.200.7.0/24');
    tc.allow('10.200.7.0/24');
    runTc(v4('10.200.7.2', tcp(80), PROTO.TCP));
    expect(tc.lastSeen('10.200.7.0/24')).toBe(0n);
  });

  it('an allow entry past its deadline (expires_s, monotonic seconds) allows nothing, in TC and the cgroup backstop', () => {
    const nowS = Number(process.hrtime.bigint() / 1_000_000_000n);
    const frame = v4('10.200.6.9', tcp(80), PROTO.TCP);
    for (const [p, run] of [
      [tc, runTc],
      [cg, runSkb],
    ] as const) {
      p.setConfig(base('ALLOWLIST'));
      const set = (expiresS: number) => p.setRule('10.200.6.0/24', { allow: true, deny: false, lastSeenNs: 0n, expiresS });
      set(0); // no deadline
      expect(run(frame)).toBe('pass');
      set(nowS + 60);
      expect(run(frame)).toBe('pass');
      set(nowS - 1); // lapsed while nobody removed it (the daemon is down)
      expect(run(frame)).toBe('drop');
      expect(p.drain().at(-1)).toMatchObject({ reason: 'NOT_ALLOWED' });
      p.remove('allow', '10.200.6.0/24');
    }
  });

  it('a lapsed allow entry is judged by the deny that holds it (recorded in the entry), in every enforcing mode', () => {
    const nowS = Number(process.hrtime.bigint() / 1_000_000_000n);
    const frame = v4('10.200.11.9', tcp(80), PROTO.TCP);
    for (const [p, run] of [
      [tc, runTc],
      [cg, runSkb],
    ] as const) {
      p.deny('10.200.0.0/16');
      // allow /32 inside deny /16, past its deadline: the deny decides, with its own prefix
      p.setRule('10.200.11.9/32', { allow: true, deny: false, lastSeenNs: 0n, expiresS: nowS - 1, shadowDenyLen: 16 });
      for (const mode of ['ALLOWLIST', 'DENYLIST'] as const) {
        p.setConfig(base(mode));
        p.drain();
        expect([mode, run(frame)]).toEqual([mode, 'drop']);
        expect(p.drain().at(-1)).toMatchObject({ reason: 'DENY_CIDR', rulePrefixLen: 16 });
      }
      // not yet lapsed: the allow wins in both modes
      p.setRule('10.200.11.9/32', { allow: true, deny: false, lastSeenNs: 0n, expiresS: nowS + 60, shadowDenyLen: 16 });
      for (const mode of ['ALLOWLIST', 'DENYLIST'] as const) {
        p.setConfig(base(mode));
        expect([mode, run(frame)]).toEqual([mode, 'pass']);
      }
      // lapsed and no deny holds it: denylist passes (nothing denies it), allowlist drops
      p.remove('deny', '10.200.0.0/16');
      p.setRule('10.200.11.9/32', { allow: true, deny: false, lastSeenNs: 0n, expiresS: nowS - 1 });
      p.setConfig(base('DENYLIST'));
      expect(run(frame)).toBe('pass');
      p.setConfig(base('ALLOWLIST'));
      expect(run(frame)).toBe('drop');
      p.remove('allow', '10.200.11.9/32');
    }
  });

  it('one loaded program set judges each attachment by its own slot: config, rules and counters', () => {
    // slot 2 is bound to the loopback's egress: the egress program finds it, the ingress program slot 1
    const other = tc.sibling(2);
    try {
      other.bindTc(LOOPBACK, 'egress');
      const egressProg = tc.coll.program(OBJECTS.tc.programs.egress.name);
      const runEgress = (f: Buffer) => (isTcDrop(egressProg.testRun({ data: f }).retval) ? 'drop' : 'pass');
      const frame = v4('10.200.12.1', tcp(80), PROTO.TCP);
      tc.setConfig(base('ALLOWLIST'));
      other.setConfig({ ...base('ALLOWLIST'), attachmentId: 99 });
      other.allow('10.200.12.0/24');
      tc.drain();
      const [b1, b2] = [tc.stats(), other.stats()];
      expect([runTc(frame), runEgress(frame)]).toEqual(['drop', 'pass']);
      other.setConfig({ ...base('BLOCK_ALL'), attachmentId: 99 });
      tc.setConfig(base('DISABLED'));
      expect([runTc(frame), runEgress(frame)]).toEqual(['pass', 'drop']);
      const [a1, a2] = [tc.stats(), other.stats()];
      expect([a1.blocked - b1.blocked, a1.allowed - b1.allowed]).toEqual([1n, 1n]);
      expect([a2.blocked - b2.blocked, a2.allowed - b2.allowed]).toEqual([1n, 1n]);
      const ev = tc.drain();
      expect(ev.map((e) => e.attachmentId).sort()).toEqual([ID, 99]);
    } finally {
      other.close();
    }
  });

  it('fails closed without an attachment: a device bound to no slot, and a slot whose config is not active, drop', () => {
    const egressProg = tc.coll.program(OBJECTS.tc.programs.egress.name);
    const frame = v4('10.200.2.5', tcp(80), PROTO.TCP); // allowed by slot 1's rules
    tc.setConfig(base('DISABLED'));
    expect(runTc(frame)).toBe('pass');
    // nothing bound to the loopback's egress
    expect(isTcDrop(egressProg.testRun({ data: frame }).retval)).toBe(true);
    // a free slot (all-zero config: would read as DISABLED, but ACTIVE is not set)
    const slot = Buffer.alloc(4);
    slot.writeUInt32LE(tc.slot);
    tc.map('nf_config').update(slot, Buffer.alloc(48));
    expect(runTc(frame)).toBe('drop');
    // the same config with ACTIVE passes again
    tc.map('nf_config').update(slot, encodeConfig(base('DISABLED')));
    expect(runTc(frame)).toBe('pass');
  });

  it('a full ring buffer counts events_lost and never changes the verdict', () => {
    const small = Policy.load('tc', { mapSizes: mapSizes({ ringBytes: 4096 }) });
    try {
      small.bindTc(LOOPBACK, 'ingress');
      small.setConfig(base('BLOCK_ALL'));
      const prog = small.coll.program(OBJECTS.tc.programs.ingress.name);
      const frame = v4('10.200.2.5', tcp(80), PROTO.TCP);
      const r = prog.testRun({ data: frame, repeat: 200 });
      expect(isTcDrop(r.retval)).toBe(true);
      const st = small.stats();
      expect(st.blocked).toBe(200n);
      // 4096 bytes hold at most 4096 / (56 + 8) = 64 records
      expect(st.eventsLost).toBeGreaterThanOrEqual(200n - 64n);
      small.watch();
      expect(small.drain().length).toBe(Number(200n - st.eventsLost));
    } finally {
      small.close();
    }
  });

  describe('the DNS rate limit (dns_limit) on queries to the own server', () => {
    const udpQuery = v4(DNS.v4, udp(DNS.port), PROTO.UDP);
    const udpQuery6 = v6(DNS.v6, udp(DNS.port), PROTO.UDP);
    const tcpSyn = v4(DNS.v4, tcp(DNS.port), PROTO.TCP);
    const tcpData = v4(DNS.v4, tcp(DNS.port, 40000, 0x18), PROTO.TCP); // PSH+ACK: an established connection's query
    const other = v4('10.200.2.5', udp(9), PROTO.UDP); // allowed, not DNS
    const hooks = [
      ['TC', () => tc, runTc],
      ['cgroup_skb', () => cg, runSkb],
    ] as const;
    afterEach(() => {
      for (const p of [tc, cg]) p.setDnsLimit({ rateQps: 0, burst: 0 });
    });

    /** Runs a frame n times (BPF_PROG_TEST_RUN repeat) and returns how many passed, from the stats. */
    function passes(p: Policy, run: (f: Buffer) => 'pass' | 'drop', frame: Buffer, n: number): { passed: bigint; limited: bigint; last: 'pass' | 'drop' } {
      const before = p.stats();
      let last: 'pass' | 'drop' = 'pass';
      if (n === 1) last = run(frame);
      else {
        const prog = p === tc ? tcProg : skbProg;
        const r = prog.testRun({ data: frame, repeat: n }).retval;
        last = p === tc ? (isTcDrop(r) ? 'drop' : 'pass') : r === 1 ? 'pass' : 'drop';
      }
      const after = p.stats();
      return { passed: after.allowed - before.allowed, limited: after.dnsRateLimited - before.dnsRateLimited, last };
    }

    it.each(hooks)('%s: a burst is let through up to `burst`, the rest dropped and counted with no event; other traffic and established TCP pass', (_h, get, run) => {
      const p = get();
      p.setConfig(base('BLOCK_ALL', { dnsFilter: true }));
      p.setDnsLimit({ rateQps: 1, burst: 50 });
      p.drain();
      const blockedBefore = p.stats().blocked;
      expect(passes(p, run, udpQuery, 50)).toEqual({ passed: 50n, limited: 0n, last: 'pass' });
      expect(passes(p, run, udpQuery, 30)).toEqual({ passed: 0n, limited: 30n, last: 'drop' });
      expect(passes(p, run, udpQuery6, 1)).toEqual({ passed: 0n, limited: 1n, last: 'drop' }); // one bucket per attachment
      expect(passes(p, run, tcpSyn, 1)).toEqual({ passed: 0n, limited: 1n, last: 'drop' }); // a new TCP connection is a query
      expect(passes(p, run, tcpData, 5)).toEqual({ passed: 5n, limited: 0n, last: 'pass' }); // its data is never cut
      p.setConfig(base('ALLOWLIST', { dnsFilter: true }));
      expect(passes(p, run, other, 5)).toEqual({ passed: 5n, limited: 0n, last: 'pass' });
      expect(p.stats().blocked).toBe(blockedBefore); // not a policy drop
      expect(p.drain()).toHaveLength(0);
    });

    it.each(hooks)('%s: under the limit every query passes', async (_h, get, run) => {
      const p = get();
      p.setConfig(base('ALLOWLIST', { dnsFilter: true }));
      p.setDnsLimit({ rateQps: 20, burst: 1 }); // one query every 50 ms, no burst
      for (let i = 0; i < 8; i++) {
        expect(passes(p, run, i % 2 ? udpQuery : tcpSyn, 1)).toEqual({ passed: 1n, limited: 0n, last: 'pass' });
        await new Promise((r) => setTimeout(r, 80));
      }
    });

    it.each(hooks)('%s: rate 0 is unlimited', (_h, get, run) => {
      const p = get();
      p.setConfig(base('ALLOWLIST', { dnsFilter: true }));
      p.setDnsLimit({ rateQps: 0, burst: 0 });
      expect(passes(p, run, udpQuery, 20_000)).toEqual({ passed: 20_000n, limited: 0n, last: 'pass' });
    });

    it.each(hooks)('%s: after a pause the bucket refills at the rate (and no further than burst)', async (_h, get, run) => {
      const p = get();
      p.setConfig(base('ALLOWLIST', { dnsFilter: true }));
      p.setDnsLimit({ rateQps: 10, burst: 5 });
      expect(passes(p, run, udpQuery, 10)).toEqual({ passed: 5n, limited: 5n, last: 'drop' });
      const t0 = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, 450));
      const r = passes(p, run, udpQuery, 20);
      const elapsedMs = Number((process.hrtime.bigint() - t0) / 1_000_000n);
      // 10 a second: at least 4 tokens after 450 ms, never more than the time allows, nor than burst
      expect(r.passed).toBeGreaterThanOrEqual(4n);
      expect(r.passed).toBeLessThanOrEqual(BigInt(Math.min(5, Math.floor(elapsedMs / 100) + 1)));
      expect(r.passed + r.limited).toBe(20n);
      // a long pause fills the bucket to burst, not beyond
      await new Promise((r) => setTimeout(r, 1200));
      expect(passes(p, run, udpQuery, 20)).toMatchObject({ passed: 5n, limited: 15n });
    });

    it.each(hooks)('%s: dry-run does not lift it (it protects the host, it is not policy)', (_h, get, run) => {
      const p = get();
      p.setConfig(base('ALLOWLIST', { dnsFilter: true, dryRun: true }));
      p.setDnsLimit({ rateQps: 1, burst: 3 });
      expect(passes(p, run, udpQuery, 10)).toEqual({ passed: 3n, limited: 7n, last: 'drop' });
    });
  });

  it('an L3 device (NF_FLAG_L3_DEVICE) parses IP at offset 0 and refuses an Ethernet frame', () => {
    // test-run always hands TC an Ethernet frame: with the L3 flag the program must
    // read its first byte (a MAC address) as an IP version nibble and refuse it.
    tc.setConfig(base('ALLOWLIST', { l3Device: true }));
    expect(runTc(v4('10.200.2.5', tcp(80), PROTO.TCP))).toBe('drop');
    tc.setConfig(base('ALLOWLIST'));
    expect(runTc(v4('10.200.2.5', tcp(80), PROTO.TCP))).toBe('pass');
  });
});
