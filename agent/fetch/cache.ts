/*
 * The agent's chunk cache (file-cache.ts, under A/cache): the verified chunks a failed or killed fetch
 * had staged (staging.ts salvages them), so the next attempt downloads only what is missing. It only
 * ever speeds things up: a cache that fails is dropped, never the fetch.
 */
import type { Logger } from '../../src/log.js';
import type { ChunkInput } from '../../src/store/chunk-id.js';
import type { ChunkNeed } from './chunks.js';
import type { ChunkCache } from './file-cache.js';

/** Chunks already verified in an earlier attempt: re-hashed on read (distrust the disk), then staged. */
export async function readCached(
  cache: ChunkCache,
  needs: readonly ChunkNeed[],
  verify: (need: ChunkNeed, data: Uint8Array) => ChunkInput,
  write: (need: ChunkNeed, data: Uint8Array) => Promise<void>,
  log: Logger,
): Promise<Set<string>> {
  const missing = new Set(cache.missing(needs.map((n) => n.id)));
  const got = new Set<string>();
  for (const need of needs) {
    if (missing.has(need.id)) continue;
    let data: Buffer;
    try {
      data = await cache.get(need.id, { verify: false });
      verify(need, data);
    } catch (e) {
      log.warn({ chunk: need.id, err: (e as Error).message }, 'cached chunk unusable; downloading it again');
      await cache.quarantine(need.id).catch(() => undefined);
      continue;
    }
    await write(need, data);
    got.add(need.id);
  }
  return got;
}

/** Keep the cache under its limit: when over, keep only the chunks of the package just fetched. */
export async function trimCache(
  cache: ChunkCache,
  maxBytes: number,
  keep: Set<string>,
  log: Logger,
): Promise<void> {
  if (cache.stats().bytes <= maxBytes) return;
  const r = await cache.gc((id) => keep.has(id));
  log.info({ removed: r.removed, bytesFreed: r.bytesFreed }, 'chunk cache trimmed');
}
