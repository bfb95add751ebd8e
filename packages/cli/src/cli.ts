import { Command, CommanderError, Option } from 'commander';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { AttachmentType, ConnectionState, DnsMode, PolicyMode } from '@netfence/proto';
import type { AttachmentInfo } from '@netfence/proto';
import { createDaemonClient } from './daemon-client';
import { addAutoAttachCommand } from './auto-attach-command';
import { addEventsCommand } from './events-command';
import { formatAttached, formatDetached, formatStatus, formatTable } from './v1-format';

/** This program's version (package.json), printed by --version. */
export const CLI_VERSION: string = (require('../package.json') as { version: string }).version;

/** Client deadlines of netfence.v1's CLI (connecting to the socket: daemon-client.ts). */
export const CALL_TIMEOUT_MS = { attach: 10_000, detach: 10_000, status: 10_000, list: 30_000 } as const;

/** Exit codes of every command (documented in the README). */
export const EXIT = {
  OK: 0,
  /** The daemon refused the request (invalid argument, not found, already exists, ...). */
  REJECTED: 1,
  /** Bad command-line usage. */
  USAGE: 2,
  /** The daemon is not reachable on its socket. */
  UNREACHABLE: 3,
  /** The daemon failed (internal error, timeout, control plane unavailable). */
  FAILED: 4,
} as const;

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** Runs the daemon in the foreground; supplied by main (only main installs signal handlers). */
export type StartDaemon = (opts: { config?: string; socket?: string; detachOnExit: boolean; io: CliIo }) => Promise<number>;

const DEFAULT_SOCKET = '/var/run/netfence.sock';

function enumName(e: Record<number, string>, v: number, prefix: string): string {
  return (e[v] ?? String(v)).replace(prefix, '').toLowerCase();
}

