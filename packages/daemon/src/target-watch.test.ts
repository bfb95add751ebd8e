import { mkdirSync, mkdtempSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LinkRecord, LinkWatchOptions, LinkWatcher } from '@netfence/netlink';
import pino from 'pino';
import type { AutoAttacher } from './auto-attach';
import { parseAutoAttachRules } from './auto-attach-rules';
import type { AttachmentRecord } from './state-store';
import { TargetWatch, type TargetWatchRegistry } from './target-watch';

const veth = (ifindex: number, name: string, event: 'new' | 'del' = 'new'): LinkRecord => ({ event, ifindex, name, kind: 'veth', arphrd: 1, up: false });

function setup(opts: { failWatch?: number } = {}) {
  const calls: string[] = [];
  const registry: TargetWatchRegistry = {
    interfaceGone: (i) => void calls.push(`gone tc:${i}`),
    cgroupGone: (p) => void calls.push(`gone cg:${p}`),
    checkTargets: (links) => void calls.push(`check ${links ? [...links.keys()].join(',') : 'cgroups'}`),
  };
  const auto = {
    setRules: () => undefined,
    link: (l: LinkRecord) => void calls.push(`auto ${l.event} ${l.name}`),
    resync: (all: readonly LinkRecord[]) => void calls.push(`auto resync ${all.map((l) => l.name).join(',')}`),
    rematch: (all: readonly LinkRecord[]) => void calls.push(`auto rematch ${all.map((l) => l.name).join(',')}`),
    cgroup: (p: string) => void calls.push(`auto cg ${p}`),
  } as unknown as AutoAttacher;
  let failures = opts.failWatch ?? 0;
  let watcher: LinkWatchOptions | undefined;
  let links = [veth(1, 'lo'), veth(5, 'nfx5')];
  const w = new TargetWatch({
    registry,
    auto,
    logger: pino({ level: 'silent' }),
    fallbackMs: 20,
    watchLinks: (o) => {
      if (failures-- > 0) throw new Error('no netlink');
      watcher = o;
      return { existing: links, closed: false, close: async () => undefined } as LinkWatcher;
    },
    listLinks: () => links,
  });
  return {
    w,
    calls,
    emit: (l: LinkRecord) => watcher!.onLink(l),
    fail: (code: string) => watcher!.onError!(Object.assign(new Error('boom'), { code }) as never),
    setLinks: (l: LinkRecord[]) => (links = l),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}

describe('the target watch', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'nf-tw-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('judges attachments and matches links against the listing at start, then follows link events', () => {
    const s = setup();
    s.w.start([]);
    expect(s.calls).toEqual(['check 1,5', 'auto resync lo,nfx5']);
    s.emit(veth(6, 'nfx6'));
    s.emit(veth(5, 'nfx5', 'del'));
    expect(s.calls.slice(2)).toEqual(['auto new nfx6', 'gone tc:5', 'auto del nfx5']);
    s.w.close();
  });

  it('without a link watch, lists links every fallbackMs until the watch can be made', async () => {
    const s = setup({ failWatch: 3 });
    s.w.start([]);
    expect(s.calls).toEqual(['check 1,5', 'auto resync lo,nfx5']); // listed instead
    s.setLinks([veth(1, 'lo')]);
    await until(() => s.calls.filter((c) => c.startsWith('check 1')).length >= 4);
    expect(s.calls).toContain('check 1');
    const n = s.calls.length;
    await sleep(100); // the watch is made: no more listing
    expect(s.calls.length).toBe(n);
    s.emit(veth(9, 'nfx9', 'del'));
    expect(s.calls.at(-2)).toBe('gone tc:9');
    s.w.close();
  });

  it('after a socket failure falls back to listing; an unreadable batch lists once', async () => {
    const s = setup();
    s.w.start([]);
    s.fail('NETLINK_ERR_MESSAGE');
    expect(s.calls.slice(2)).toEqual(['check 1,5', 'auto resync lo,nfx5']);
    s.fail('NETLINK_ERR_SOCKET');
    await until(() => s.calls.length >= 6); // the timer made the watch again, with its listing
    expect(s.calls.slice(4, 6)).toEqual(['check 1,5', 'auto resync lo,nfx5']);
    s.w.close();
  });

  it("a held cgroup's removal is reported at once (inotify on its parent); one removed before it was held, right after", async () => {
    const s = setup();
    s.w.start([]);
    const cg = join(dir, 'job1');
    mkdirSync(cg);
    const rec = (p: string) => ({ kind: 'cgroup', target: p, identity: { cgroupId: String(statSync(p).ino) } }) as unknown as AttachmentRecord;
    s.w.held(rec(cg), true);
    rmdirSync(cg);
    await until(() => s.calls.includes(`gone cg:${cg}`));
    const gone = join(dir, 'job2');
    mkdirSync(gone);
    const r2 = rec(gone);
    rmdirSync(gone);
    s.w.held(r2, true);
    await until(() => s.calls.filter((c) => c === `gone cg:${gone}`).length >= 1);
    s.w.close();
  });

  it("matches a cgroup rule's existing and new children; a directory that does not exist yet is watched once it does", async () => {
    const s = setup();
    mkdirSync(join(dir, 'jobs'));
    mkdirSync(join(dir, 'jobs', 'old'));
    s.w.start(parseAutoAttachRules([{ cgroup: `${dir}/jobs/*` }, { cgroup: `${dir}/later/*` }], 'x'));
    expect(s.calls).toContain(`auto cg ${dir}/jobs/old`);
    mkdirSync(join(dir, 'jobs', 'new'));
    await until(() => s.calls.includes(`auto cg ${dir}/jobs/new`));
    mkdirSync(join(dir, 'later'));
    mkdirSync(join(dir, 'later', 'a'));
    await until(() => s.calls.includes(`auto cg ${dir}/later/a`)); // found by the retry's scan
    mkdirSync(join(dir, 'later', 'b'));
    await until(() => s.calls.includes(`auto cg ${dir}/later/b`)); // then by its events
    s.w.close();
  });

  it('new rules match the links and cgroups that exist', () => {
    const s = setup();
    s.w.start([]);
    mkdirSync(join(dir, 'c1'));
    s.w.setRules(parseAutoAttachRules([{ interface: 'nfx*' }, { cgroup: `${dir}/*` }], 'x'));
    expect(s.calls.slice(2)).toEqual(['auto rematch lo,nfx5', `auto cg ${dir}/c1`, 'check cgroups']);
    s.w.close();
  });
});
