import type { ParseArgsConfig } from 'node:util';
import type { Logger } from '../log.js';

/** What every command receives: parsed flags, positionals, and the streams it may write to. */
export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** True when `--json` was given: print exactly one JSON object on stdout. */
  json: boolean;
  log: Logger;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

/**
 * One sub-command. `run` returns the result object (printed as JSON with --json, or through `human`
 * otherwise) and may return a number to set the exit code (e.g. `agent fetch --exec`).
 */
export interface Command {
  /** Words after `depotsync`, e.g. ['master', 'publish']. */
  path: string[];
  usage: string;
  summary: string;
  options?: ParseArgsConfig['options'];
  /** Minimum and maximum positional arguments. */
  positionals?: [min: number, max: number];
  /** Log level when --log-level is not given: servers log 'info', one-shot commands only 'warn'. */
  logLevel?: string;
  run(ctx: CommandContext): Promise<CommandResult>;
}

export interface CommandResult {
  /** The JSON object printed with --json. */
  json?: unknown;
  /** Lines printed on stdout without --json. */
  human?: string;
  exitCode?: number;
}