/** Every --metadata occurrence adds its pairs (a later occurrence of the same key wins). */
function parseMetadata(texts: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of texts.flatMap((t) => t.split(','))) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CommanderError(EXIT.USAGE, 'netfence.usage', `--metadata: expected k=v pairs separated by commas, got ${JSON.stringify(part)}`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

function infoToJson(a: AttachmentInfo) {
  return {
    id: a.id,
    target: a.target,
    type: enumName(AttachmentType, a.type, 'ATTACHMENT_TYPE_'),
    mode: enumName(PolicyMode, a.mode, 'POLICY_MODE_').replace('_', '-'),
    dnsMode: enumName(DnsMode, a.dnsMode, 'DNS_MODE_'),
    dnsAddress: a.dnsAddress,
    metadata: a.metadata,
    packetsAllowed: a.packetsAllowed.toString(),
    packetsBlocked: a.packetsBlocked.toString(),
    dnsQueriesAllowed: a.dnsQueriesAllowed.toString(),
    dnsQueriesBlocked: a.dnsQueriesBlocked.toString(),
    attachedAt: a.attachedAt ? timestampDate(a.attachedAt).toISOString() : undefined,
    tcDirection: a.tcDirection || undefined,
    dryRun: a.dryRun,
    awaitingAck: a.awaitingAck,
    autoRule: a.autoRule || undefined,
    hook: a.hook || undefined,
    xdpFallback: a.xdpFallback || undefined,
  };
}

/** The socket-level cause of a failed call (ENOENT, ECONNREFUSED, ...), looking through `cause`. */
function socketErrno(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; c && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

function exitCodeOf(e: unknown): number {
  const ce = ConnectError.from(e);
  if (['ENOENT', 'ECONNREFUSED', 'EACCES', 'ENOTSOCK', 'ECONNRESET', 'ETIMEDOUT'].includes(socketErrno(e) ?? '')) return EXIT.UNREACHABLE;
  if ([Code.InvalidArgument, Code.NotFound, Code.AlreadyExists, Code.FailedPrecondition, Code.ResourceExhausted].includes(ce.code)) return EXIT.REJECTED;
  return EXIT.FAILED;
}

/**
 * Runs the netfenced/netfence CLI with `argv` (without node and script). Returns the exit code;
 * never exits the process. Results go to stdout, in netfence.v1's formats (v1-format.ts) or as
 * JSON with --json; errors and diagnostics go to stderr.
 */
export async function runCli(argv: readonly string[], io: CliIo, startDaemon?: StartDaemon): Promise<number> {
  let code: number = EXIT.OK;
  const program = new Command('netfenced')
    .description('Netfence: eBPF egress firewall daemon and its local control commands')
    .addOption(new Option('-s, --socket <path>', 'daemon API unix socket').default(io.env.NETFENCE_SOCKET ?? DEFAULT_SOCKET))
    .version(CLI_VERSION, '--version', 'print the version and exit')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    .showHelpAfterError();

  /** `timeoutMs` undefined: no deadline (a followed event stream). */
  const client = (timeoutMs: number | undefined) => createDaemonClient(program.opts<{ socket: string }>().socket, { timeoutMs });
  const fail = (e: unknown) => {
    const ce = ConnectError.from(e);
    code = exitCodeOf(e);
    if (code === EXIT.UNREACHABLE) io.stderr(`error: cannot reach netfenced on ${program.opts<{ socket: string }>().socket}: ${socketErrno(e) ?? ce.rawMessage}\n`);
    else io.stderr(`error: ${ce.rawMessage} (${Code[ce.code]})\n`);
  };

  program
    .command('start')
    .description('Run the daemon in the foreground.\nExample: netfenced start --config /etc/netfence/netfence.yaml')
    .option('-c, --config <file>', 'YAML config file (NETFENCE_* environment variables override it); without one, defaults and the environment')
    .option('--detach-on-exit', 'remove the eBPF filters on shutdown instead of leaving them pinned', false)
    .action(async (o: { config?: string; detachOnExit: boolean }) => {
      if (!startDaemon) throw new CommanderError(EXIT.USAGE, 'netfence.usage', 'start is not available in this build');
      const socketGiven = program.getOptionValueSource('socket') === 'cli' || io.env.NETFENCE_SOCKET !== undefined;
      code = await startDaemon({ config: o.config, socket: socketGiven ? program.opts<{ socket: string }>().socket : undefined, detachOnExit: o.detachOnExit, io });
    });

  program
    .command('status')
    .description('Show the daemon status.\nExample: netfenced status --json')
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (o: { json: boolean }) => {
      try {
        const s = await client(CALL_TIMEOUT_MS.status).getStatus({});
        const out = {
          version: s.version,
          daemonId: s.daemonId,
          hostname: s.hostname,
          controlPlaneState: enumName(ConnectionState, s.controlPlaneState, 'CONNECTION_STATE_'),
          controlPlaneAddress: s.controlPlaneAddress,
          attachmentCount: s.attachmentCount,
          controlPlaneMode: s.controlPlaneMode,
          attachmentsAwaitingAck: s.attachmentsAwaitingAck,
        };
        io.stdout(o.json ? `${JSON.stringify(out)}\n` : formatStatus(out));
      } catch (e) {
        fail(e);
      }
    });

  program
    .command('attach')
    .description('Attach a filter to an interface (TC) or a cgroup.\nExample: netfenced attach --interface veth1 --metadata tenant=acme,job=ci-42')
    .option('-i, --interface <name>', 'network interface (TC attachment)')
    .option('-g, --cgroup <path>', 'cgroup v2 directory (cgroup attachment)')
    .option('--metadata <k=v,...>', 'metadata passed to the control plane; repeatable, every occurrence adds pairs', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(new Option('--direction <dir>', 'TC hook override (default: by link kind)').choices(['ingress', 'egress']))
    .option('--xdp', 'judge at XDP on the interface (native mode; falls back to TC ingress where the kernel refuses it: list --json says so)', false)
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (o: { interface?: string; cgroup?: string; metadata: string[]; direction?: string; xdp: boolean; json: boolean }) => {
      if (!!o.interface === !!o.cgroup) throw new CommanderError(EXIT.USAGE, 'netfence.usage', 'attach: give exactly one of --interface or --cgroup');
      if (o.xdp && !o.interface) throw new CommanderError(EXIT.USAGE, 'netfence.usage', 'attach: --xdp applies to --interface only');
      const metadata = parseMetadata(o.metadata);
      try {
        const r = await client(CALL_TIMEOUT_MS.attach).attach({
          target: o.interface ? { case: 'interfaceName', value: o.interface } : { case: 'cgroupPath', value: o.cgroup! },
          metadata,
          tcDirection: o.direction ?? '',
          xdp: o.xdp,
        });
        if (o.json) io.stdout(`${JSON.stringify({ id: r.id, dnsAddress: r.dnsAddress })}\n`);
        else io.stdout(formatAttached(r));
      } catch (e) {
        fail(e);
      }
    });

  program
    .command('detach')
    .description('Remove an attachment.\nExample: netfenced detach --id att-3f2a')
    .requiredOption('--id <id>', 'attachment id')
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (o: { id: string; json: boolean }) => {
      try {
        await client(CALL_TIMEOUT_MS.detach).detach({ id: o.id });
        io.stdout(o.json ? `${JSON.stringify({ id: o.id })}\n` : formatDetached(o.id));
      } catch (e) {
        fail(e);
      }
    });

  program
    .command('list')
    .description('List attachments.\nExample: netfenced list --all --json')
    .option(
      '--page-size <n>',
      'attachments per page (1..1000)',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 1000) throw new CommanderError(EXIT.USAGE, 'netfence.usage', `--page-size: expected 1..1000, got ${v}`);
        return n;
      },
      100,
    )
    .option('--page-token <token>', 'continue from a previous page')
    .option('--all', 'follow next_page_token to the end', false)
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (o: { pageSize: number; pageToken?: string; all: boolean; json: boolean }) => {
      try {
        const c = client(CALL_TIMEOUT_MS.list);
        const items: AttachmentInfo[] = [];
        let token = o.pageToken ?? '';
        let total = 0;
        let next = '';
        do {
          const r = await c.list({ pageSize: o.pageSize, pageToken: token });
          items.push(...r.attachments);
          total = r.totalCount;
          next = r.nextPageToken;
          token = next;
        } while (o.all && token);
        const rows = items.map(infoToJson);
        if (o.json) io.stdout(`${JSON.stringify({ attachments: rows, nextPageToken: o.all ? '' : next, totalCount: total })}\n`);
        else {
          io.stdout(formatTable(rows, total));
          if (!o.all && next) io.stderr(`more attachments: --all, or --page-token ${next}\n`);
        }
      } catch (e) {
        fail(e);
      }
    });

  addEventsCommand(
    program,
    {
      watch: (req, follow) => client(follow ? undefined : CALL_TIMEOUT_MS.status).watchEvents(req),
      stdout: (t) => io.stdout(t),
      stderr: (t) => io.stderr(t),
      fail,
    },
    EXIT.USAGE,
  );

  addAutoAttachCommand(
    program,
    {
      get: () => client(CALL_TIMEOUT_MS.status).getAutoAttachRules({}),
      set: (rules) => client(CALL_TIMEOUT_MS.status).setAutoAttachRules(rules),
      stdout: (t) => io.stdout(t),
      fail,
    },
    EXIT.USAGE,
  );

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.OK;
      if (e.code === 'netfence.usage') io.stderr(`error: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
  return code;
}
