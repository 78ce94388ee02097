import { mkdir, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DepotsyncError } from '../errors.js';
import { fsyncDir } from '../fs/atomic-write.js';
import { intOption } from '../config/validate.js';
import { keyToId, matchesKey } from './chunk-id.js';
import type { Logger } from '../log.js';
import { deadBytes, rowPlainLength, type ChunkIndex, type NewRow, type PackRow } from './chunk-index.js';
import { plainBytes, type ChunkEncoding } from './encoding.js';
import type { ChunkStoreOptions } from './options.js';
import type { PackFiles } from './pack-files.js';
import { PACK_HEADER_BYTES, packIdFromName } from './pack-format.js';
import { scanPack } from './pack-scan.js';
import type { AppendResult, NewRecord } from './store-writer.js';
import type { WriteLock } from './write-lock.js';

/** What compaction works with: the store's index, pack files and write lock, and the writer's append. */
export interface CompactionParts {
  readonly index: ChunkIndex;
  readonly packs: PackFiles;
  readonly lock: WriteLock;
  readonly log: Logger;
  readonly opts: Pick<ChunkStoreOptions, 'gcGraceMs' | 'compactDeadFraction' | 'now'>;
  readonly quarantineDir: string;
  /** Append records durably to any pack but `avoidPack`; the caller's transaction commits the rows. */
  append(records: NewRecord[], avoidPack: number): Promise<AppendResult>;
}

export interface GcOptions {
  /** Override the store's `gcGraceMs` for this run. */
  graceMs?: number;
  /** Override the store's `compactDeadFraction` for this run. */
  compactDeadFraction?: number;
}

export interface GcResult {
  /** Chunks dropped from the index because nothing live references them. */
  removed: number;
  /** Disk bytes released (pack files deleted, minus what copying their live chunks added elsewhere). */
  bytesFreed: number;
  durationMs: number;
  packsCompacted: number;
  packsDeleted: number;
  /** Live chunks that failed their hash while being copied; quarantined. */
  quarantined: number;
}

/** Chunks per sweep transaction, and bytes per compaction copy batch. */
const SWEEP_BATCH = 20_000;
const COPY_BATCH_BYTES = 32 * 1024 * 1024;

/**
 * Reclaim the space of chunks nothing references any more (ChunkStore.gc), as named, timed steps, each
 * safe to interrupt:
 *  1. mark:    list chunks for which `isLive` is false and whose grace period has passed;
 *  2. sweep:   delete their index rows in transactions (re-checking the grace period under the
 *              write lock, so a chunk re-put meanwhile by another process survives);
 *  3. compact: for each pack whose dead fraction passed the threshold, copy its live records (each
 *              re-hashed: corruption is quarantined, not copied) to another pack, fdatasync, move
 *              their index rows in the same commit, and delete the old pack only after its last
 *              row moved. A crash leaves either the old rows (and an unindexed tail in the new pack)
 *              or the new rows (and an orphan file that `open()` and step 4 delete);
 *  4. orphans: delete pack files no committed row refers to;
 *  5. checkpoint: fold the WAL back into the index file.
 */
export async function sweepAndCompact(
  s: CompactionParts,
  isLive: (id: string) => boolean,
  options: GcOptions,
): Promise<GcResult> {
  const graceMs = intOption('gc', 'graceMs', options.graceMs ?? s.opts.gcGraceMs, 0, 2 ** 40);
  const threshold = options.compactDeadFraction ?? s.opts.compactDeadFraction;
  if (!(threshold > 0 && threshold <= 1)) {
    throw new DepotsyncError(
      'bad-input',
      `gc: compactDeadFraction must be in (0, 1], got ${JSON.stringify(threshold)}`,
    );
  }
  return s.lock.exclusive(async () => {
    const t0 = performance.now();
    const result: GcResult = {
      removed: 0,
      bytesFreed: 0,
      durationMs: 0,
      packsCompacted: 0,
      packsDeleted: 0,
      quarantined: 0,
    };
    const step = async <T extends object>(name: string, fn: () => Promise<T>): Promise<T> => {
      const t = performance.now();
      const out = await fn();
      s.log.info(
        { step: name, durationMs: Math.round(performance.now() - t), ...(out as Record<string, unknown>) },
        `gc ${name}`,
      );
      return out;
    };
    const cutoffS = Math.floor((s.opts.now() - graceMs) / 1000);

    const dead: Buffer[] = [];
    await step('mark', async () => {
      let scanned = 0;
      for (const row of s.index.iterateIds()) {
        scanned++;
        if (row.added_s <= cutoffS && !isLive(keyToId(row.id))) dead.push(row.id);
      }
      return { scanned, dead: dead.length };
    });

    await step('sweep', async () => {
      for (let i = 0; i < dead.length; i += SWEEP_BATCH) {
        const part = dead.slice(i, i + SWEEP_BATCH);
        const { removed } = await s.lock.inTransaction(async () => s.index.deleteRows(part, cutoffS));
        result.removed += removed;
      }
      return { removed: result.removed };
    });

    await step('compact', async () => {
      for (const p of s.index.packs()) {
        const body = p.size - PACK_HEADER_BYTES;
        if (p.chunks === 0) {
          if (await dropPack(s, p.id)) {
            result.bytesFreed += p.size;
            result.packsDeleted++;
          }
        } else if (body > 0 && deadBytes(p, PACK_HEADER_BYTES) / body >= threshold) {
          const copied = await compactPack(s, p, result);
          if (copied !== undefined) {
            result.bytesFreed += p.size - copied;
            result.packsCompacted++;
          }
        }
      }
      return {
        packsCompacted: result.packsCompacted,
        packsDeleted: result.packsDeleted,
        bytesFreed: result.bytesFreed,
      };
    });

    await step('orphans', async () => ({ removed: await removeOrphans(s) }));
    await step('checkpoint', async () => {
      s.index.db.pragma('wal_checkpoint(TRUNCATE)');
      return {};
    });
    result.durationMs = Math.round(performance.now() - t0);
    s.log.info(result, 'gc done');
    return result;
  });
}

