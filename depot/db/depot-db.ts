import { randomBytes } from 'node:crypto';
import type { Logger } from '../../src/log.js';
import { openDatabase, type Database } from '../../src/db/open.js';
import { transaction } from '../../src/db/transaction.js';
import { fromSqliteError } from '../../src/db/errors.js';
import { DepotsyncError } from '../../src/errors.js';
import { MIGRATIONS } from './schema.js';

export interface ServedState {
  generation: number;
  timestamp: Buffer;
  timestampVersion: number;
  switchedAt: string;
}

/** A verified manifest as the depot keeps it. */
export interface NewTarget {
  /** Served name `{sha256}.{path}`. */
  name: string;
  path: string;
  length: number;
  sha256: string;
  manifestId: string;
  totalBytes: number;
  chunkCount: number;
  bytes: Buffer;
}

export interface TargetRow {
  name: string;
  path: string;
  length: number;
  manifestId: string;
  totalBytes: number;
  chunkCount: number;
  complete: boolean;
}

export interface RunRow {
  id: number;
  pid: number;
  startedAt: string;
  finishedAt: string | null;
  outcome: string;
  generation: number | null;
  chunksFetched: number;
  bytesFetched: number;
  error: string | null;
}

export type Slot = 'served' | 'pending';

/**
 * The depot's database (schema.ts). Every method is one statement or one transaction; the served
 * generation changes only in `switchServed`, so a reader (the HTTP server) always sees a complete one.
 */
export class DepotDb {
  private constructor(
    readonly db: Database,
    readonly path: string,
  ) {}

  static open(path: string, logger: Logger): DepotDb {
    return new DepotDb(openDatabase(path, { migrations: MIGRATIONS, logger, busyTimeoutMs: 15_000 }), path);
  }

  close(): void {
    this.db.close();
  }

  /** Run `fn` in one write transaction; SQLite errors (disk full, busy) become typed errors. */
  tx<T>(what: string, fn: () => T): T {
    try {
      return transaction(this.db, fn);
    } catch (e) {
      throw fromSqliteError(e, `depot database ${this.path}: ${what}`);
    }
  }

  // ---- metadata files ------------------------------------------------------------------------

  metadataFile(name: string): Buffer | undefined {
    return this.db.prepare<[string], { bytes: Buffer }>('SELECT bytes FROM metadata WHERE name = ?').get(name)
      ?.bytes;
  }

  /** The newest root version among the metadata files this depot serves. */
  latestRootVersion(): number | undefined {
    return (
      this.db
        .prepare<[], { v: number | null }>("SELECT MAX(version) AS v FROM metadata WHERE role = 'root'")
        .get()?.v ?? undefined
    );
  }

