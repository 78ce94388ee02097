import { createHash } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import {
  REVOCATION_DEFAULTS,
  verifyRevocationList,
  type RevocationList,
} from '../../src/wire/revocations.js';
import type { DepotDb } from '../db/depot-db.js';
import type { ByteCounter, Upstream } from './upstream.js';

/**
 * Fetch the signed revocation list from upstream, verify it with the master's CA certificate (signature,
 * expiry, and no older than the one kept: a rollback would un-revoke machines), and keep it for
 * re-serving and for the depot's own mutual-TLS gate. A list the upstream does not have yet (404) is
 * not an error: the depot keeps enforcing the last one it verified.
 */
export async function syncRevocations(deps: {
  db: DepotDb;
  upstream: Upstream;
  caPem: string;
  counter: ByteCounter;
  /** Reference time for the list's expiry (an offline bundle: its signed export time). */
  now: () => Date;
  log: Logger;
  /** Fetch even when this sync's hint says the list is unchanged (an event announced a newer one). */
  force?: boolean;
}): Promise<{ list: RevocationList | undefined; changed: boolean }> {
  const kept = deps.db.revocations();
  // The upstream's timestamp said its list is the one kept (a hint: skipping the fetch is all a lie could
  // cause): no request, as long as the kept list is still in date (else fetch the re-signed one).
  if (
    kept &&
    !deps.force &&
    deps.upstream.revocationsUnchanged?.(createHash('sha256').update(kept.bytes).digest('hex'))
  ) {
    try {
      return { list: verifyRevocationList(kept.bytes, deps.caPem, { now: deps.now() }), changed: false };
    } catch {
      // expired: fetch below
    }
  }
  const bytes = await deps.upstream.revocationList(REVOCATION_DEFAULTS.maxBytes);
  if (!bytes) {
    deps.log.warn(
      { upstream: deps.upstream.origin },
      'upstream has no revocation list yet; keeping the last one',
    );
    return {
      list: kept ? verifyRevocationList(kept.bytes, deps.caPem, { now: new Date(0) }) : undefined,
      changed: false,
    };
  }
  deps.counter.add(bytes.length);
  let list: RevocationList;
  try {
    list = verifyRevocationList(bytes, deps.caPem, {
      now: deps.now(),
      ...(kept ? { minVersion: kept.version } : {}),
    });
  } catch (e) {
    if (e instanceof DepotsyncError) {
      throw new DepotsyncError(e.code, `${e.message} (from ${deps.upstream.origin})`, {
        hint: e.hint ?? 'the upstream served a bad revocation list',
        cause: e,
      });
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
