import type { Command } from '../src/command/command.js';
import { allCommands, commandsFor } from './registry.js';
import { runCommandLine } from './run.js';

/**
 * The `depotsync` entry point (docs/cli.md): exit 0 on success; non-zero with one clear line on stderr
 * on failure (what failed, and what to do); `--json` prints exactly one JSON object on stdout.
 */
export async function main(argv: string[]): Promise<number> {
  return runCommandLine(argv, {
    commands: commandsFor,
    help: async () => helpText(await allCommands()),
    unknown: (a) => `unknown command: depotsync ${a.slice(0, 2).join(' ')}`,
    hint: "run 'depotsync help' for the list of commands",
    program: 'depotsync',
  });
}

function helpText(commands: Command[]): string {
  const lines = commands.map((c) => `  depotsync ${c.usage}\n      ${c.summary}`);
  return `depotsync: signed, content-addressed package distribution\n\n${lines.join('\n')}\n\nEvery command accepts --json (one JSON object on stdout) and --log-level LEVEL.\n`;
}
