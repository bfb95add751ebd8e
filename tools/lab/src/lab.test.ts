import { createLab, assertLabRangesSafe, cgroup2Root } from './index';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

describe('lab', () => {
  it('refuses nothing on this machine and builds an isolated two-namespace lab', async () => {
    assertLabRangesSafe();
    const lab = createLab();
    try {
      const host = lab.netns('h');
      const wl = lab.netns('w');
      lab.veth(host, wl, { addrA: ['10.200.1.1/24', '2001:db8:1::1/64'], addrB: ['10.200.1.2/24', '2001:db8:1::2/64'] });
      expect(wl.tryExec('ping', ['-c1', '-W1', '10.200.1.1']).status).toBe(0);
      expect(wl.tryExec('ping', ['-6', '-c1', '-W1', '2001:db8:1::1']).status).toBe(0);
      // No default route anywhere in the lab.
      expect(wl.exec('ip', ['route', 'show', 'default']).trim()).toBe('');
      expect(existsSync(host.path)).toBe(true);
      const cg = lab.cgroup('c');
      expect(cg.path.startsWith(cgroup2Root())).toBe(true);
    } finally {
      await lab.close();
    }
    const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(names).not.toContain(`nf${lab.id}`);
  });

  it('rejects addresses outside the lab ranges', async () => {
    const lab = createLab();
    try {
      const a = lab.netns('x');
      expect(() => lab.veth(a, a, { addrA: ['192.0.2.9/24'] })).toThrow(/outside the lab ranges/);
    } finally {
      await lab.close();
    }
  });
});

describe('lab processes', () => {
  it('spawns into a cgroup and a namespace, and reads ifindex inside the namespace', async () => {
    const lab = createLab();
    try {
      const a = lab.netns('p');
      const v = lab.veth(a, a, { addrA: ['10.200.9.1/24'] });
      expect(a.ifindex(v.a)).toBeGreaterThan(0);
      const cg = lab.cgroup('p');
      const child = a.spawn('sh', ['-c', 'cat /proc/self/cgroup; ip -o addr show'], { cgroup: cg });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((r) => child.once('exit', r));
      expect(out).toContain(cg.path.split('/').pop());
      expect(out).toContain('10.200.9.1');
    } finally {
      await lab.close();
    }
  });
});
