import { DepotsyncError, fromSystemError, isDepotsyncError } from '../src/errors.js';
import { fromSqliteError } from '../src/db/errors.js';
import { createLogger } from '../src/log.js';
import { parseCommandArgs } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';

/** What differs between the `depotsync` program and the self-contained `depotsync-agent` one. */
export interface CommandLine {
  /** The commands this command line can mean (loaded lazily by the full CLI). */
  commands: (argv: readonly string[]) => Promise<Command[]>;
  help: () => Promise<string>;
  unknown: (argv: readonly string[]) => string;
  hint: string;
  /** Name in error lines and `--help` usage. */
  program: string;
}

/**
 * Runs one command line (docs/cli.md): exit 0 on success; non-zero with one clear line on stderr on
 * failure (what failed, and what to do); `--json` prints exactly one JSON object on stdout.
 */
export async function runCommandLine(argv: string[], cl: CommandLine): Promise<number> {
  const wantsJson = argv.includes('--json');
  try {
    const { command, rest } = route(await cl.commands(argv), argv);
    if (!command) {
      if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
        process.stdout.write(await cl.help());
        return 0;
      }
      throw new DepotsyncError('usage', cl.unknown(argv), { hint: cl.hint });
    }
    const { values, positionals } = parseCommandArgs(command, rest);
    if (values.help) {
      process.stdout.write(`usage: ${cl.program} ${command.usage}\n${command.summary}\n`);
      return 0;
    }
    const log = createLogger({
      level:
        (values['log-level'] as string | undefined) ??
        process.env.DEPOTSYNC_LOG_LEVEL ??
        command.logLevel ??
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
    return reportError(e, wantsJson, cl.program);
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

function reportError(e: unknown, json: boolean, program: string): number {
  const err = isDepotsyncError(e)
    ? e
    : (diskFullIn(e) ??
      new DepotsyncError('internal', `internal error: ${(e as Error)?.message ?? String(e)}`, {
        hint: 'this is a bug; run again with --log-level debug and report it',
        cause: e,
      }));
  const line = `${program}: ${err.toLine()}`.replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`${line}\n`);
  if (json)
    process.stdout.write(
      `${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint } })}\n`,
    );
  if (err.code === 'internal' && process.env.DEPOTSYNC_DEBUG)
    process.stderr.write(`${(e as Error)?.stack}\n`);
  return err.code === 'usage' ? 2 : 1;
}
