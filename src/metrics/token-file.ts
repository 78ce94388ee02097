import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { DepotsyncError, fromSystemError } from '../errors.js';

/**
 * A depot's `/metrics` token: the file `D/metrics.token` (mode 0600), made with a random 256-bit token
 * the first time the depot serves. Prometheus reads it with `authorization: {credentials_file: ...}`.
 * A depot has no operator table of its own, and the master's operator tokens must never be spread to
 * depots (a compromised depot would hold a master credential), so the depot has its own token.
 */
export const METRICS_TOKEN_FILE = 'metrics.token';

export function loadOrCreateMetricsToken(path: string): string {
  try {
    if (!existsSync(path)) {
      writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
      chmodSync(path, 0o600);
    }
    const token = readFileSync(path, 'utf8').trim();
    if (token.length < 16 || /\s/.test(token)) {
      throw new DepotsyncError(
        'bad-input',
        `metrics token file ${path} must hold one token of at least 16 characters without spaces`,
        { hint: 'delete the file; the depot makes a new one when it starts' },
      );
    }
    return token;
  } catch (e) {
    if (e instanceof DepotsyncError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateMetricsToken(path);
    throw fromSystemError(e, `metrics token file ${path}`);
  }
}
