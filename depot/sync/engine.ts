import type { DeltaCache } from '../../src/deltas/cache.js';
import { DepotsyncError } from '../../src/errors.js';
import { acrossEquivalentServers } from '../../src/net/url-picker.js';
import { fromSqliteError } from '../../src/db/errors.js';
import type { Logger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import type { RevocationList } from '../../src/wire/revocations.js';
import { TufClient, type ClientLimits } from '../../src/tuf/client.js';
import type { SyncConfig } from '../config.js';
import type { DepotDb } from '../db/depot-db.js';
import { SyncLock } from '../db/sync-lock.js';
import { DbTrustedStore } from '../db/trusted-store.js';
import { recordSync } from '../../src/metrics/depot.js';
import type { TokenBucket } from './bandwidth.js';
import { pairBases } from './chunk-delta.js';
import { planMissing, type ChunkSinkDeps, type SyncStore } from './chunks.js';
import { catalogTargets, fetchManifests } from './manifests.js';
import { HttpUpstream } from './http-upstream.js';
import { syncRevocations } from './revocations.js';
import { rememberMasterUrls, signedMasterUrls } from './masters.js';
import { buildStatusReport, freeDiskBytes, KV, sendStatusReport, upstreamIdentity } from './status-report.js';
import { ByteCounter, type Upstream } from './upstream.js';

export interface SyncResult {
  /** The generation served after this sync. */
  generation: number;
  chunksFetched: number;
  /** Every byte received: metadata, manifests, chunks, revocation list (as on the wire: compressed). */
  bytesFetched: number;
  /** Bytes of chunk transfers on the wire (batches and deltas, compressed where sent so). */
  chunkWireBytes: number;
  /** Plain bytes of the chunks stored by this sync. */
  chunkPlainBytes: number;
  /** The served generation changed. */
  switched: boolean;
  /** Bytes received per step (metadata, revocations, manifests, chunks). */
  bytesByStep: Record<string, number>;
  durationMs: number;
}

export interface SyncEngineDeps {
  db: DepotDb;
  store: SyncStore;
  /** The master or a parent depot (same read API), or an offline bundle (depot/offline). */
  upstream: HttpClient | Upstream;
  /** Where status reports go (the master); none when undefined. */
  master?: HttpClient | undefined;
  /** The master's CA certificate: verifies the revocation list. */
  caPem: string;
  /** Hex SHA-256 of 1.root.json (the trusted root is normally in the database already). */
  fingerprint: string;
  config: SyncConfig;
  logger: Logger;
  bandwidth?: TokenBucket | undefined;
  /** Where zstd chunk deltas received are kept to be served again (chunk-delta.ts). */
  deltaCache?: DeltaCache;
  now?: () => Date;
  /**
   * Reference time for the expiry checks of metadata and of the revocation list (default: `now`). An
   * offline bundle is judged at its signed export time, while its signed validity window is open.
   */
  verifyAt?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** Folder whose file system's free space the status report gives. */
  dataDir?: string;
  /** Cross-process single flight; `false` when the caller already holds the lock. */
  lock?: SyncLock | false;
  tufLimits?: Partial<ClientLimits>;
  onRevocations?: (list: RevocationList) => void;
  onStored?: (chunks: number, bytes: number) => void;
  /** Called after every successful switch of the served generation. */
  onSwitched?: (generation: number) => void;
  /** Called when the verified catalog's depot directory lists other master URLs than before. */
  onMasterUrls?: (urls: string[]) => void;
}

/**
 * One depot sync (docs/architecture.md), each step logged with its duration and bytes:
 *  1. metadata     the TUF client workflow against the upstream: root walk, timestamp, snapshot, the bins
 *                  whose versions changed; signatures, thresholds, expiry, rollback (src/tuf/client);
 *  2. revocations  the CA-signed revocation list, verified and kept;
 *  3. manifests    the targets of the new generation the depot lacks, verified by length and SHA-256;
 *  4. chunks       the chunks those manifests name that the store lacks, batched, concurrent, each
 *                  hashed as it arrives; first as deltas against the chunks they replace in the served
 *                  version of the same package ('deltas', chunk-delta.ts), then whole ('chunks');
 *  5. switch       once every chunk is present: one SQLite transaction makes the new generation (its
 *                  timestamp and its target set) the served one;
 *  6. report       status to the master.
 * Interrupted anywhere, the next run resumes: verified metadata, manifests and chunks are kept as they
 * arrive, and the served generation only ever changes in step 5.
 */
export class SyncEngine {
  private inflight: Promise<SyncResult> | undefined;
  private busy: Promise<unknown> | undefined;
  private client: TufClient | undefined;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly verifyAt: () => Date;
  private readonly lock: SyncLock | false;
  private readonly upstream: Upstream;
  private readonly counterRef = { counter: new ByteCounter() };
  private trustedStore: DbTrustedStore;

  constructor(private readonly d: SyncEngineDeps) {
    this.log = d.logger.child({ component: 'depot.sync' });
    this.now = d.now ?? (() => new Date());
    this.verifyAt = d.verifyAt ?? this.now;
    this.upstream = d.upstream instanceof HttpClient ? new HttpUpstream(d.upstream) : d.upstream;
    this.trustedStore = new DbTrustedStore(d.db, this.now);
    this.lock = d.lock ?? new SyncLock(d.db, { now: this.now });
  }

  /** Run a sync, or join the one already running in this process (single flight). */
  sync(): Promise<SyncResult> {
    if (!this.inflight) {
      this.inflight = this.exclusive('depot sync', () => this.acrossMasters()).finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  /**
   * Fetch, verify and keep the upstream's revocation list now, outside a sync and without waiting for
   * one (an event announced a newer list: a revoked machine must be refused within seconds). Verified
   * exactly as in a sync's revocations step; the database never takes an older list than it holds.
   */
  async refreshRevocations(): Promise<RevocationList | undefined> {
    const out = await syncRevocations({
      db: this.d.db,
      upstream: this.upstream,
      caPem: this.d.caPem,
      counter: new ByteCounter(),
      now: this.verifyAt,
      log: this.log,
      force: true,
    });
    if (out.list) this.d.onRevocations?.(out.list);
    return out.list;
  }

  get running(): boolean {
    return this.inflight !== undefined;
  }

  /**
   * Run `fn` while no sync runs, in this process or another (the database lock): garbage collection
   * must not delete chunks a sync is about to need.
   */
  async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    while (this.busy) await this.busy.catch(() => undefined);
    const p = (async () => {
      if (this.lock) this.lock.acquire(what);
      let value: T;
      try {
        value = await fn();
      } catch (e) {
        // Releasing can fail for the same reason the work did (a full disk): the work's error is the
        // one to report. The row left behind names this process, so the next run takes it over.
        try {
          if (this.lock) this.lock.release();
        } catch (releaseErr) {
          this.log.warn({ err: (releaseErr as Error).message }, `${what}: could not release the sync lock`);
        }
        throw e;
      }
      try {
        if (this.lock) this.lock.release();
      } catch (e) {
        throw fromSqliteError(e, `${what}: release the sync lock in ${this.d.db.path}`);
      }
      return value;
    })();
    this.busy = p;
    try {
      return await p;
    } finally {
      if (this.busy === p) this.busy = undefined;
    }
  }

  /**
   * With several master URLs: a master whose catalog fails verification (a stale one replaying an older
   * generation, one that reuses a generation number, expired or badly signed metadata) is left for the
   * next URL within this sync. The trusted state is never lowered: the refused run changed nothing.
   */
  private async acrossMasters(): Promise<SyncResult> {
    const picker = this.upstream instanceof HttpUpstream ? this.upstream.client.picker : undefined;
    return acrossEquivalentServers(
      picker,
      () => this.locked(),
      (refused, next, e) =>
        this.log.warn(
          { refused, next, err: e.message },
          'the catalog of this master URL failed verification; syncing from the next one',
        ),
    );
  }

  private async locked(): Promise<SyncResult> {
    const { db } = this.d;
    const t0 = performance.now();
    const counter = new ByteCounter();
    const runId = db.startRun(process.pid, this.now());
    const totals = { chunks: 0, bytes: 0 };
    const origin = this.upstream.origin;
    const bytesByStep: Record<string, number> = {};
    const step = async <T>(
      name: string,
      fn: () => Promise<T>,
      fields: (out: T) => Record<string, unknown> = () => ({}),
    ): Promise<T> => {
      const t = performance.now();
      const before = counter.bytes;
      const out = await fn();
      bytesByStep[name] = counter.bytes - before;
      this.log.info(
        {
          step: name,
          durationMs: Math.round(performance.now() - t),
          bytes: bytesByStep[name],
          ...fields(out),
        },
        `sync ${name}`,
      );
      return out;
    };
    try {
      const client = await this.tufClient(counter);
      const r = await step(
        'metadata',
        () => client.refresh({ bins: 'stale' }).finally(() => this.trustedStore.flush()),
        (o) => ({
          generation: o.generation,
          changed: o.changed,
          bins: o.fetchedBins.length,
          roots: o.rootsFetched,
        }),
      );
      const masters = signedMasterUrls(client, this.log);
      if (rememberMasterUrls(db, masters)) {
        this.log.info({ masterUrls: masters }, 'the signed depot directory lists these master URLs');
        this.d.onMasterUrls?.(masters);
      }
      await step(
        'revocations',
        async () => {
          const out = await syncRevocations({
            db,
            upstream: this.upstream,
            caPem: this.d.caPem,
            counter,
            now: this.verifyAt,
            log: this.log,
          });
          if (out.list) this.d.onRevocations?.(out.list);
          return out;
        },
        (o) => ({ version: o.list?.version, changed: o.changed }),
      );

      const ts = client.trusted.timestamp!;
      const tsVersion = ts.md.signed.version;
      const generation = r.generation;
      const served = db.served();
      let switched = false;

      if (served?.generation === generation) {
        // The served generation is current: at most a re-signed timestamp, and repairs after a scrub.
        if (served.timestampVersion !== tsVersion) db.updateServedTimestamp(generation, ts.bytes, tsVersion);
        if (db.pending()) db.clearPending();
        await this.fetchMissing(step, counter, totals);
      } else {
        db.setKv(KV.targetGeneration, String(generation));
        const targets = catalogTargets(client);
        await step(
          'manifests',
          () =>
            fetchManifests(targets, {
              db,
              upstream: this.upstream,
              counter,
              concurrency: this.d.config.manifestConcurrency,
              now: this.now,
              log: this.log,
            }),
          (o) => ({
            targets: targets.length,
            fetched: o.fetched,
            viaDelta: o.viaDelta,
            plainBytes: o.plainBytes,
          }),
        );
        db.setPending(generation, targets, this.now());
        await this.fetchMissing(step, counter, totals);
        await step(
          'switch',
          async () => db.switchServed(generation, ts.bytes, tsVersion, this.now()),
          () => ({ generation, from: served?.generation ?? null }),
        );
        switched = true;
      }

      const now = this.now();
      const result: SyncResult = {
        generation,
        chunksFetched: totals.chunks,
        bytesFetched: counter.bytes,
        chunkWireBytes: (bytesByStep.chunks ?? 0) + (bytesByStep.deltas ?? 0),
        chunkPlainBytes: totals.bytes,
        switched,
        bytesByStep,
        durationMs: Math.round(performance.now() - t0),
      };
      // One commit (one fsync) for the bookkeeping: a no-op sync should cost little more than its requests.
      db.tx('record the sync', () => {
        db.setKv(KV.targetGeneration, String(generation));
        db.setKv(KV.lastSuccess, now.toISOString());
        db.setKv(KV.lastError, '');
        db.setKv(KV.bytesRemaining, '0');
        db.finishRun(
          runId,
          {
            outcome: switched || totals.chunks > 0 ? 'ok' : 'noop',
            generation,
            chunksFetched: totals.chunks,
            bytesFetched: counter.bytes,
          },
          now,
        );
      });
      recordSync(
        switched || totals.chunks > 0 ? 'ok' : 'noop',
        result.durationMs,
        totals.chunks,
        counter.bytes,
        totals.bytes,
      );
      this.log.info(
        { ...result, upstream: origin },
        switched ? 'sync done: generation switched' : 'sync done',
      );
      if (switched) this.d.onSwitched?.(generation);
      await this.report(totals, counter, switched || totals.chunks > 0);
      return result;
    } catch (e) {
      this.client = undefined; // reload the trusted state from the database next time
      const servedNow = db.served()?.generation;
      const err =
        e instanceof DepotsyncError
          ? new DepotsyncError(e.code, `sync from ${this.upstream.origin} failed: ${e.message}`, {
              hint: `${e.hint ? `${e.hint}; ` : ''}the depot keeps serving generation ${servedNow ?? '(none yet)'}`,
              cause: e,
            })
          : e;
      const message = (err as Error)?.message ?? String(err);
      try {
        db.setKv(KV.lastError, message);
        db.finishRun(
          runId,
          { outcome: 'failed', chunksFetched: totals.chunks, bytesFetched: counter.bytes, error: message },
          this.now(),
        );
      } catch (dbErr) {
        this.log.error({ err: (dbErr as Error).message }, 'could not record the failed sync');
      }
      recordSync('failed', performance.now() - t0, totals.chunks, counter.bytes, totals.bytes);
      this.log.error({ err: message, upstream: origin, servedGeneration: servedNow }, 'sync failed');
      await this.report(totals, counter, true).catch(() => undefined);
      throw err;
    }
  }

  /** Chunks the served or pending generation still lacks: plan, fetch, and check that none is left. */
  private async fetchMissing(
    step: <T>(name: string, fn: () => Promise<T>, fields?: (o: T) => Record<string, unknown>) => Promise<T>,
    counter: ByteCounter,
    totals: { chunks: number; bytes: number },
  ): Promise<void> {
    const { db, store, config } = this.d;
    const plan = planMissing(db, store);
    if (plan.needs.length === 0) return;
    db.setKv(KV.bytesRemaining, String(plan.bytes));
    const deps: ChunkSinkDeps = {
      store,
      counter,
      bandwidth: this.d.bandwidth,
      concurrency: config.concurrency,
      batchMaxBytes: config.batchMaxBytes,
      batchMaxChunks: config.batchMaxChunks,
      checkpointBytes: config.checkpointBytes,
      attempts: config.attempts,
      retryDelayMs: config.retryDelayMs,
      sleep: this.d.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
      log: this.log,
      onStored: (chunks, bytes) => {
        totals.chunks += chunks;
        totals.bytes += bytes;
        this.d.onStored?.(chunks, bytes);
      },
    };
    // Chunks that replace a chunk of the served version of the same package come as deltas against
    // it (chunk-delta.ts); the rest, and whatever a delta could not deliver, come whole.
    let needs = plan.needs;
    // The cache rides along in deps (chunk-delta.ts ChunkDeltaDeps.deltaCache) to the upstream's delta fetch.
    const withCache = { ...deps, deltaCache: this.d.deltaCache };
    const deltaDeps: ChunkSinkDeps = withCache;
    const pairs = this.upstream.fetchChunkDeltas && store.get ? pairBases(db, store, needs) : [];
    if (pairs.length > 0) {
      await step(
        'deltas',
        () => this.upstream.fetchChunkDeltas!(pairs, deltaDeps),
        (o) => ({
          paired: pairs.length,
          chunks: o.chunks,
          chunkBytes: o.bytes,
          rebuilt: o.rebuilt,
          zstd: o.zstd ?? 0,
          whole: o.whole,
          stored: o.stored ?? 0,
          refused: o.refused,
          unsupported: o.unsupported,
        }),
      );
      const still = new Set(store.missing(needs.map((n) => n.id)));
      needs = needs.filter((n) => still.has(n.id));
    }
    if (needs.length > 0) {
      await step(
        'chunks',
        () => this.upstream.fetchChunks(needs, deps),
        (o) => ({
          chunks: o.chunks,
          chunkBytes: o.bytes,
          planned: needs.length,
          plannedBytes: needs.reduce((s, n) => s + n.length, 0),
        }),
      );
    }
    const left = planMissing(db, store);
    if (left.needs.length > 0) {
      throw new DepotsyncError(
        'internal',
        `after the download, ${left.needs.length} chunk(s) are still missing`,
        { hint: 'sync again; it fetches only what is missing' },
      );
    }
  }

  /**
   * The TUF client, kept between syncs while the database agrees with it (another process may have synced).
   */
  private async tufClient(counter: ByteCounter): Promise<TufClient> {
    this.counterRef.counter = counter;
    const { db } = this.d;
    const c = this.client;
    if (
      c &&
      db.trustedVersion('root') === c.rootVersion &&
      db.trustedVersion('timestamp') === c.trusted.timestamp?.md.signed.version
    )
      return c;
    this.trustedStore = new DbTrustedStore(db, this.now);
    this.client = await TufClient.open({
      source: this.metadataSource(),
      store: this.trustedStore,
      fingerprint: this.d.fingerprint,
      now: this.verifyAt,
      logger: this.d.logger,
      ...(this.d.tufLimits ? { limits: this.d.tufLimits } : {}),
    });
    return this.client;
  }

  /** The upstream's metadata source, counting into the current run's counter (the client outlives runs). */
  private metadataSource() {
    const ref = this.counterRef;
    const counting = new (class extends ByteCounter {
      override add(n: number): void {
        super.add(n);
        ref.counter.add(n);
      }
    })();
    return this.upstream.metadataSource(counting);
  }

  /** Report when something changed, else at most every `statusEveryMs` (a heartbeat, not one per no-op). */
  private async report(totals: { chunks: number }, counter: ByteCounter, changed: boolean): Promise<void> {
    if (!this.d.master) return;
    const now = this.now().getTime();
    const last = Date.parse(this.d.db.getKv(KV.lastReport) ?? '') || 0;
    if (!changed && now - last < this.d.config.statusEveryMs) return;
    const report = buildStatusReport(this.d.db, {
      chunksFetched: totals.chunks,
      bytesFetched: counter.bytes,
      freeDiskBytes: this.d.dataDir ? await freeDiskBytes(this.d.dataDir) : 0,
      now: this.now(),
      upstream: await upstreamIdentity(this.d.db, this.d.upstream, this.d.master, this.log),
    });
    if (await sendStatusReport(this.d.master, report, this.log))
      this.d.db.setKv(KV.lastReport, report.reportedAt);
  }
}
