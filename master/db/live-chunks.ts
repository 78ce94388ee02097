import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from './database.js';
import { count, hex64 } from './values.js';

/**
 * What garbage collection of the master's chunk store must keep: every chunk referenced by the manifest
 * of a live package version. `retainSinceGeneration` keeps, in addition, chunks of versions removed
 * AFTER that generation, so depots still syncing an older generation can finish (a grace period).
 *
 * Not covered here: chunks stored by a publish that has not committed yet. The store's GC must spare
 * chunks written recently (by age) or run under the publish lock.
 */
export interface LiveChunkOptions {
  /** Also keep chunks of versions removed in a generation > this one. Default: only live versions. */
  retainSinceGeneration?: number;
  /** Ids fetched per query. */
  pageSize?: number;
}

export const LIVE_CHUNK_DEFAULTS = { pageSize: 10_000 } as const;

const LIVE_MANIFEST = `EXISTS (
  SELECT 1 FROM manifests mf JOIN package_versions v ON v.manifest_id = mf.id
  WHERE mf.seq = r.manifest_seq AND (v.removed_generation IS NULL OR v.removed_generation > ?))`;

/**
 * Distinct live chunk ids (hex), in ascending order, fetched a page at a time by keyset. Between pages
 * the connection is free, so a GC that awaits file deletions while iterating does not block the server
 * (one cursor over the whole walk would hold the connection busy). A publish that
 * commits during the walk may add ids the walk has passed: the GC must spare recent chunks anyway.
 */
export async function* liveChunkIds(
  m: MasterDb,
  opts: LiveChunkOptions = {},
): AsyncGenerator<string, void, undefined> {
  const retain = retainGeneration(opts);
  const pageSize = count(opts.pageSize ?? LIVE_CHUNK_DEFAULTS.pageSize, 'liveChunkIds: option pageSize', 1);
  const page = `SELECT DISTINCT r.chunk_id FROM chunk_refs r WHERE r.chunk_id > ? AND ${LIVE_MANIFEST} ORDER BY r.chunk_id LIMIT ?`;
  let after: Buffer = Buffer.alloc(0);
  for (;;) {
    const rows = await m.sql.all<{ chunk_id: Buffer }>(page, [after, retain, pageSize]);
    for (const r of rows) yield r.chunk_id.toString('hex');
    const last = rows[rows.length - 1];
    if (rows.length < pageSize || !last) return;
    after = last.chunk_id;
  }
}

/** True when a live (or retained) manifest references `chunkId`. */
export async function isChunkLive(
  m: MasterDb,
  chunkId: string,
  opts: Pick<LiveChunkOptions, 'retainSinceGeneration'> = {},
): Promise<boolean> {
  const id = Buffer.from(hex64(chunkId, 'chunk id'), 'hex');
  const r = await m.sql.get(
    `SELECT 1 AS one FROM chunk_refs r WHERE r.chunk_id = ? AND ${LIVE_MANIFEST} LIMIT 1`,
    [id, retainGeneration(opts)],
  );
  return r !== undefined;
}

function retainGeneration(opts: Pick<LiveChunkOptions, 'retainSinceGeneration'>): number {
  const g = opts.retainSinceGeneration;
  if (g === undefined) return Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(g) || g < 0) {
    throw new DepotsyncError(
      'bad-input',
      `liveChunkIds: option retainSinceGeneration must be an integer >= 0, got ${JSON.stringify(g)}`,
    );
  }
  return g;
}
