#!/usr/bin/env node
// netfence-controlplane: run the reference control plane from a policy file.

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { createControlPlane } from './control-plane';
import { createLogger } from './logger';
import type { Logger } from './logger';
import { createPostgresPolicyStore } from './postgres-store';
import type { ControlPlane, ListeningAddress, PolicyStore } from './types';
import { ControlPlaneError } from './errors';
import { VERSION } from './version';

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export interface CliStarted {
  readonly cp: ControlPlane;
  readonly grpc: ListeningAddress;
  readonly admin?: ListeningAddress;
  readonly log: Logger;
  /** Closes the control plane, then its policy store (when --postgres). */
  close(): Promise<void>;
}

/** Parses argv (process.argv shape), starts the control plane and its listeners. */
export async function startFromArgv(argv: string[], env: NodeJS.ProcessEnv = process.env, logger?: Logger): Promise<CliStarted> {
  const program = new Command()
    .name('netfence-controlplane')
    .description('Reference netfence.v1 control plane driven by a YAML policy file')
    .version(VERSION, '--version', 'print the version and exit')
    .requiredOption('--listen <addr>', 'gRPC listen address: host:port, [v6]:port, :port or unix:/path')
    .option('--policy <file>', 'YAML policy file (watched; edited by the admin API); with --postgres, only seeds an empty database')
    .option('--postgres <url>', 'keep the policy in PostgreSQL, shared by every replica given the same URL (also NETFENCE_CP_POSTGRES)')
    .option('--policy-name <name>', 'with --postgres: which stored policy set to serve', 'default')
    .option('--admin-listen <addr>', 'admin JSON API + /metrics listen address')
    .option('--tls-cert <file>', 'PEM certificate (enables TLS on both listeners)')
    .option('--tls-key <file>', 'PEM private key')
    .option('--tls-ca <file>', 'PEM CA bundle: require client certificates signed by it (mTLS)')
    .option('--token <token>', 'accepted bearer token (repeatable; also NETFENCE_CP_TOKENS, comma-separated)', collect, [] as string[])
    .option('--token-file <file>', 'file with one accepted bearer token per line')
    .option('--log-level <level>', 'pino log level', 'info')
    .exitOverride()
    .parse(argv);
  const o = program.opts<{
    listen: string;
    policy?: string;
    postgres?: string;
    policyName: string;
    adminListen?: string;
    tlsCert?: string;
    tlsKey?: string;
    tlsCa?: string;
    token: string[];
    tokenFile?: string;
    logLevel: string;
  }>();
  const log = logger ?? createLogger(o.logLevel);
  const tokens = [...o.token, ...(env.NETFENCE_CP_TOKENS ?? '').split(',').map((t) => t.trim())].filter(Boolean);
  if (o.tokenFile) tokens.push(...readFileSync(o.tokenFile, 'utf8').split('\n').map((t) => t.trim()).filter(Boolean));
  if (!!o.tlsCert !== !!o.tlsKey) throw new ControlPlaneError('NETFENCE_ERR_TLS', '--tls-cert and --tls-key go together');
  if (o.tlsCa && !o.tlsCert) throw new ControlPlaneError('NETFENCE_ERR_TLS', '--tls-ca needs --tls-cert and --tls-key');
  let tls;
  try {
    tls = o.tlsCert && o.tlsKey
      ? { cert: readFileSync(o.tlsCert), key: readFileSync(o.tlsKey), ...(o.tlsCa ? { ca: readFileSync(o.tlsCa) } : {}) }
      : undefined;
  } catch (e) {
    throw new ControlPlaneError('NETFENCE_ERR_TLS', `cannot read TLS files: ${(e as Error).message}`, { cause: e });
  }
  const postgres = o.postgres ?? env.NETFENCE_CP_POSTGRES;
  if (!o.policy && !postgres) throw new ControlPlaneError('NETFENCE_ERR_INVALID_REQUEST', 'give --policy FILE, or --postgres URL (with --policy FILE to seed an empty database)');
  let store: PolicyStore | undefined;
  if (postgres) {
    let seedText: string | undefined;
    try {
      seedText = o.policy ? readFileSync(o.policy, 'utf8') : undefined;
    } catch (e) {
      throw new ControlPlaneError('NETFENCE_ERR_POLICY_READ', `cannot read policy file ${o.policy}: ${(e as Error).message}`, { cause: e });
    }
    store = await createPostgresPolicyStore({ connectionString: postgres, name: o.policyName, logger: log, ...(seedText !== undefined ? { seedText } : {}) });
  }
  let cp: ControlPlane;
  try {
    cp = createControlPlane({
      policy: store ?? (o.policy as string),
      logger: log,
      ...(tokens.length > 0 ? { auth: { tokens } } : {}),
      ...(tls ? { tls } : {}),
    });
  } catch (e) {
    await store?.close();
    throw e;
  }
  const closeAll = async (): Promise<void> => {
    await cp.close();
    await store?.close();
  };
  try {
    const grpc = await cp.listen(o.listen);
    const admin = o.adminListen ? await cp.listenAdmin(o.adminListen) : undefined;
    log.info({ grpc: grpc.url, admin: admin?.url, policies: cp.policySet().policies.length }, 'netfence-controlplane ready');
    return admin ? { cp, grpc, admin, log, close: closeAll } : { cp, grpc, log, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

async function main(argv: string[]): Promise<void> {
  const { cp, log: logger, close } = await startFromArgv(argv);
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal: sig }, 'shutting down');
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => void cp.reload());
}

if (require.main === module) {
  main(process.argv).catch((e: unknown) => {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`netfence-controlplane: ${msg}\n`);
    process.exit(e instanceof ControlPlaneError && e.code === 'NETFENCE_ERR_POLICY_INVALID' ? 2 : 1);
  });
}
