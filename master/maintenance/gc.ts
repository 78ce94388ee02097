import type { GcResult } from '../../src/store/chunk-store.js';
import { recordAudit } from '../db/audit.js';
import { LIVE_CHUNK_DEFAULTS, liveChunkIds } from '../db/live-chunks.js';
import type { MasterContext } from '../context.js';
import { masterDeltaCache } from '../deltas/deltas.js';

export interface MasterGcResult extends GcResult {
  /** Distinct chunks live (or retained) versions reference. */
  liveChunks: number;
  /** Versions removed after this generation still kept their chunks (the grace period). */
  retainSinceGeneration: number;
  /** Cached version deltas removed with their versions (or beyond the cache's size), and their bytes. */
  deltasRemoved: number;
  deltaBytesFreed: number;
}

/**
 * Collect the master's chunks that no live version references. A publish in flight is protected by the
 * store's grace period: its chunks were stored (or re-put, which restarts their grace) less than `graceMs`
 * ago, and the sweep re-checks that under the store's write lock, so a publish that commits after the
 * live set was read never loses a chunk. Versions removed within `graceMs` also keep their chunks, so a
 * depot still syncing the previous generation can finish.
 */
export async function collectMasterGarbage(
  ctx: MasterContext,
  opts: { graceMs?: number; actor?: string } = {},
): Promise<MasterGcResult> {
  const log = ctx.log.child({ component: 'master.gc' });
  const graceMs = opts.graceMs ?? ctx.config.gcGraceHours * 3_600_000;
  const cutoff = new Date(ctx.db.now().getTime() - graceMs).toISOString();
  // The newest generation already older than the grace period; removals after it are still retained.
  const retainSinceGeneration =
    (
      await ctx.db.sql.get<{ g: number | null }>(
        'SELECT MAX(generation) AS g FROM generations WHERE created_at <= ?',
        [cutoff],
      )
    )?.g ?? 0;
  const live = new Set<string>();
  for await (const id of liveChunkIds(ctx.db, { retainSinceGeneration })) {
    live.add(id);
    // A large catalog's walk must not hold the serving event loop for long (ids come a page at a time).
    if (live.size % LIVE_CHUNK_DEFAULTS.pageSize === 0)
      await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const r = await ctx.store.gc((id) => live.has(id), { graceMs });
  // Version deltas go with their versions: an entry whose target chunk no version references.
  const deltas = await masterDeltaCache(ctx).collect((target) => live.has(target));
  const out: MasterGcResult = {
    ...r,
    liveChunks: live.size,
    retainSinceGeneration,
    deltasRemoved: deltas.removed,
    deltaBytesFreed: deltas.bytes,
  };
  await recordAudit(ctx.db, {
    actor: opts.actor ?? 'system',
    action: 'store.gc',
    target: 'store',
    detail: {
      removed: r.removed,
      bytesFreed: r.bytesFreed,
      liveChunks: live.size,
      quarantined: r.quarantined,
    },
  });
  log.info(out, 'master gc done');
  return out;
}
