import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ARPHRD, encodeLinkMessage, linkDumpRequest, NETLINK_ERROR_CODES, parseMessages, type LinkRecord } from './index';

const veth: LinkRecord = { event: 'new', ifindex: 7, name: 'nftap0', kind: 'veth', arphrd: ARPHRD.ETHER, up: true };

describe('rtnetlink link messages', () => {
  it('round-trips a link message: index, name, kind, type, up', () => {
    expect(parseMessages(encodeLinkMessage(veth))).toEqual({ links: [veth], done: false });
    const del: LinkRecord = { event: 'del', ifindex: 9, name: 'nftun1', kind: undefined, arphrd: ARPHRD.NONE, up: false };
    expect(parseMessages(encodeLinkMessage(del)).links).toEqual([del]);
  });

  it('reads several messages from one buffer and sees the end of a dump', () => {
    const done = Buffer.alloc(20);
    done.writeUInt32LE(20, 0);
    done.writeUInt16LE(3, 4); // NLMSG_DONE
    const b = Buffer.concat([encodeLinkMessage(veth), encodeLinkMessage({ ...veth, ifindex: 8, name: 'nftap1' }), done]);
    const r = parseMessages(b);
    expect(r.links.map((l) => l.name)).toEqual(['nftap0', 'nftap1']);
    expect(r.done).toBe(true);
  });

  it('reports an NLMSG_ERROR errno and skips other message types', () => {
    const err = Buffer.alloc(36);
    err.writeUInt32LE(36, 0);
    err.writeUInt16LE(2, 4); // NLMSG_ERROR
    err.writeInt32LE(-1, 16); // -EPERM
    const other = Buffer.alloc(16);
    other.writeUInt32LE(16, 0);
    other.writeUInt16LE(24, 4); // RTM_NEWROUTE: not ours
    expect(parseMessages(Buffer.concat([other, err]))).toEqual({ links: [], done: false, error: -1 });
  });

  it('refuses a message longer than the buffer, and a link message without its ifinfomsg', () => {
    const m = encodeLinkMessage(veth);
    expect(() => parseMessages(m.subarray(0, m.length - 4))).toThrow(expect.objectContaining({ code: 'NETLINK_ERR_MESSAGE' }));
    const short = Buffer.alloc(20);
    short.writeUInt32LE(20, 0);
    short.writeUInt16LE(16, 4); // RTM_NEWLINK with 4 bytes of body
    expect(() => parseMessages(short)).toThrow(expect.objectContaining({ code: 'NETLINK_ERR_MESSAGE' }));
  });

  it('stops at a malformed attribute instead of reading past the message', () => {
    const m = encodeLinkMessage(veth);
    m.writeUInt16LE(200, 32); // the name attribute claims 200 bytes
    const r = parseMessages(m);
    expect(r.links[0]).toMatchObject({ ifindex: 7, name: '' });
  });

  it('builds a dump request: RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP', () => {
    const b = linkDumpRequest(5);
    expect([b.readUInt32LE(0), b.readUInt16LE(4), b.readUInt16LE(6), b.readUInt32LE(8)]).toEqual([32, 18, 0x301, 5]);
  });

  it('the README lists every error code', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    for (const c of NETLINK_ERROR_CODES) expect(readme).toContain(c);
  });
});
