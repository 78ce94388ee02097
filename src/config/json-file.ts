import { readFileSync } from 'node:fs';
import { DepotsyncError, fromSystemError } from '../errors.js';

/**
 * Read and parse a settings file (master.json, depot.json, agent.json, admin.json). A missing file gets
 * the caller's own message and hint (it usually means "not a master/depot/agent directory"); a file that
 * is not JSON is a 'bad-json' error naming it. The caller then decodes the value.
 */
export function readJsonFile(
  path: string,
  o: { what: string; missing?: { message: string; hint: string }; badJson?: (reason: string) => { message: string; hint?: string } },
): unknown {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (e) {
    if (o.missing && (e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DepotsyncError('not-found', o.missing.message, { hint: o.missing.hint });
    }
    throw fromSystemError(e, `${o.what} ${path}`);
  }
  try {
    return JSON.parse(raw);
  } catch (e) {
    const bad = o.badJson?.((e as Error).message) ?? { message: `${o.what} ${path} is not valid JSON` };
    throw new DepotsyncError('bad-json', bad.message, bad.hint ? { hint: bad.hint } : {});
  }
}
