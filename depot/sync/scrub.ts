import { isDepotsyncError } from '../../src/errors.js';
import { decodeManifest, uniqueChunkIds } from '../../src/content/manifest.js';
import type { Logger } from '../../src/log.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';
import type { DepotDb } from '../db/depot-db.js';
import { TokenBucket } from './bandwidth.js';
import { KV } from './status-report.js';

export interface ScrubResult {
  ok: number;
  failed: number;
  bytes: number;
  durationMs: number;
}

/**
 * Content validation: re-hash every chunk the served generation needs, at most `bytesPerSecond` (the
 * disk keeps serving agents meanwhile). A chunk that fails its hash (or cannot be read whole) is
 * quarantined (kept aside, dropped from the index) and every manifest is marked for checking, so
 * the next sync fetches a good copy. The counts go into the status report.
 */
export async function scrub(
  d: { db: DepotDb; store: ChunkStore; log: Logger },
  opts: { bytesPerSecond: number; now?: () => Date; bucket?: TokenBucket; signal?: AbortSignal },
): Promise<ScrubResult> {
  const log = d.log.child({ component: 'depot.scrub' });
  const t0 = performance.now();
  const bucket = opts.bucket ?? new TokenBucket(opts.bytesPerSecond);
  const ids = new Set<string>();
  for (const t of d.db.liveTargets(['served']))
    for (const id of uniqueChunkIds(decodeManifest(t.bytes, { what: `stored manifest ${t.name}` })))
      ids.add(id);
  const r: ScrubResult = { ok: 0, failed: 0, bytes: 0, durationMs: 0 };
  for (const id of ids) {
    if (opts.signal?.aborted) break; // stopping: the next scrub starts over
    const size = d.store.size(id);
    if (size === undefined) {
      r.failed++;
      log.error({ chunk: id }, 'scrub: a chunk of the served generation is missing');
      continue;
    }
    await bucket.take(size);
    try {
      await d.store.get(id, { verify: true });
      r.ok++;
      r.bytes += size;
    } catch (e) {
      if (
        !isDepotsyncError(e, 'corrupt') &&
        !isDepotsyncError(e, 'truncated') &&
        !isDepotsyncError(e, 'not-found')
      )
        throw e;
      r.failed++;
      log.error({ chunk: id, err: (e as Error).message }, 'scrub: chunk failed verification; quarantined');
      await d.store.quarantine(id);
    }
  }
  if (r.failed > 0) d.db.markAllIncomplete();
  r.durationMs = Math.round(performance.now() - t0);
  d.db.setKv(KV.scrubOk, String(r.ok));
  d.db.setKv(KV.scrubFailed, String(r.failed));
  d.db.setKv(KV.scrubAt, (opts.now ?? (() => new Date()))().toISOString());
  log.info(r, 'scrub done');
  return r;
}