/** Do stored bytes decode (capped at the plain length) to bytes that hash to `key`? */
function storedMatches(key: Buffer, encoding: ChunkEncoding, data: Buffer, plainLength: number): boolean {
  try {
    return matchesKey(key, plainBytes(encoding, data, plainLength, `chunk ${keyToId(key)}`));
  } catch {
    return false;
  }
}

/**
 * Copy the live records of pack `p` elsewhere and delete it. Returns bytes copied, or
 * undefined if the pack was kept.
 */
async function compactPack(s: CompactionParts, p: PackRow, result: GcResult): Promise<number | undefined> {
  let batch: Array<NewRecord & { fromOffset: number }> = [];
  let batchBytes = 0;
  let copied = 0;
  const bad: Buffer[] = [];
  const flush = async (): Promise<void> => {
    const moves = batch;
    const quarantine = bad.splice(0);
    batch = [];
    batchBytes = 0;
    await s.lock.inTransaction(async () => {
      if (moves.length > 0) {
        const { pack, size, rows, grewBytes } = await s.append(moves, p.id);
        copied += grewBytes;
        s.index.moveRows(
          p.id,
          pack,
          size,
          rows.map((r: NewRow, i) => ({ ...r, fromOffset: moves[i]!.fromOffset })),
        );
      }
      if (quarantine.length > 0) result.quarantined += s.index.deleteRows(quarantine).removed;
    });
  };
  const records = scanPack(s.packs, p.id, PACK_HEADER_BYTES, p.size);
  for (;;) {
    const next = await records.next();
    if (next.done) {
      if (next.value.bad !== undefined) {
        s.log.error(
          { pack: s.packs.path(p.id), offset: next.value.bad },
          'gc: damaged record header; pack kept (run a scrub)',
        );
        await flush();
        return undefined;
      }
      break;
    }
    const { key, offset, data, encoding } = next.value;
    const row = s.index.lookup(key);
    if (!row || row.pack !== p.id || row.offset !== offset) continue; // dead record
    const plainLength = rowPlainLength(row);
    if (!storedMatches(key, encoding, data, plainLength)) {
      // Never copy corruption into a fresh pack: keep the bytes aside and let the next sync refetch.
      s.log.error(
        { chunk: keyToId(key), pack: s.packs.path(p.id) },
        'gc: live chunk failed its hash; quarantined',
      );
      await mkdir(s.quarantineDir, { recursive: true });
      await writeFile(join(s.quarantineDir, `${keyToId(key)}.${s.opts.now()}.bin`), data).catch(() => {});
      bad.push(key);
      continue;
    }
    batch.push({ key, data, encoding, plainLength, fromOffset: offset });
    batchBytes += data.length;
    if (batchBytes >= COPY_BATCH_BYTES) await flush();
  }
  await flush();
  if (!(await dropPack(s, p.id))) {
    s.log.warn(
      { pack: s.packs.path(p.id) },
      'gc: pack still has chunks after compaction (written meanwhile); kept',
    );
    return undefined;
  }
  return copied;
}

/**
 * Delete a pack row if no chunk is indexed in it (checked under the write lock: another process may
 * have appended to it meanwhile), then its file. A crash in between leaves an orphan file, removed later.
 */
async function dropPack(s: CompactionParts, packId: number): Promise<boolean> {
  const dropped = await s.lock.inTransaction(async () => {
    const row = s.index.pack(packId);
    if (!row || row.chunks > 0) return false;
    s.index.dropPack(packId);
    return true;
  });
  if (!dropped) return false;
  await s.packs.evict(packId);
  await unlink(s.packs.path(packId)).catch(() => {});
  await fsyncDir(s.packs.dir);
  return true;
}

async function removeOrphans(s: CompactionParts): Promise<number> {
  return s.lock.inTransaction(async () => {
    const known = new Set(s.index.packs().map((p) => p.id));
    let removed = 0;
    for (const name of await readdir(s.packs.dir)) {
      const id = packIdFromName(name);
      if (id !== undefined && known.has(id)) continue;
      await unlink(join(s.packs.dir, name)).catch(() => {});
      s.log.warn({ file: name }, 'gc: removed a pack file that no committed index row refers to');
      removed++;
    }
    if (removed > 0) await fsyncDir(s.packs.dir);
    return removed;
  });
}
