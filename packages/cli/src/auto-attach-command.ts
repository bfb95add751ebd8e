// `netfenced auto-attach get [--json]` and `netfenced auto-attach set FILE|- [--json]`: the
// daemon's auto-attach rules (DaemonService Get/SetAutoAttachRules, an extension). The rules are
// read and written in the config file's shape (YAML or JSON; a bare list or `auto_attach:` and its
// list), through the daemon's one mapping (auto-attach-wire.ts), so `get > f; set f` round-trips.

import { readFileSync } from 'node:fs';
import { CommanderError, type Command } from 'commander';
import { autoAttachRulesFromPb, autoAttachRulesToPb, DaemonError, readAutoAttachRules, writeAutoAttachRules } from '@netfence/daemon';
import type { AutoAttachRules } from '@netfence/proto';

export interface AutoAttachDeps {
  get(): Promise<AutoAttachRules>;
  set(rules: AutoAttachRules): Promise<AutoAttachRules>;
  /** Standard input, whole (for `set -`; default: file descriptor 0). */
  stdin?(): string;
  stdout(text: string): void;
  fail(e: unknown): void;
}

function show(msg: AutoAttachRules, json: boolean): string {
  const rules = autoAttachRulesFromPb(msg);
  return json ? `${JSON.stringify({ autoAttach: rules })}\n` : writeAutoAttachRules(rules);
}

export function addAutoAttachCommand(program: Command, deps: AutoAttachDeps, usageCode: number): void {
  const cmd = program.command('auto-attach').description('Show or replace the rules by which the daemon attaches to interfaces and cgroups as they appear.\nExample: netfenced auto-attach set rules.yaml');
  cmd
    .command('get')
    .description('Print the auto-attach rules in force, as the config file writes them.\nExample: netfenced auto-attach get > rules.yaml')
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (o: { json: boolean }) => {
      try {
        deps.stdout(show(await deps.get(), o.json));
      } catch (e) {
        deps.fail(e);
      }
    });
  cmd
    .command('set')
    .description('Replace the auto-attach rules (validated whole: one bad rule changes nothing) with those of FILE, or of standard input with -.\nExample: echo \'[{interface: "tap*", metadata: {vm_id: "{name}"}}]\' | netfenced auto-attach set -')
    .argument('<file>', 'a YAML or JSON list of rules (or a mapping with an auto_attach list); - reads standard input')
    .option('--json', 'machine-readable output on stdout', false)
    .action(async (file: string, o: { json: boolean }) => {
      let text: string;
      try {
        text = file === '-' ? (deps.stdin?.() ?? readFileSync(0, 'utf8')) : readFileSync(file, 'utf8');
      } catch (e) {
        throw new CommanderError(usageCode, 'netfence.usage', `cannot read ${file}: ${(e as Error).message}`);
      }
      try {
        const rules = readAutoAttachRules(text, file === '-' ? 'standard input' : file);
        deps.stdout(show(await deps.set(autoAttachRulesToPb(rules)), o.json));
      } catch (e) {
        // A bad file is refused here as the daemon would refuse it (INVALID_ARGUMENT naming the rule).
        deps.fail(e instanceof DaemonError ? e.toConnectError() : e);
      }
    });
}
