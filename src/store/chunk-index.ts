import Database from 'better-sqlite3';
import { DepotsyncError } from '../errors.js';
import { ENCODING_CODE, encodingFromCode, type ChunkEncoding } from './encoding.js';
import { RECORD_HEADER_BYTES } from './pack-format.js';

/**
 * The SQLite index of the chunk store: which pack holds a chunk and where, and how much of each pack
 * is committed and still live. Schema version in `user_version` (docs/contributing.md).
 *
 * `chunks` is a WITHOUT ROWID table keyed by the 32-byte binary id: one B-tree, no separate rowid
 * index, about 55 bytes per chunk. There is deliberately no index by pack: compaction walks the pack
 * file itself and asks, per record, whether the index still points there.
 */
export const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE packs (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  size        INTEGER NOT NULL,            -- committed bytes (file header + records); the rest of the file is an uncommitted tail
  chunks      INTEGER NOT NULL DEFAULT 0,  -- indexed records in this pack
  live_bytes  INTEGER NOT NULL DEFAULT 0   -- chunk bytes (without record headers) of the indexed records
);
CREATE TABLE chunks (
  id       BLOB PRIMARY KEY,
  pack     INTEGER NOT NULL,
  offset   INTEGER NOT NULL,               -- of the record header
  length   INTEGER NOT NULL,               -- chunk bytes
  added_s  INTEGER NOT NULL                -- last stored or re-put (unix seconds): GC grace period
) WITHOUT ROWID;
`;

/**
 * Version 2: chunks may be stored compressed. `length` (and `live_bytes`) count stored bytes; `encoding`
 * is 0 for plain, 1 for zstd (encoding.ts), and `plain` the plain length of a compressed chunk (NULL
 * for plain ones). Rows of a version 1 store are plain and stay as they are.
 */
const TO_V2 = `
ALTER TABLE chunks ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN plain INTEGER;
`;
export interface ChunkRow {
  pack: number;
  offset: number;
  /** Stored bytes. */
  length: number;
  added_s: number;
  /** 0 plain, 1 zstd (ENCODING_CODE). */
  encoding: number;
  /** Plain length of a compressed chunk; null for a plain one. */
  plain: number | null;
}

export function rowEncoding(row: ChunkRow): ChunkEncoding {
  return encodingFromCode(row.encoding, 'chunk index row');
}

export function rowPlainLength(row: ChunkRow): number {
  return row.plain ?? row.length;
}

export interface PackRow {
  id: number;
  size: number;
  chunks: number;
  live_bytes: number;
}

export interface NewRow {
  key: Buffer;
  offset: number;
  /** Stored bytes. */
  length: number;
  encoding: ChunkEncoding;
  plainLength: number;
}

/** Record bytes in a pack that no index row points at any more. */
export function deadBytes(p: PackRow, packHeaderBytes: number): number {
  return p.size - packHeaderBytes - p.live_bytes - p.chunks * RECORD_HEADER_BYTES;
}

export class ChunkIndex {
  readonly db: Database.Database;
  private readonly sLookup: Database.Statement<[Buffer], ChunkRow>;
  private readonly sHas: Database.Statement<[Buffer], number>;
  private readonly sInsert: Database.Statement<
    [Buffer, number, number, number, number, number, number | null]
  >;
  private readonly sTouch: Database.Statement<[number, Buffer, number]>;
  private readonly sDelete: Database.Statement<[Buffer, number], ChunkRow>;
  private readonly sMove: Database.Statement<[number, number, Buffer, number, number]>;
  private readonly sPackAdd: Database.Statement<[number, number, number, number]>;
  private readonly sPacks: Database.Statement<[], PackRow>;

  constructor(path: string, opts: { durable: boolean } = { durable: true }) {
    try {
      this.db = new Database(path, { timeout: 1000 });
      this.db.pragma('journal_mode = WAL');
      // Set on every open: better-sqlite3 reopening a WAL database starts at NORMAL, which can lose
      // the last commits on power loss; an index commit must be as durable as the pack fsync before it.
      // A store that is not durable (a verified cache) keeps NORMAL: never
      // corrupt, may lose the last commits.
      this.db.pragma(opts.durable ? 'synchronous = FULL' : 'synchronous = NORMAL');
      // 64 MiB of page cache (default 2 MiB): random 32-byte keys touch index pages all over the
      // B-tree, ~55 MB per million chunks.
      this.db.pragma('cache_size = -65536');
      this.migrate();
    } catch (e) {
      if (e instanceof DepotsyncError) throw e;
      throw new DepotsyncError('io', `chunk index ${path}: cannot open: ${(e as Error).message}`, {
        hint: 'check the permissions of the store folder; if the file is damaged, restore it or rebuild the store',
        cause: e,
      });
    }
    const db = this.db;
    this.sLookup = db.prepare(
      'SELECT pack, offset, length, added_s, encoding, plain FROM chunks WHERE id = ?',
    );
    this.sHas = db.prepare<[Buffer], number>('SELECT 1 FROM chunks WHERE id = ?').pluck();
    this.sInsert = db.prepare(
      'INSERT OR IGNORE INTO chunks (id, pack, offset, length, added_s, encoding, plain) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.sTouch = db.prepare('UPDATE chunks SET added_s = ? WHERE id = ? AND added_s < ?');
    this.sDelete = db.prepare(
      'DELETE FROM chunks WHERE id = ? AND added_s <= ? RETURNING pack, offset, length, added_s, encoding, plain',
    );
    this.sMove = db.prepare(
      'UPDATE chunks SET pack = ?, offset = ? WHERE id = ? AND pack = ? AND offset = ?',
    );
    this.sPackAdd = db.prepare(
      'UPDATE packs SET size = max(size, ?), chunks = chunks + ?, live_bytes = live_bytes + ? WHERE id = ?',
    );
    this.sPacks = db.prepare('SELECT id, size, chunks, live_bytes FROM packs ORDER BY id');
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version === SCHEMA_VERSION) return;
    if (version === 0 || version === 1) {
      // A new store is made as version 1 and migrated like an old one: one path for both.
      this.db
        .transaction(() => {
          if (version === 0) this.db.exec(SCHEMA);
          this.db.exec(TO_V2);
          this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
        })
        .immediate();
      return;
    }
    throw new DepotsyncError(
      'bad-input',
      `chunk index has schema version ${version}; this program knows ${SCHEMA_VERSION}`,
      {
        hint: 'run the depotsync version that created this store, or a newer one',
      },
    );
  }

  lookup(key: Buffer): ChunkRow | undefined {
    return this.sLookup.get(key);
  }

  has(key: Buffer): boolean {
    return this.sHas.get(key) !== undefined;
  }

  /**
   * The keys not indexed, checked inside one read transaction: outside one, every statement opens its
   * own WAL read snapshot, which costs ~5 µs per id against ~1 µs inside (measured, bench/store.ts).
   */
  absent(keys: Buffer[]): boolean[] {
    return this.inReadTransaction(() => keys.map((k) => this.sHas.get(k) === undefined));
  }

  /** The rows of many keys (undefined where absent), looked up inside one read transaction as `absent`. */
  lookupMany(keys: readonly Buffer[]): Array<ChunkRow | undefined> {
    return this.inReadTransaction(() => keys.map((k) => this.sLookup.get(k)));
  }

  private inReadTransaction<T>(run: () => T): T {
    return this.db.inTransaction ? run() : this.db.transaction(run).deferred();
  }

  packs(): PackRow[] {
    return this.sPacks.all();
  }

  createPack(size: number): number {
    return Number(this.db.prepare('INSERT INTO packs (size) VALUES (?)').run(size).lastInsertRowid);
  }

  dropPack(id: number): void {
    this.db.prepare('DELETE FROM packs WHERE id = ?').run(id);
  }

  /**
   * Index rows for records appended to `pack`, which is now committed up to `size`. Returns rows inserted.
   */
  addRows(
    pack: number,
    size: number,
    rows: NewRow[],
    nowS: number,
  ): { inserted: number; bytes: number; plainBytes: number } {
    let inserted = 0;
    let bytes = 0;
    let plainBytes = 0;
    for (const r of rows) {
      const code = ENCODING_CODE[r.encoding];
      const plain = r.encoding === 'plain' ? null : r.plainLength;
      if (this.sInsert.run(r.key, pack, r.offset, r.length, nowS, code, plain).changes > 0) {
        inserted++;
        bytes += r.length;
        plainBytes += r.plainLength;
      }
    }
    this.sPackAdd.run(size, inserted, bytes, pack);
    return { inserted, bytes, plainBytes };
  }

  /**
   * Point rows at their copies in another pack (compaction); `size` is the target pack's new
   * committed size. A row is moved only if it still points where the copy was read from.
   */
  moveRows(
    fromPack: number,
    toPack: number,
    size: number,
    moves: Array<NewRow & { fromOffset: number }>,
  ): number {
    let moved = 0;
    let bytes = 0;
    for (const m of moves) {
      if (this.sMove.run(toPack, m.offset, m.key, fromPack, m.fromOffset).changes === 0) continue;
      moved++;
      bytes += m.length;
    }
    this.sPackAdd.run(size, moved, bytes, toPack);
    this.sPackAdd.run(0, -moved, -bytes, fromPack);
    return moved;
  }

  /** Refresh the GC grace timestamp of chunks that were put again ("already there"). */
  touch(keys: Buffer[], nowS: number, olderThanS: number): void {
    for (const k of keys) this.sTouch.run(nowS, k, olderThanS);
  }

  /** Delete rows; with `maxAddedS`, only rows not stored or re-put after it (GC's grace period). */
  deleteRows(keys: Buffer[], maxAddedS = Number.MAX_SAFE_INTEGER): { removed: number; bytes: number } {
    let removed = 0;
    let bytes = 0;
    for (const k of keys) {
      const row = this.sDelete.get(k, maxAddedS);
      if (!row) continue;
      removed++;
      bytes += row.length;
      this.sPackAdd.run(0, -1, -row.length, row.pack);
    }
    return { removed, bytes };
  }

  pack(id: number): PackRow | undefined {
    return this.db
      .prepare<[number], PackRow>('SELECT id, size, chunks, live_bytes FROM packs WHERE id = ?')
      .get(id);
  }

  /** Plain bytes of every indexed chunk (one scan of the index: for status, not for hot paths). */
  plainBytes(): number {
    return (
      (this.db.prepare('SELECT sum(coalesce(plain, length)) FROM chunks').pluck().get() as number | null) ?? 0
    );
  }

  /** Every indexed chunk (for GC's mark step), streamed without loading 10 million rows at once. */
  *iterateIds(): IterableIterator<{ id: Buffer; length: number; added_s: number }> {
    yield* this.db
      .prepare<[], { id: Buffer; length: number; added_s: number }>('SELECT id, length, added_s FROM chunks')
      .iterate();
  }

  close(): void {
    this.db.close();
  }
}
