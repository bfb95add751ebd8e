import { promises as fsp, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlaneError } from './errors';
import { createFilePolicySource, writeFileAtomic } from './file-policy-source';
import type { Logger } from './logger';

const POLICY = `# kept through edits
policies:
  - name: acme
    match: { tenant: acme }
    mode: allowlist
    dns: { mode: allowlist }
    rules:
      - ALLOW a.example.org
`;

interface Logged {
  level: string;
  obj: unknown;
  msg: string | undefined;
}

function recordingLogger(into: Logged[]): Logger {
  const at =
    (level: string) =>
    (obj: unknown, msg?: string): void => {
      into.push({ level, obj, msg });
    };
  const log: Logger = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'), child: () => log };
  return log;
}

describe('file policy source: atomic write', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nf-rcp-fps-'));
    file = join(dir, 'policy.yaml');
  });
  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replaces the file, keeps its mode, leaves no temp file, and fsyncs the directory after the rename', async () => {
    writeFileSync(file, 'old\n', { mode: 0o600 });
    const steps: string[] = [];
    const realOpen = fsp.open.bind(fsp);
    const realRename = fsp.rename.bind(fsp);
    jest.spyOn(fsp, 'rename').mockImplementation(async (from, to) => {
      await realRename(from, to);
      steps.push(`rename to ${String(to)}`);
    });
    jest.spyOn(fsp, 'open').mockImplementation(async (path, flags, mode) => {
      const fh = await realOpen(path, flags, mode);
      const realSync = fh.sync.bind(fh);
      fh.sync = async () => {
        await realSync();
        steps.push(`sync ${String(path)}`);
      };
      return fh;
    });

    await writeFileAtomic(file, 'new text\n', recordingLogger([]));

    expect(readFileSync(file, 'utf8')).toBe('new text\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['policy.yaml']);
    // temp file synced, then renamed over the file, then the directory synced
    expect(steps).toHaveLength(3);
    expect(steps[0]).toMatch(new RegExp(`^sync ${dir}/\\.policy\\.yaml\\.tmp-`));
    expect(steps.slice(1)).toEqual([`rename to ${file}`, `sync ${dir}`]);
  });

  it('fails with NETFENCE_ERR_POLICY_WRITE naming the file, and leaves nothing behind, when the write fails', async () => {
    writeFileSync(file, 'old\n');
    jest.spyOn(fsp, 'rename').mockRejectedValue(Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' }));
    const err = await writeFileAtomic(file, 'new\n', recordingLogger([])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneError);
    expect((err as ControlPlaneError).code).toBe('NETFENCE_ERR_POLICY_WRITE');
    expect((err as ControlPlaneError).message).toContain(file);
    expect(readFileSync(file, 'utf8')).toBe('old\n');
    expect(readdirSync(dir)).toEqual(['policy.yaml']);
  });

  it('keeps the written file and logs a warning when only the directory sync fails', async () => {
    writeFileSync(file, 'old\n');
    const realOpen = fsp.open.bind(fsp);
    jest.spyOn(fsp, 'open').mockImplementation(async (path, flags, mode) => {
      if (path === dir) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      return realOpen(path, flags, mode);
    });
    const logged: Logged[] = [];
    await writeFileAtomic(file, 'new\n', recordingLogger(logged));
    expect(readFileSync(file, 'utf8')).toBe('new\n');
    expect(logged.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual(['policy file written but its directory could not be synced']);
  });

  it('edit() persists a valid edit through the atomic write and returns the new policy set', async () => {
    writeFileSync(file, POLICY);
    const source = createFilePolicySource(file, { log: recordingLogger([]), watch: false });
    try {
      expect(source.initial.policies[0]?.rules).toEqual(['ALLOW a.example.org']);
      const next = await source.edit('acme', 'ALLOW b.example.org', 'add');
      expect(next.policies[0]?.rules).toEqual(['ALLOW a.example.org', 'ALLOW b.example.org']);
      const text = readFileSync(file, 'utf8');
      expect(text).toContain('# kept through edits');
      expect(text).toContain('ALLOW b.example.org');
      expect((await source.load()).hash).toBe(next.hash);
    } finally {
      source.close();
    }
  });

  it('edit() writes nothing when the edited policy would be invalid', async () => {
    writeFileSync(file, POLICY);
    const source = createFilePolicySource(file, { log: recordingLogger([]), watch: false });
    try {
      const err = await source.edit('acme', 'ALLOW 10.0.0.0/33', 'add').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(readFileSync(file, 'utf8')).toBe(POLICY);
      expect(readdirSync(dir)).toEqual(['policy.yaml']);
    } finally {
      source.close();
    }
  });

  it('names the file in NETFENCE_ERR_POLICY_READ when it cannot be read at start', () => {
    expect(() => createFilePolicySource(join(dir, 'missing.yaml'), { log: recordingLogger([]) })).toThrow(/NETFENCE_ERR_POLICY_READ: cannot read policy file .*missing\.yaml/);
  });
});
