import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Human-readable output (pino-pretty) instead of JSON lines. */
  pretty?: boolean;
  /** Where log lines go; defaults to stderr so stdout stays free for --json. */
  destination?: NodeJS.WritableStream;
}

/**
 * The root logger. Components take a child (`log.child({ component: 'depot.sync' })`) passed in
 * through their constructor; nothing logs through a global.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.DEPOTSYNC_LOG_LEVEL ?? 'info';
  const pretty = opts.pretty ?? process.env.DEPOTSYNC_LOG_PRETTY === '1';
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: process.stderr.isTTY } },
    });
  }
  return pino({ level }, (opts.destination as pino.DestinationStream | undefined) ?? pino.destination(2));
}

/** A logger that drops everything: for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
