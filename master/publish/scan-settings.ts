import { DepotsyncError } from '../../src/errors.js';

/** The publish scan's settings (scan.ts), apart from it: checking master.json loads nothing more. */
export interface ScanSettings {
  /** argv: the program and its arguments; the source path is appended. */
  command: readonly string[];
  timeoutMs: number;
  /** How much of the scanner's output (its end) is kept for the error and the audit log. */
  maxOutputBytes?: number;
  /** After a timeout's kill, how long to wait for the pipes to close before giving up on them. */
  killGraceMs?: number;
}

export const SCAN_DEFAULTS = { maxOutputBytes: 4096, killGraceMs: 1000 } as const;

/** Checks master.json's `publishScanCommand` and `publishScanTimeoutMs`. */
export function validateScanSettings(where: string, s: ScanSettings): ScanSettings {
  if (
    !Array.isArray(s.command) ||
    s.command.length === 0 ||
    !s.command.every((a) => typeof a === 'string' && a.length > 0 && !a.includes('\0'))
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: publishScanCommand must be null or a non-empty list of non-empty strings (program, then arguments), got ${JSON.stringify(s.command)}`,
      {
        hint: 'for example ["/usr/bin/clamscan", "--no-summary", "-r"]; it is run without a shell, with the path to scan appended',
      },
    );
  }
  if (!Number.isInteger(s.timeoutMs) || s.timeoutMs < 100 || s.timeoutMs > 24 * 3_600_000) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: publishScanTimeoutMs must be an integer from 100 to 86400000, got ${JSON.stringify(s.timeoutMs)}`,
    );
  }
  return s;
}