  putMetadataFile(name: string, role: string, version: number, bytes: Uint8Array, now: Date): void {
    this.db
      .prepare(
        'INSERT OR REPLACE INTO metadata (name, role, version, bytes, added_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(name, role, version, Buffer.from(bytes), now.toISOString());
  }

  /** Delete metadata files of other roles than root that are not in `keep`; returns how many. */
  pruneMetadata(keep: ReadonlySet<string>): number {
    return this.tx('prune metadata', () => {
      const names = this.db
        .prepare<[], { name: string }>("SELECT name FROM metadata WHERE role != 'root'")
        .all();
      const del = this.db.prepare('DELETE FROM metadata WHERE name = ?');
      let n = 0;
      for (const { name } of names) if (!keep.has(name)) n += del.run(name).changes;
      return n;
    });
  }

  // ---- trusted metadata (TUF client state) ---------------------------------------------------

  trustedLoad(role: string): Buffer | undefined {
    return this.db.prepare<[string], { bytes: Buffer }>('SELECT bytes FROM trusted WHERE role = ?').get(role)
      ?.bytes;
  }

  trustedVersion(role: string): number | undefined {
    return this.db
      .prepare<[string], { version: number }>('SELECT version FROM trusted WHERE role = ?')
      .get(role)?.version;
  }

  trustedSave(role: string, version: number, bytes: Uint8Array): void {
    this.db
      .prepare('INSERT OR REPLACE INTO trusted (role, version, bytes) VALUES (?, ?, ?)')
      .run(role, version, Buffer.from(bytes));
  }

  trustedRemove(role: string): void {
    this.db.prepare('DELETE FROM trusted WHERE role = ?').run(role);
  }

  // ---- targets (manifests) -------------------------------------------------------------------

  hasTarget(name: string): boolean {
    return (
      this.db.prepare<[string], { n: number }>('SELECT 1 AS n FROM targets WHERE name = ?').get(name) !==
      undefined
    );
  }

  putTarget(t: NewTarget, now: Date): void {
    this.db
      .prepare(
        `INSERT OR IGNORE INTO targets (name, path, length, sha256, manifest_id, total_bytes, chunk_count, bytes, complete, added_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
      )
      .run(
        t.name,
        t.path,
        t.length,
        t.sha256,
        t.manifestId,
        t.totalBytes,
        t.chunkCount,
        t.bytes,
        now.toISOString(),
      );
  }

  /** The bytes of a stored manifest by served name (any generation the depot still keeps). */
  targetBytes(name: string): Buffer | undefined {
    return this.db.prepare<[string], { bytes: Buffer }>('SELECT bytes FROM targets WHERE name = ?').get(name)
      ?.bytes;
  }

  /**
   * The manifest stored last of the package whose target paths start with `prefix` (`{name}@`),
   * other than `except`: the base a manifest delta is asked against (depot/sync/manifests.ts).
   */
  latestTargetWithPrefix(prefix: string, except: string): { name: string; bytes: Buffer } | undefined {
    return this.db
      .prepare<[string, string, string], { name: string; bytes: Buffer }>(
        `SELECT name, bytes FROM targets WHERE substr(path, 1, length(?)) = ? AND name <> ?
          ORDER BY added_at DESC, rowid DESC LIMIT 1`,
      )
      .get(prefix, prefix, except);
  }

  slotTargets(slot: Slot): TargetRow[] {
    return this.db
      .prepare<
        [string],
        {
          name: string;
          path: string;
          length: number;
          manifest_id: string;
          total_bytes: number;
          chunk_count: number;
          complete: number;
        }
      >(
        `SELECT t.name, t.path, t.length, t.manifest_id, t.total_bytes, t.chunk_count, t.complete
           FROM generation_targets g JOIN targets t ON t.name = g.name WHERE g.slot = ? ORDER BY g.path`,
      )
      .all(slot)
      .map((r) => ({
        name: r.name,
        path: r.path,
        length: r.length,
        manifestId: r.manifest_id,
        totalBytes: r.total_bytes,
        chunkCount: r.chunk_count,
        complete: r.complete === 1,
      }));
  }

  /** Targets of the served or pending generation that still lack chunks (or were never checked). */
  incompleteTargets(): Array<{ name: string; bytes: Buffer }> {
    return this.db
      .prepare<[], { name: string; bytes: Buffer }>(
        'SELECT name, bytes FROM targets WHERE complete = 0 AND name IN (SELECT name FROM generation_targets)',
      )
      .all();
  }

  /** Manifest bytes of every target the served or the pending generation needs (GC's live set, scrub). */
  *liveTargets(
    slots: readonly Slot[] = ['served', 'pending'],
  ): IterableIterator<{ name: string; bytes: Buffer }> {
    const marks = slots.map(() => '?').join(', ');
    yield* this.db
      .prepare<string[], { name: string; bytes: Buffer }>(
        `SELECT name, bytes FROM targets WHERE name IN (SELECT name FROM generation_targets WHERE slot IN (${marks}))`,
      )
      .iterate(...slots);
  }

  markComplete(names: readonly string[]): void {
    this.tx('mark targets complete', () => {
      const st = this.db.prepare('UPDATE targets SET complete = 1 WHERE name = ?');
      for (const n of names) st.run(n);
    });
  }

  /** After a scrub quarantined chunks: every target is checked again by the next sync. */
  markAllIncomplete(): number {
    return this.db.prepare('UPDATE targets SET complete = 0 WHERE complete = 1').run().changes;
  }

  /** Forget manifests no generation slot refers to; returns how many. */
  pruneTargets(): number {
    return this.db
      .prepare('DELETE FROM targets WHERE name NOT IN (SELECT name FROM generation_targets)')
      .run().changes;
  }

  // ---- generations ---------------------------------------------------------------------------

  served(): ServedState | undefined {
    const r = this.db
      .prepare<[], { generation: number; timestamp: Buffer; ts_version: number; switched_at: string }>(
        'SELECT generation, timestamp, ts_version, switched_at FROM served WHERE id = 1',
      )
      .get();
    return r
      ? {
          generation: r.generation,
          timestamp: r.timestamp,
          timestampVersion: r.ts_version,
          switchedAt: r.switched_at,
        }
      : undefined;
  }

  pending(): { generation: number; startedAt: string } | undefined {
    const r = this.db
      .prepare<[], { generation: number; started_at: string }>(
        'SELECT generation, started_at FROM pending WHERE id = 1',
      )
      .get();
    return r ? { generation: r.generation, startedAt: r.started_at } : undefined;
  }

  /**
   * Record the generation being fetched and its target set (one transaction); its chunks become live for GC.
   */
  setPending(generation: number, entries: ReadonlyArray<{ path: string; name: string }>, now: Date): void {
    this.tx('record the pending generation', () => {
      this.db.prepare("DELETE FROM generation_targets WHERE slot = 'pending'").run();
      const ins = this.db.prepare(
        "INSERT INTO generation_targets (slot, path, name) VALUES ('pending', ?, ?)",
      );
      for (const e of entries) ins.run(e.path, e.name);
      const started =
        this.pending()?.generation === generation ? this.pending()!.startedAt : now.toISOString();
      this.db
        .prepare('INSERT OR REPLACE INTO pending (id, generation, started_at) VALUES (1, ?, ?)')
        .run(generation, started);
    });
  }

  clearPending(): void {
    this.tx('clear the pending generation', () => {
      this.db.prepare("DELETE FROM generation_targets WHERE slot = 'pending'").run();
      this.db.prepare('DELETE FROM pending WHERE id = 1').run();
    });
  }

  /**
   * THE switch: the pending generation becomes the served one in one transaction (its target set and
   * its timestamp together), so agents never see a timestamp whose content is not all here. Refuses
   * if any target of the pending generation is not complete.
   */
  switchServed(generation: number, timestamp: Uint8Array, timestampVersion: number, now: Date): void {
    this.tx('switch the served generation', () => {
      const p = this.pending();
      if (!p || p.generation !== generation) {
        throw new DepotsyncError(
          'internal',
          `switch to generation ${generation}: the pending generation is ${p?.generation ?? 'none'}`,
        );
      }
      const missing = this.db
        .prepare<[], { n: number }>(
          "SELECT COUNT(*) AS n FROM generation_targets g JOIN targets t ON t.name = g.name WHERE g.slot = 'pending' AND t.complete = 0",
        )
        .get()!.n;
      if (missing > 0)
        throw new DepotsyncError(
          'internal',
          `switch to generation ${generation}: ${missing} target(s) still lack chunks`,
        );
      this.db.prepare("DELETE FROM generation_targets WHERE slot = 'served'").run();
      this.db.prepare("UPDATE generation_targets SET slot = 'served' WHERE slot = 'pending'").run();
      this.db.prepare('DELETE FROM pending WHERE id = 1').run();
      this.db
        .prepare(
          'INSERT OR REPLACE INTO served (id, generation, timestamp, ts_version, switched_at) VALUES (1, ?, ?, ?, ?)',
        )
        .run(generation, Buffer.from(timestamp), timestampVersion, now.toISOString());
    });
  }

  /** A re-signed timestamp naming the generation already served (the master renews it daily). */
  updateServedTimestamp(generation: number, timestamp: Uint8Array, timestampVersion: number): void {
    this.tx('update the served timestamp', () => {
      const s = this.served();
      if (!s || s.generation !== generation)
        throw new DepotsyncError(
          'internal',
          `timestamp update: served generation is ${s?.generation ?? 'none'}, not ${generation}`,
        );
      this.db
        .prepare('UPDATE served SET timestamp = ?, ts_version = ? WHERE id = 1')
        .run(Buffer.from(timestamp), timestampVersion);
    });
  }

  // ---- revocation list -----------------------------------------------------------------------

  revocations(): { version: number; bytes: Buffer; fetchedAt: string } | undefined {
    const r = this.db
      .prepare<[], { version: number; bytes: Buffer; fetched_at: string }>(
        'SELECT version, bytes, fetched_at FROM revocations WHERE id = 1',
      )
      .get();
    return r ? { version: r.version, bytes: r.bytes, fetchedAt: r.fetched_at } : undefined;
  }

  /** The version of the kept list alone (polled each second while child depots listen). */
  revocationsVersion(): number | undefined {
    return this.db.prepare<[], number>('SELECT version FROM revocations WHERE id = 1').pluck().get();
  }

  /** Keep a verified list; never replaces a newer one (a sync and an event-driven refresh may race). */
  saveRevocations(version: number, bytes: Uint8Array, now: Date): void {
    this.db
      .prepare(
        `INSERT INTO revocations (id, version, bytes, fetched_at) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, bytes = excluded.bytes, fetched_at = excluded.fetched_at
         WHERE excluded.version >= revocations.version`,
      )
      .run(version, Buffer.from(bytes), now.toISOString());
  }

  // ---- runs and counters ---------------------------------------------------------------------

  startRun(pid: number, now: Date): number {
    return Number(
      this.db.prepare('INSERT INTO runs (pid, started_at) VALUES (?, ?)').run(pid, now.toISOString())
        .lastInsertRowid,
    );
  }

  finishRun(
    id: number,
    r: {
      outcome: 'ok' | 'noop' | 'failed';
      generation?: number;
      chunksFetched: number;
      bytesFetched: number;
      error?: string;
    },
    now: Date,
  ): void {
    this.db
      .prepare(
        'UPDATE runs SET finished_at = ?, outcome = ?, generation = ?, chunks_fetched = ?, bytes_fetched = ?, error = ? WHERE id = ?',
      )
      .run(
        now.toISOString(),
        r.outcome,
        r.generation ?? null,
        r.chunksFetched,
        r.bytesFetched,
        r.error ?? null,
        id,
      );
  }

  recentRuns(limit = 20): RunRow[] {
    return this.db
      .prepare<
        [number],
        {
          id: number;
          pid: number;
          started_at: string;
          finished_at: string | null;
          outcome: string;
          generation: number | null;
          chunks_fetched: number;
          bytes_fetched: number;
          error: string | null;
        }
      >('SELECT * FROM runs ORDER BY id DESC LIMIT ?')
      .all(limit)
      .map((r) => ({
        id: r.id,
        pid: r.pid,
        startedAt: r.started_at,
        finishedAt: r.finished_at,
        outcome: r.outcome,
        generation: r.generation,
        chunksFetched: r.chunks_fetched,
        bytesFetched: r.bytes_fetched,
        error: r.error,
      }));
  }

  getKv(key: string): string | undefined {
    return this.db.prepare<[string], { value: string }>('SELECT value FROM kv WHERE key = ?').get(key)?.value;
  }

  setKv(key: string, value: string): void {
    this.db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)').run(key, value);
  }

  /** The next status-report sequence number (strictly increasing, durable). */
  nextSequence(): number {
    return this.tx('status sequence', () => {
      const n = Number(this.getKv('statusSequence') ?? '0') + 1;
      this.setKv('statusSequence', String(n));
      // The counter's id, made with it: a rebuilt database starts a new counter the master accepts.
      if (!this.getKv('statusBoot')) this.setKv('statusBoot', randomBytes(16).toString('hex'));
      return n;
    });
  }

  /** The id of the status sequence counter (made by the first `nextSequence`). */
  statusBoot(): string | undefined {
    return this.getKv('statusBoot') ?? undefined;
  }
}
