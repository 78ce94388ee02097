import { readFileSync } from 'node:fs';
import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError, fromSystemError, isDepotsyncError } from '../errors.js';

/** Settings files are a few kilobytes; a larger one is a mistake (or not a settings file at all). */
export const MAX_SETTINGS_FILE_BYTES = 1024 * 1024;

/**
 * Read and parse a settings file (master.json, depot.json, agent.json, admin.json). A missing file gets
 * the caller's own message and hint (it usually means "not a master/depot/agent directory"); a file that
 * is not JSON is a 'bad-json' error naming it. The same strict parser as for network bytes, so a key
 * written twice by hand is an error naming the key, not a silent "last one wins". The caller then
 * decodes the value.
 */
export function readJsonFile(
  path: string,
  o: {
    what: string;
    missing?: { message: string; hint: string };
    badJson?: (reason: string) => { message: string; hint?: string };
  },
): unknown {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    if (o.missing && (e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DepotsyncError('not-found', o.missing.message, { hint: o.missing.hint });
    }
    throw fromSystemError(e, `${o.what} ${path}`);
  }
  // A byte order mark, as some editors write, is not part of the document.
  const body = raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? raw.subarray(3) : raw;
  try {
    return parseStrictJson(body, { what: `${o.what} ${path}`, maxBytes: MAX_SETTINGS_FILE_BYTES });
  } catch (e) {
    if (!isDepotsyncError(e, 'bad-json')) throw e;
    const bad = o.badJson?.(e.message) ?? { message: `${o.what} ${path} is not valid JSON (${e.message})` };
    throw new DepotsyncError('bad-json', bad.message, { cause: e, ...(bad.hint ? { hint: bad.hint } : {}) });
  }
}
