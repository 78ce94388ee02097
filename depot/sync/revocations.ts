import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { HttpClient } from '../../src/net/client.js';
import { REVOCATION_DEFAULTS, verifyRevocationList, type RevocationList } from '../../src/pki/revocations.js';
import type { DepotDb } from '../db/depot-db.js';
import { explainUpstream, type ByteCounter } from './upstream.js';

/**
 * Fetch the signed revocation list from upstream, verify it with the master's CA certificate (signature,
 * expiry, and no older than the one kept: a rollback would un-revoke machines), and keep it for
 * re-serving and for the depot's own mutual-TLS gate. A list the upstream does not have yet (404) is
 * not an error: the depot keeps enforcing the last one it verified.
 */
export async function syncRevocations(deps: {
  db: DepotDb;
  upstream: HttpClient;
  caPem: string;
  counter: ByteCounter;
  now: () => Date;
  log: Logger;
}): Promise<{ list: RevocationList | undefined; changed: boolean }> {
  const kept = deps.db.revocations();
  let bytes: Buffer;
  try {
    bytes = await deps.upstream.getBytes('/v1/revocations.json', { maxBytes: REVOCATION_DEFAULTS.maxBytes, what: 'revocation list' });
  } catch (e) {
    if (isDepotsyncError(e, 'not-found')) {
      deps.log.warn({ upstream: deps.upstream.baseUrl.origin }, 'upstream has no revocation list yet; keeping the last one');
      return { list: kept ? verifyRevocationList(kept.bytes, deps.caPem, { now: new Date(0) }) : undefined, changed: false };
    }
    throw explainUpstream(e, deps.upstream.baseUrl.origin);
  }
  deps.counter.add(bytes.length);
  let list: RevocationList;
  try {
    list = verifyRevocationList(bytes, deps.caPem, { now: deps.now(), ...(kept ? { minVersion: kept.version } : {}) });
  } catch (e) {
    if (e instanceof DepotsyncError) {
      throw new DepotsyncError(e.code, `${e.message} (from ${deps.upstream.baseUrl.origin})`, { hint: e.hint ?? 'the upstream served a bad revocation list', cause: e });
    }
    throw e;
  }
  const changed = !kept || !kept.bytes.equals(bytes);
  if (changed) {
    deps.db.saveRevocations(list.version, bytes, deps.now());
    deps.log.info({ version: list.version, serials: list.serials.size }, 'revocation list updated');
  }
  return { list, changed };
}
