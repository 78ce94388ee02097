/**
 * One error base for the whole project (docs/contributing.md): a typed code, a message that says what failed,
 * an optional hint that says what to do, and the underlying cause. The HTTP layer maps codes to
 * statuses; the CLI prints `message` (and the hint) as one line on stderr.
 */
export type ErrorCode =
  // input and validation
  | 'bad-input'
  | 'bad-json'
  | 'bad-path'
  | 'too-large'
  | 'not-found'
  | 'already-exists'
  | 'usage'
  // content
  | 'hash-mismatch'
  | 'truncated'
  | 'corrupt'
  // TUF / signatures
  | 'bad-signature'
  | 'threshold-not-met'
  | 'unknown-key'
  | 'expired'
  | 'version-rollback'
  | 'bad-metadata'
  // PKI / auth
  | 'unauthorized'
  | 'forbidden'
  | 'bad-certificate'
  | 'rate-limited'
  // environment
  | 'io'
  | 'disk-full'
  | 'network'
  | 'timeout'
  | 'conflict'
  | 'internal';

export class DepotsyncError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DepotsyncError';
    this.code = code;
    this.hint = options.hint;
  }

  /** One line for a terminal: "message (hint)". */
  toLine(): string {
    return this.hint ? `${this.message}; ${this.hint}` : this.message;
  }
}

export function isDepotsyncError(e: unknown, code?: ErrorCode): e is DepotsyncError {
  return e instanceof DepotsyncError && (code === undefined || e.code === code);
}

/** Map a Node.js system error (ENOSPC, ENOENT, …) to a typed error that names the object. */
export function fromSystemError(e: unknown, what: string): DepotsyncError {
  if (e instanceof DepotsyncError) return e;
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new DepotsyncError('disk-full', `${what}: no space left on device`, {
        hint: 'free disk space and run the command again; nothing already stored was lost',
        cause: e,
      });
    case 'ENOENT':
      return new DepotsyncError('not-found', `${what}: no such file or directory`, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new DepotsyncError('io', `${what}: permission denied`, { cause: e });
    default:
      return new DepotsyncError('io', `${what}: ${err?.message ?? String(e)}`, { cause: e });
  }
}
