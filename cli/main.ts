import { DepotsyncError, fromSystemError, isDepotsyncError } from '../src/errors.js';
import { fromSqliteError } from '../src/db/errors.js';
import { createLogger } from '../src/log.js';
import { parseCommandArgs } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';
import { allCommands, commandsFor } from './registry.js';

/**
 * The `depotsync` entry point (docs/cli.md): exit 0 on success; non-zero with one clear line on stderr
 * on failure (what failed, and what to do); `--json` prints exactly one JSON object on stdout.
 */
export async function main(argv: string[]): Promise<number> {
  const wantsJson = argv.includes('--json');
  try {
    const { command, rest } = route(await commandsFor(argv), argv);
    if (!command) {
      if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
        process.stdout.write(helpText(await allCommands()));
        return 0;
      }
      throw new DepotsyncError('usage', `unknown command: depotsync ${argv.slice(0, 2).join(' ')}`, {
        hint: "run 'depotsync help' for the list of commands",
      });
    }
    const { values, positionals } = parseCommandArgs(command, rest);
    if (values.help) {
      process.stdout.write(`usage: depotsync ${command.usage}\n${command.summary}\n`);
      return 0;
    }
    const log = createLogger({
      level:
        (values['log-level'] as string | undefined) ||
        process.env.DEPOTSYNC_LOG_LEVEL ||
        command.logLevel ||
        'warn',
      pretty: values.pretty === true ? true : undefined,
    });
    const result = await command.run({
      values,
      positionals,
      json: values.json === true,
      log,
      stdout: process.stdout,
      stderr: process.stderr,
    });
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(result.json ?? {})}\n`);
    } else if (result.human !== undefined && result.human.length > 0) {
      process.stdout.write(result.human.endsWith('\n') ? result.human : `${result.human}\n`);
    }
    return result.exitCode ?? 0;
  } catch (e) {
    return reportError(e, wantsJson);
  }
}

function route(commands: Command[], argv: string[]): { command: Command | undefined; rest: string[] } {
  // Longest path match first: `master publish` before `master`.
  const sorted = [...commands].sort((a, b) => b.path.length - a.path.length);
  for (const cmd of sorted) {
    if (cmd.path.every((word, i) => argv[i] === word)) {
      return { command: cmd, rest: argv.slice(cmd.path.length) };
    }
  }
  return { command: undefined, rest: argv };
}

/** A full disk somewhere in an untyped error's cause chain: reported as what it is, not as a bug. */
function diskFullIn(e: unknown): DepotsyncError | undefined {
  for (let c = e, depth = 0; c && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT')
      return fromSystemError(c, (c as NodeJS.ErrnoException).path ?? 'write');
    if (code === 'SQLITE_FULL') return fromSqliteError(c, 'database');
  }
  return undefined;
}

function reportError(e: unknown, json: boolean): number {
  const err = isDepotsyncError(e)
    ? e
    : (diskFullIn(e) ??
      new DepotsyncError('internal', `internal error: ${(e as Error)?.message ?? String(e)}`, {
        hint: 'this is a bug; run again with --log-level debug and report it',
        cause: e,
      }));
  const line = `depotsync: ${err.toLine()}`.replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`${line}\n`);
  if (json)
    process.stdout.write(
      `${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint } })}\n`,
    );
  if (err.code === 'internal' && process.env.DEPOTSYNC_DEBUG)
    process.stderr.write(`${(e as Error)?.stack}\n`);
  return err.code === 'usage' ? 2 : 1;
}

function helpText(commands: Command[]): string {
  const lines = commands.map((c) => `  depotsync ${c.usage}\n      ${c.summary}`);
  return `depotsync: signed, content-addressed package distribution\n\n${lines.join('\n')}\n\nEvery command accepts --json (one JSON object on stdout) and --log-level LEVEL.\n`;
}
