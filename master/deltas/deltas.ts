import { join } from 'node:path';
import { pairChunkBases, packageOf, type PairingVersion } from '../../src/content/delta-pairs.js';
import { decodeManifest, type Manifest } from '../../src/content/manifest.js';
import { chosenEntry, DeltaCache } from '../../src/deltas/cache.js';
import { ContentBases, oldFileOf } from '../../src/deltas/content-bases.js';
import { DeltaPool } from '../../src/deltas/pool.js';
import { CachedZstdDeltas, ON_REQUEST_LEVEL } from '../../src/deltas/source.js';
import { liveVersions, versionHistory, type PackageVersion } from '../db/catalog.js';
import { getManifest } from '../db/manifests.js';
import type { MasterContext } from '../context.js';

/**
 * Version-to-version zstd deltas on the master (docs/architecture.md, "Version deltas"). After a
 * publish, in the background, each chunk of the new version that an earlier version lacks is encoded
 * against the window of the earlier version's file where its content came from (src/deltas/
 * content-bases.ts), kept under the pair a depot holding that version computes from the manifests (the
 * window around the same relative position, src/content/delta-pairs.ts), at a high
 * level, for the previous `deltaVersions` versions of the package, and kept in `{master}/deltas/`
 * (src/deltas/cache.ts). Until an entry exists, a delta request computes one at a fast level on its own
 * small pool, or answers with the byte delta or the whole chunk. Both pools are worker threads at a
 * low priority and bounded in number, so serving continues at full speed meanwhile.
 */

export function masterDeltaDir(ctx: MasterContext): string {
  return join(ctx.layout.sharedDir, 'deltas');
}

export function masterDeltaCache(ctx: MasterContext): DeltaCache {
  return new DeltaCache({ dir: masterDeltaDir(ctx), maxBytes: ctx.config.deltaCacheBytes, log: ctx.log });
}

/** The manifest's bytes are read here (the catalog is asynchronous); decoded on demand by `load`. */
async function pairingVersion(ctx: MasterContext, v: PackageVersion): Promise<PairingVersion> {
  let m: Manifest | undefined | null = null;
  const b = await getManifest(ctx.db, v.manifestId);
  return {
    name: `${v.manifestSha256}.${v.targetPath}`,
    path: v.targetPath,
    load: () => {
      if (m !== null) return m;
      try {
        m = b ? decodeManifest(b, { what: `manifest ${v.targetPath}` }) : undefined;
      } catch {
        m = undefined;
      }
      return m;
    },
  };
}

export interface BuildResult {
  /** Version pairs (new, old) looked at. */
  versionPairs: number;
  /** Chunk deltas computed now; of those, kept because they pay off; their bytes and the chunks' bytes. */
  computed: number;
  kept: number;
  deltaBytes: number;
  chunkBytes: number;
  /** Pairs whose delta was already cached. */
  cached: number;
  /** Of the kept: made against bases chosen by content instead of the pair's window. */
  chosen: number;
  /** Pairs still without a delta (with `dryRun`: not computed). */
  missing: number;
}

/**
 * Compute the missing deltas of every live version against its previous `versions` versions (publish
 * order, live or not while their manifest is kept). `done` remembers version pairs already complete.
 */
export async function buildDeltas(
  ctx: MasterContext,
  cache: DeltaCache,
  pool: DeltaPool | undefined,
  opts: { versions: number; level: number; done?: Set<string>; signal?: AbortSignal },
): Promise<BuildResult> {
  const out: BuildResult = {
    versionPairs: 0,
    computed: 0,
    kept: 0,
    chosen: 0,
    deltaBytes: 0,
    chunkBytes: 0,
    cached: 0,
    missing: 0,
  };
  if (opts.versions <= 0) return out;
  const byPackage = new Map<string, PackageVersion[]>();
  for (const v of await liveVersions(ctx.db)) byPackage.set(v.name, [...(byPackage.get(v.name) ?? []), v]);
  for (const [name, live] of byPackage) {
    const history = await versionHistory(ctx.db, name);
    for (const v of live) {
      const i = history.findIndex((h) => h.id === v.id);
      const olds = history.slice(Math.max(0, i - opts.versions), Math.max(0, i));
      for (const o of olds) {
        if (opts.signal?.aborted) return out;
        const key = `${v.id}:${o.id}`;
        if (opts.done?.has(key)) continue;
        out.versionPairs++;
        const ok = await buildPair(
          ctx,
          cache,
          pool,
          await pairingVersion(ctx, v),
          await pairingVersion(ctx, o),
          opts,
          out,
        );
        if (ok) opts.done?.add(key);
      }
    }
  }
  return out;
}

