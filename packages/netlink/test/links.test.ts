// The real kernel: links created in a lab namespace show up in listLinks and as events, in
// order, as they happen; deletions too; the watcher stops cleanly.
import { execFileSync } from 'node:child_process';
import { createLab, type Lab, type LabNetns } from '@netfence/lab';
import { getLink, listLinks, watchLinks, type LinkRecord } from '../src/index';

jest.setTimeout(30_000);

let lab: Lab;
let ns: LabNetns;

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (network namespaces)');
  lab = createLab();
  ns = lab.netns('nl');
});
afterAll(async () => {
  await lab?.close();
});

const ip = (...args: string[]) => execFileSync('ip', ['-n', ns.name, ...args]);
const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
};

describe('links of a namespace', () => {
  it('lists what exists: loopback, and a veth with its kind', () => {
    ip('link', 'add', 'nfla0', 'type', 'veth', 'peer', 'name', 'nflb0');
    const links = listLinks(ns.path);
    expect(links.find((l) => l.name === 'lo')).toMatchObject({ event: 'new', arphrd: 772 });
    expect(links.find((l) => l.name === 'nfla0')).toMatchObject({ kind: 'veth', arphrd: 1, up: false });
    ip('link', 'del', 'nfla0');
  });

  it('gets one link by name or alternative name, undefined when there is none', () => {
    ip('link', 'add', 'nfget0', 'type', 'veth', 'peer', 'name', 'nfget1');
    try {
      const l = getLink('nfget0', ns.path);
      expect(l).toMatchObject({ event: 'new', name: 'nfget0', kind: 'veth', arphrd: 1 });
      expect(l?.ifindex).toBe(listLinks(ns.path).find((x) => x.name === 'nfget0')?.ifindex);
      ip('link', 'property', 'add', 'dev', 'nfget0', 'altname', 'nf-a-rather-long-alternative-name');
      expect(getLink('nf-a-rather-long-alternative-name', ns.path)?.name).toBe('nfget0');
      expect(getLink('nfnosuch0', ns.path)).toBeUndefined();
      expect(getLink('lo', ns.path)).toMatchObject({ arphrd: 772 });
      expect(() => getLink('', ns.path)).toThrow(expect.objectContaining({ code: 'NETLINK_ERR_MESSAGE' }));
    } finally {
      ip('link', 'del', 'nfget0');
    }
  });

  it('watches: creation, up, deletion arrive as events in order; existing links are listed', async () => {
    ip('link', 'add', 'nfold0', 'type', 'veth', 'peer', 'name', 'nfold1');
    const events: LinkRecord[] = [];
    const w = watchLinks({ netnsPath: ns.path, onLink: (l) => events.push(l) });
    try {
      expect(w.existing.map((l) => l.name)).toContain('nfold0');
      ip('tuntap', 'add', 'dev', 'nftap7', 'mode', 'tap');
      ip('link', 'set', 'nftap7', 'up');
      ip('link', 'del', 'nftap7');
      expect(await until(() => events.some((e) => e.event === 'del' && e.name === 'nftap7'))).toBe(true);
      const tap = events.filter((e) => e.name === 'nftap7');
      expect(tap[0]).toMatchObject({ event: 'new', kind: 'tun', arphrd: 1 });
      expect(tap.some((e) => e.event === 'new' && e.up)).toBe(true);
      expect(tap.at(-1)?.event).toBe('del');
      // nothing from the other namespaces (the root namespace's links are not ours)
      expect(events.every((e) => e.name.startsWith('nf'))).toBe(true);
    } finally {
      await w.close();
    }
    expect(w.closed).toBe(true);
    ip('link', 'del', 'nfold0');
  });

  it('a burst of 200 links: every creation is seen', async () => {
    const seen = new Set<string>();
    const w = watchLinks({ netnsPath: ns.path, onLink: (l) => l.event === 'new' && l.name.startsWith('nfbu') && seen.add(l.name) });
    try {
      const batch = Array.from({ length: 200 }, (_v, i) => `link add nfbu${i} type veth peer name nfbv${i}`).join('\n');
      execFileSync('ip', ['-n', ns.name, '-batch', '-'], { input: batch });
      expect(await until(() => seen.size >= 200)).toBe(true);
    } finally {
      await w.close();
      execFileSync('ip', ['-n', ns.name, '-batch', '-'], { input: Array.from({ length: 200 }, (_v, i) => `link del nfbu${i}`).join('\n') });
    }
  });
});
