/*
 * The agent's chunk cache (a ChunkStore under A/cache): verified chunks of fetches, so an interrupted
 * fetch downloads only what is missing. It only ever speeds things up: a cache that fails is dropped,
 * never the fetch.
 */
import type { Logger } from '../../log.js';
import type { ChunkInput } from '../../store/chunk-id.js';
import type { ChunkStore } from '../../store/chunk-store.js';
import type { ChunkNeed } from './chunks.js';

/** Chunks already verified in an earlier attempt: re-hashed on read (distrust the disk), then staged. */
export async function readCached(
  cache: ChunkStore,
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
export async function trimCache(cache: ChunkStore, maxBytes: number, keep: Set<string>, log: Logger): Promise<void> {
  if (cache.stats().bytes <= maxBytes) return;
  const r = await cache.gc((id) => keep.has(id), { graceMs: 0 });
  log.info({ removed: r.removed, bytesFreed: r.bytesFreed }, 'chunk cache trimmed');
}

/** Bytes of verified chunks that may wait for the cache before the download waits for it. */
const CACHE_QUEUE_BYTES = 64 * 1024 * 1024;

/**
 * Writes verified chunks to the cache behind the download, so its fdatasyncs overlap the network
 * instead of stalling it: whatever queued while one durable batch was being written goes into the
 * next (fewer, larger commits). The queue is bounded; a cache that fails (full disk) is dropped for
 * the rest of the fetch: it only speeds up a retry, so it never fails the fetch.
 */
export class CacheWriter {
  private queue: ChunkInput[] = [];
  /** Called once the queued chunks are written (or dropped): their buffers may be reused. */
  private released: Array<() => void> = [];
  private queuedBytes = 0;
  private running: Promise<void> | undefined;
  private ok = true;

  constructor(
    private readonly cache: ChunkStore,
    private readonly log: Logger,
  ) {}

  /** Queue `chunks` for the cache; `release` is called when their bytes are no longer needed. */
  async add(chunks: ChunkInput[], release?: () => void): Promise<void> {
    if (!this.ok) {
      release?.();
      return;
    }
    for (const c of chunks) {
      this.queue.push(c);
      this.queuedBytes += c.data.length;
    }
    if (release) this.released.push(release);
    this.running ??= this.pump();
    if (this.queuedBytes > CACHE_QUEUE_BYTES) await this.running;
  }

  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.ok) {
        const batch = this.queue;
        const released = this.released;
        this.queue = [];
        this.released = [];
        this.queuedBytes = 0;
        await this.cache.putMany(batch).catch((e: unknown) => {
          this.ok = false;
          this.log.warn({ err: (e as Error).message }, 'chunk cache write failed; continuing without it');
        });
        for (const r of released) r();
      }
    } finally {
      for (const r of this.released) r();
      this.released = [];
      this.queue = [];
      this.running = undefined;
    }
  }
}
