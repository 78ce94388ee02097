import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DepotsyncError } from '../errors.js';
import type { Command } from './command.js';

const COMMON_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  'log-level': { type: 'string' },
  pretty: { type: 'boolean' },
};

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parse a command's flags strictly: an unknown flag or a missing value is a usage error naming it. */
export function parseCommandArgs(cmd: Command, argv: string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...(cmd.options ?? {}) },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new DepotsyncError('usage', `${cmd.path.join(' ')}: ${(e as Error).message}`, {
      hint: `usage: depotsync ${cmd.usage}`,
    });
  }
  const [min, max] = cmd.positionals ?? [0, 0];
  const n = parsed.positionals.length;
  if (!parsed.values.help && (n < min || n > max)) {
    throw new DepotsyncError(
      'usage',
      `${cmd.path.join(' ')}: expected ${min === max ? min : `${min} to ${max}`} argument(s), got ${n}`,
      { hint: `usage: depotsync ${cmd.usage}` },
    );
  }
  return { values: parsed.values as ParsedArgs['values'], positionals: parsed.positionals };
}

/** A required string flag, or a usage error naming it. */
export function requireString(values: ParsedArgs['values'], name: string, cmdPath: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) {
    throw new DepotsyncError('usage', `${cmdPath}: --${name} is required`);
  }
  return v;
}

/** A repeatable flag given at least once: its values in command-line order. */
export function requireStrings(values: ParsedArgs['values'], name: string, cmdPath: string): string[] {
  const v = values[name];
  const list = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  if (list.length === 0 || list.some((x) => x.length === 0)) {
    throw new DepotsyncError('usage', `${cmdPath}: --${name} is required`);
  }
  return list;
}

export function optionalString(values: ParsedArgs['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}
