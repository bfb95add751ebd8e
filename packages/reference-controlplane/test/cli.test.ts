import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startFromArgv } from '../src/cli';
import type { Logger } from '@netfence/reference-controlplane';
import { createControlPlaneClient, FakeDaemon, queryDns } from './support/grpc-daemon';

const silent: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined, child: () => silent };

describe('netfence-controlplane CLI', () => {
  it('starts gRPC and admin listeners from argv with tokens from flags, env and a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-cli-'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'policies:\n  - name: all\n    mode: allowlist\n    rules: [ALLOW 10.200.9.0/24]\n');
    writeFileSync(join(dir, 'tokens'), 'from-file\n\n');
    const argv = ['node', 'netfence-controlplane', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policy', policy, '--token', 'flag-token', '--token-file', join(dir, 'tokens')];
    const started = await startFromArgv(argv, { NETFENCE_CP_TOKENS: 'env-token' }, silent);
    const client = createControlPlaneClient(`127.0.0.1:${started.grpc.port}`);
    try {
      for (const t of ['flag-token', 'from-file', 'env-token']) {
        expect(await queryDns(client, { id: 'x', domain: 'a.test' }, t)).toMatchObject({ allow: false });
      }
      await expect(queryDns(client, { id: 'x', domain: 'a.test' }, 'other')).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      const d = new FakeDaemon(client, { daemonId: 'cli', token: 'flag-token' }).open();
      d.sync([{ id: 'c1' }]);
      expect((await d.next(2, 0))[1]).toMatchObject({ bulk_update: { allow_cidrs: [{ cidr: '10.200.9.0/24' }] } });
      d.close();
      const res = await fetch(`${started.admin!.url}/v1/daemons`, { headers: { authorization: 'Bearer env-token' } });
      expect(res.status).toBe(200);
    } finally {
      client.close();
      await started.cp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a TLS key without a certificate', async () => {
    await expect(
      startFromArgv(['node', 'x', '--listen', '127.0.0.1:0', '--policy', '/nonexistent.yaml', '--tls-key', 'k.pem'], {}, silent),
    ).rejects.toMatchObject({ code: 'NETFENCE_ERR_TLS' });
  });
});
