import type { Logger } from '../../src/log.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';
import type { DepotDb } from '../db/depot-db.js';

/**
 * What the read API does with a stored chunk that failed its hash on serve (disk rot): take it out of
 * service at once (quarantine: kept aside, dropped from the index, so no later request reads it), mark
 * every manifest for checking, and ask for a sync, which fetches a good copy from the upstream.
 * Concurrent requests for the same bad chunk repair it once.
 */
export function chunkRepairer(
  d: { db: DepotDb; store: ChunkStore; log: Logger },
  requestSync?: (id: string) => void,
): (id: string) => void {
  const log = d.log.child({ component: 'depot.repair' });
  const busy = new Set<string>();
  return (id) => {
    if (busy.has(id)) return;
    busy.add(id);
    void d.store
      .quarantine(id)
      .then((removed) => {
        if (!removed) return;
        d.db.markAllIncomplete();
        log.warn(
          { chunk: id },
          'chunk failed verification on serve; quarantined, a sync will fetch it again',
        );
        requestSync?.(id);
      })
      .catch((e: unknown) =>
        log.error({ chunk: id, err: (e as Error).message }, 'could not quarantine a bad chunk'),
      )
      .finally(() => busy.delete(id));
  };
}
