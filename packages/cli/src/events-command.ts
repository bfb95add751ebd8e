// `netfenced events [--follow] [--id ID] [--json] [--recent N]`: the daemon's drop events and DNS
// decisions (DaemonService.WatchEvents, an extension). Without --follow: the most recent ones the
// daemon holds, then exit; with --follow: those, then every new one until interrupted. One line
// per event on stdout (human text, or one JSON object with --json).

import { timestampDate } from '@bufbuild/protobuf/wkt';
import { CommanderError, type Command } from 'commander';
import type { FirewallEvent } from '@netfence/proto';

const PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };

/** The JSON object of one event (--json); `missed` only when the daemon dropped some for this client. */
export function eventToJson(e: FirewallEvent): Record<string, unknown> {
  const base = { time: e.time ? timestampDate(e.time).toISOString() : '', attachmentId: e.attachmentId, ...(e.missed > 0n ? { missed: Number(e.missed) } : {}) };
  if (e.event.case === 'drop') {
    const d = e.event.value;
    return { ...base, type: 'drop', destination: d.destination, port: d.port, protocol: PROTOCOLS[d.protocol] ?? String(d.protocol), reason: d.reason, learnedFrom: d.learnedFrom, dryRun: d.dryRun, hook: d.hook };
  }
  if (e.event.case === 'dns') {
    const q = e.event.value;
    return { ...base, type: 'dns', name: q.name, qtype: q.qtype, verdict: q.verdict, reason: q.reason, rcode: q.rcode, addresses: q.addresses };
  }
  return { ...base, type: 'unknown' };
}

/** One human line of one event. */
export function formatEvent(e: FirewallEvent): string {
  const j = eventToJson(e);
  const head = `${String(j.time)} ${e.attachmentId}`;
  if (j.type === 'drop') {
    const learned = j.learnedFrom ? ` learned-from=${String(j.learnedFrom)}` : '';
    return `${head} ${j.dryRun ? 'would-drop' : 'drop'} ${String(j.destination)}:${String(j.port)}/${String(j.protocol)} ${String(j.reason)}${learned} hook=${String(j.hook)}\n`;
  }
  if (j.type === 'dns') {
    const addrs = (j.addresses as string[]).length ? ` ${(j.addresses as string[]).join(',')}` : '';
    return `${head} dns ${String(j.name)} ${String(j.qtype)} ${String(j.verdict)} ${String(j.rcode)}${j.verdict === 'allowed' ? '' : ` ${String(j.reason)}`}${addrs}\n`;
  }
  return `${head} unknown event\n`;
}

export interface EventsDeps {
  /** Calls WatchEvents (no deadline when following). */
  watch(req: { attachmentId: string; recent: number; noFollow: boolean }, follow: boolean): AsyncIterable<FirewallEvent>;
  stdout(text: string): void;
  stderr(text: string): void;
  fail(e: unknown): void;
}

export function addEventsCommand(program: Command, deps: EventsDeps, usageCode: number): void {
  program
    .command('events')
    .description('Show drop events (with the DNS name a blocked address was learned from) and DNS decisions.\nExample: netfenced events --follow --id att-3f2a --json')
    .option('-f, --follow', 'keep streaming new events until interrupted', false)
    .option('--id <id>', 'only this attachment')
    .option(
      '--recent <n>',
      'how many of the most recent events to show first (0..1024)',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 1024) throw new CommanderError(usageCode, 'netfence.usage', `--recent: expected 0..1024, got ${v}`);
        return n;
      },
      100,
    )
    .option('--json', 'one JSON object per line on stdout', false)
    .action(async (o: { follow: boolean; id?: string; recent: number; json: boolean }) => {
      try {
        for await (const e of deps.watch({ attachmentId: o.id ?? '', recent: o.recent, noFollow: !o.follow }, o.follow)) {
          if (e.missed > 0n && !o.json) deps.stderr(`(${e.missed} events missed: read too slowly)\n`);
          deps.stdout(o.json ? `${JSON.stringify(eventToJson(e))}\n` : formatEvent(e));
        }
      } catch (e) {
        deps.fail(e);
      }
    });
}
