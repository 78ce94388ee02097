import { intOption } from '../config/validate.js';
import { DepotsyncError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { DEFAULT_CHUNK_LEVEL } from './encoding.js';
import { MAX_LEVEL, MIN_FAST_LEVEL } from '../compress/zstd.js';

export interface ChunkStoreOptions {
  logger: Logger;
  /** Re-hash every chunk that `get()` returns unless the call says otherwise (docs/contributing.md). */
  verifyOnRead: boolean;
  /** A pack is closed to new batches once it reaches this size (a single batch may overshoot it). */
  maxPackBytes: number;
  /** GC compacts a pack when at least this fraction of it is dead (0..1). */
  compactDeadFraction: number;
  /** GC never removes a chunk stored or re-put less than this long ago (a publish in flight). */
  gcGraceMs: number;
  /** How long a writer waits for another process's write lock before failing. */
  lockTimeoutMs: number;
  /** Pack files kept open for reading. */
  maxOpenPacks: number;
  /** Clock (ms since epoch); injectable so tests of the GC grace period need no sleeps. */
  now: () => number;
  /**
   * fdatasync each batch before indexing it, and commit the index with synchronous=FULL (default). A
   * cache whose every read is verified (the agent's chunk cache) turns this off: a power loss may then
   * lose recent chunks or leave index rows whose bytes never reached the disk, which the verification
   * on read finds and drops; nothing is corrupted.
   */
  durable: boolean;
  /**
   * zstd level of chunks put plain (store/encoding.ts): a chunk is kept compressed when that saves
   * space; 0 stores everything plain, negative levels are zstd's fast ones. Chunks that arrive compressed are stored as they came.
   */
  compressLevel: number;
}

export const DEFAULT_CHUNK_STORE_OPTIONS: ChunkStoreOptions = {
  logger: silentLogger(),
  verifyOnRead: true,
  maxPackBytes: 1024 * 1024 * 1024,
  compactDeadFraction: 0.3,
  gcGraceMs: 60 * 60 * 1000,
  lockTimeoutMs: 120_000,
  maxOpenPacks: 64,
  now: Date.now,
  durable: true,
  compressLevel: DEFAULT_CHUNK_LEVEL,
};

const WHERE = 'chunk store options';

export function resolveStoreOptions(given: Partial<ChunkStoreOptions> = {}): ChunkStoreOptions {
  const o: ChunkStoreOptions = { ...DEFAULT_CHUNK_STORE_OPTIONS };
  for (const [k, v] of Object.entries(given)) {
    if (v === undefined) continue;
    if (!(k in o)) throw new DepotsyncError('bad-input', `${WHERE}: unknown option ${JSON.stringify(k)}`);
    (o as unknown as Record<string, unknown>)[k] = v;
  }
  if (typeof o.durable !== 'boolean')
    throw new DepotsyncError(
      'bad-input',
      `${WHERE}: durable must be a boolean, got ${JSON.stringify(o.durable)}`,
    );
  if (!o.durable && !o.verifyOnRead) {
    throw new DepotsyncError(
      'bad-input',
      `${WHERE}: a store that is not durable must verify on read (verifyOnRead: true)`,
      {
        hint: 'a power loss can leave index rows whose bytes never reached the disk; only verification finds them',
      },
    );
  }
  if (typeof o.verifyOnRead !== 'boolean') {
    throw new DepotsyncError(
      'bad-input',
      `${WHERE}: verifyOnRead must be a boolean, got ${JSON.stringify(o.verifyOnRead)}`,
    );
  }
  intOption(WHERE, 'maxPackBytes', o.maxPackBytes, 64 * 1024, 2 ** 40);
  intOption(WHERE, 'gcGraceMs', o.gcGraceMs, 0, 2 ** 40);
  intOption(WHERE, 'lockTimeoutMs', o.lockTimeoutMs, 0, 2 ** 31);
  intOption(WHERE, 'maxOpenPacks', o.maxOpenPacks, 1, 65_536);
  intOption(WHERE, 'compressLevel', o.compressLevel, MIN_FAST_LEVEL, MAX_LEVEL);
  if (
    typeof o.compactDeadFraction !== 'number' ||
    !(o.compactDeadFraction > 0 && o.compactDeadFraction <= 1)
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${WHERE}: compactDeadFraction must be a number in (0, 1], got ${JSON.stringify(o.compactDeadFraction)}`,
    );
  }
  if (typeof o.now !== 'function')
    throw new DepotsyncError('bad-input', `${WHERE}: now must be a function returning milliseconds`);
  return o;
}
