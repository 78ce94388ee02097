import type { DeltaCache } from '../../src/deltas/cache.js';
import { decodeManifest, uniqueChunkIds } from '../../src/content/manifest.js';
import { parseStrictJson } from '../../src/content/strict-json.js';
import type { Logger } from '../../src/log.js';
import type { ChunkStore, GcResult } from '../../src/store/chunk-store.js';
import { metadataFileName } from '../../src/tuf/context.js';
import type { DepotDb } from '../db/depot-db.js';

export interface PruneResult extends GcResult {
  targetsPruned: number;
  metadataPruned: number;
  liveChunks: number;
  /** Kept version deltas removed with their chunks. */
  deltasRemoved: number;
}

/** Metadata files a snapshot names (and the snapshot itself), by consistent-snapshot name. */
function namedBySnapshot(bytes: Buffer | undefined, into: Set<string>): void {
  if (!bytes) return;
  try {
    type Snapshot = { signed?: { version?: number; meta?: Record<string, { version?: number }> } };
    const doc = parseStrictJson(bytes, { what: 'snapshot', maxBytes: bytes.length }) as Snapshot;
    const s = doc.signed;
    if (typeof s?.version === 'number') into.add(metadataFileName('snapshot', s.version));
    for (const [file, m] of Object.entries(s?.meta ?? {}))
      if (typeof m.version === 'number') into.add(metadataFileName(file.replace(/\.json$/, ''), m.version));
  } catch {
    // Our own verified bytes; if they do not parse, keep everything (prune nothing more than named).
  }
}

/**
 * Drop what neither the served nor the pending generation references (run it through
 * `SyncEngine.exclusive`, so no sync runs meanwhile):
 *  1. forget manifests neither the served nor the pending generation lists;
 *  2. forget metadata files (other than roots) neither generation's snapshot names;
 *  3. collect chunks no manifest of the served or pending generation references (ChunkStore.gc:
 *     mark, sweep, compact, with its grace period for chunks stored moments ago), and the kept
 *     version deltas of those chunks.
 */
export async function pruneUnreferenced(
  d: { db: DepotDb; store: ChunkStore; log: Logger; deltas?: DeltaCache },
  opts: { graceMs?: number } = {},
): Promise<PruneResult> {
  const log = d.log.child({ component: 'depot.gc' });
  const targetsPruned = d.db.pruneTargets();
  const keep = new Set<string>();
  const served = d.db.served();
  if (served) namedBySnapshot(d.db.metadataFile(metadataFileName('snapshot', served.generation)), keep);
  namedBySnapshot(d.db.trustedLoad('snapshot'), keep);
  const metadataPruned = keep.size > 0 ? d.db.pruneMetadata(keep) : 0;
  const live = new Set<string>();
  for (const t of d.db.liveTargets())
    for (const id of uniqueChunkIds(decodeManifest(t.bytes, { what: `stored manifest ${t.name}` })))
      live.add(id);
  const r = await d.store.gc(
    (id) => live.has(id),
    opts.graceMs === undefined ? {} : { graceMs: opts.graceMs },
  );
  // Kept version deltas go with their chunks: one whose target is no longer live is never asked for.
  const deltas = await d.deltas?.collect((id) => live.has(id));
  const out = {
    ...r,
    targetsPruned,
    metadataPruned,
    liveChunks: live.size,
    deltasRemoved: deltas?.removed ?? 0,
  };
  log.info(out, 'depot gc done');
  return out;
}