async function buildPair(
  ctx: MasterContext,
  cache: DeltaCache,
  pool: DeltaPool | undefined,
  now: PairingVersion,
  old: PairingVersion,
  opts: { level: number; signal?: AbortSignal },
  out: BuildResult,
): Promise<boolean> {
  const nm = now.load();
  const om = old.load();
  if (!nm || !om || packageOf(now.path) !== packageOf(old.path)) return true;
  const had = new Set(om.files.flatMap((f) => f.chunks.map((c) => c.id)));
  const wanted = new Set(nm.files.flatMap((f) => f.chunks.filter((c) => !had.has(c.id)).map((c) => c.id)));
  const pairs = pairChunkBases([now], [old], wanted);
  // Bases chosen by content where the code moved (src/deltas/content-bases.ts); the old version's
  // chunks are this master's own, read unverified (a bad one only makes a worse delta: the receiver
  // hashes what it rebuilds).
  const chooser = new ContentBases(oldFileOf(nm, om, wanted), (id) =>
    ctx.store.get(id).catch(() => undefined),
  );
  let complete = true;
  // A few at a time: the pool's workers are the limit, this only keeps them fed.
  const inflight = new Set<Promise<void>>();
  for (const [target, b] of pairs) {
    if (opts.signal?.aborted) return false;
    if (await cache.has(target, b.bases)) {
      out.cached++;
      continue;
    }
    if (!pool) {
      out.missing++;
      complete = false;
      continue;
    }
    const t = await ctx.store.get(target, { verify: true }).catch(() => undefined);
    if (!t) continue; // collected meanwhile: nothing to serve anyway
    const picked = await chooser.choose(target, t, b.bases).catch(() => undefined);
    const chosen = picked && picked.join(',') !== b.bases.join(',') ? picked : undefined;
    const job = (async () => {
      const ids = chosen ?? b.bases;
      const parts = await Promise.all(ids.map((id) => ctx.store.get(id).catch(() => undefined)));
      if (parts.some((p) => !p)) return;
      const base = Buffer.concat(parts as Uint8Array[]);
      const r = await pool.run(base, t, opts.level).catch((e: unknown) => {
        ctx.log.warn({ err: (e as Error).message, target }, 'delta computation failed');
        return undefined;
      });
      if (!r) {
        out.missing++;
        complete = false;
        return;
      }
      out.computed++;
      out.chunkBytes += t.length;
      // Kept only when it pays off against the chunk compressed alone; an empty entry says it does not.
      const named = chosen ? 2 + 32 * chosen.length : 0;
      const pays = r.frame.length + named < r.alone && r.frame.length + named < t.length;
      if (pays) {
        out.kept++;
        out.deltaBytes += r.frame.length + named;
        if (chosen) out.chosen++;
      }
      const entry = !pays ? Buffer.alloc(0) : chosen ? chosenEntry(chosen, r.frame) : r.frame;
      await cache.put(target, b.bases, entry);
    })().finally(() => inflight.delete(job));
    inflight.add(job);
    if (inflight.size >= pool.opts.workers * 2) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return complete;
}

export interface MasterDeltas {
  /** The read API's source of zstd deltas: the cache, else computed on request. */
  source: CachedZstdDeltas;
  cache: DeltaCache;
  /** Run the background computation now (resolves when this round is done). */
  runNow(): Promise<BuildResult | undefined>;
  close(): Promise<void>;
}

/**
 * Start the master's deltas: the on-request pool, and the background computation, at start and every
 * `intervalMs` (a publish is picked up within that time, whichever process published it; version
 * pairs already complete are remembered, so a round with nothing new costs a catalog query).
 */
export function startMasterDeltas(
  ctx: MasterContext,
  // `active`: several masters share one delta cache; only the signer computes in the background.
  opts: { intervalMs?: number; active?: () => boolean } = {},
): MasterDeltas {
  const log = ctx.log.child({ component: 'master.deltas' });
  const cache = masterDeltaCache(ctx);
  const requests = new DeltaPool({ workers: 1, maxQueued: 32, nice: 5 });
  const background = new DeltaPool({
    workers: ctx.config.deltaWorkers,
    maxQueued: 1024,
    nice: ctx.config.deltaNice,
  });
  const done = new Set<string>();
  const abort = new AbortController();
  let running: Promise<BuildResult | undefined> | undefined;
  // The newest generation whose deltas are all there: a round at the same generation has nothing to do.
  let completeAt = -1;
  const newest = async () =>
    (await ctx.db.sql.get<{ g: number | null }>('SELECT MAX(generation) AS g FROM generations'))?.g ?? 0;
  const round = async (): Promise<BuildResult | undefined> => {
    try {
      if (opts.active && !opts.active()) return undefined;
      const generation = await newest();
      if (generation === completeAt) return undefined;
      const t0 = Date.now();
      const r = await buildDeltas(ctx, cache, background, {
        versions: ctx.config.deltaVersions,
        level: ctx.config.deltaLevel,
        done,
        signal: abort.signal,
      });
      if (r.computed > 0) log.info({ ...r, ms: Date.now() - t0 }, 'version deltas computed');
      if (r.missing === 0 && !abort.signal.aborted) completeAt = generation;
      return r;
    } catch (e) {
      log.error({ err: (e as Error).message }, 'version delta computation failed; will retry');
      return undefined;
    }
  };
  const runNow = () => {
    // Cleared in a later microtask, so also after a round that returns at once.
    running ??= round().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => void runNow(), opts.intervalMs ?? 5_000);
  timer.unref();
  if (ctx.config.deltaVersions > 0) void runNow();
  return {
    source: new CachedZstdDeltas(cache, requests, ON_REQUEST_LEVEL),
    cache,
    runNow,
    async close() {
      clearInterval(timer);
      abort.abort();
      await Promise.all([requests.close(), background.close()]);
      await running;
    },
  };
}
