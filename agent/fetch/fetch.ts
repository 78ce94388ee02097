import { resolve } from 'node:path';
import { manifestId } from '../../src/content/manifest.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { blake3Implementation } from '../../src/hash/blake3.js';
import { silentLogger, type Logger } from '../../src/log.js';
import type { ClientLimits, TrustedStore } from '../../src/tuf/client.js';
import { DEFAULT_FETCH_SETTINGS, type FetchSettings } from '../config.js';
import type { AgentStateStore } from '../state.js';
import { readCached, trimCache } from './cache.js';
import { FileChunkCache, type ChunkCache } from './file-cache.js';
import { resolvePackage, type ResolvedPackage } from './catalog.js';
import { ManifestShelf } from './manifests.js';
import { OldVersion } from './old-version.js';
import { pairChunkBases } from '../../src/content/delta-pairs.js';
import { loadZstdDecoder, type ZstdDecoder } from '../../src/compress/zstd-decoder.js';
import { downloadDeltas } from '../../src/read/delta-download.js';
import type { TargetBase } from '../../src/read/target-delta.js';
import { downloadChunks } from '../../src/read/chunk-download.js';
import { fatalRefusal } from '../../src/read/refusal.js';
import { acrossEquivalentServers } from '../../src/net/url-picker.js';
import { checkChunk } from '../../src/read/verify.js';
import { SizedBufferPool } from '../../src/store/buffer-pool.js';
import { noSourceLeft, planChunks, type ChunkNeed } from './chunks.js';
import type { RemoteSource, Source } from './remote.js';
import {
  checkOutput,
  checkOutputParent,
  openFileSink,
  salvageStaging,
  Staging,
  type OpenSink,
} from './staging.js';

/** Verified chunks are handed to the staging writer in groups of about this many bytes. */
const DELIVER_BYTES = 4 * 1024 * 1024;

/** A staging folder without an owner file, untouched this long, belongs to a fetch that was killed. */
const STALE_STAGING_MS = 60 * 60_000;

export interface FetchPackageOptions {
  name: string;
  version?: string | undefined;
  out: string;
  /** In order of preference (sources.ts `rankSources`): depots, then the master. */
  sources: readonly Source[];
  /** Build the HTTP(S) client of a source (mutual TLS with the agent's certificate). */
  connect: (source: Source) => RemoteSource;
  /**
   * The local chunk cache folder (resume): the chunks an interrupted or killed fetch had verified and
   * staged are kept there, and the next fetch takes them from it; undefined = no cache.
   */
  cacheDir?: string | undefined;
  /**
   * Where the manifest of each package fetched is kept (manifests.ts), so the next version's manifest
   * comes as a delta against it; undefined = none kept, manifests are fetched whole.
   */
  manifestDir?: string | undefined;
  /** The trusted TUF metadata (rollback and freeze baseline), persisted in the agent directory. */
  store: TrustedStore;
  /** Needed only while the store holds no root yet. */
  fingerprint?: string | undefined;
  state: AgentStateStore;
  now?: () => Date;
  limits?: Partial<ClientLimits> | undefined;
  settings?: Partial<FetchSettings> | undefined;
  logger?: Logger;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** The zstd decoder deltas are applied with; default `loadZstdDecoder()` (native, else WebAssembly). */
  zstd?: ZstdDecoder | undefined;
  /** Test seam: how staged files are written (a failing writer simulates a full disk). */
  openSink?: OpenSink;
}

export interface FetchPackageResult {
  /** The manifest id (BLAKE3 of its canonical bytes). */
  id: string;
  name: string;
  version: string;
  bytes: number;
  /** The sources that delivered metadata or chunks, the metadata source first. */
  source: string[];
  generation: number;
  path: string;
  kind: 'file' | 'folder';
  chunks: number;
  chunksFromCache: number;
  /** Chunks copied from the previous version's output (unchanged since it was fetched). */
  chunksFromOld: number;
  /** Chunks rebuilt from deltas against the previous version (or sent whole in the delta answer). */
  chunksFromDeltas: number;
  /** Plain bytes of the chunks downloaded (not from the cache). */
  chunkPlainBytes: number;
  /** Bytes of the chunk records received for them (compressed where the source stores them so). */
  chunkWireBytes: number;
}

/**
 * The verified fetch (docs/architecture.md). Nothing unverified is ever at `out`: files are assembled in a
 * staging folder beside it from chunks verified as they arrive, checked again as whole files, and
 * moved into place in one rename. On any failure the staging folder is removed and `out` is untouched;
 * verified chunks stay in the cache, so the next attempt downloads only what is missing.
 */
export async function fetchPackage(o: FetchPackageOptions): Promise<FetchPackageResult> {
  const log = (o.logger ?? silentLogger()).child({ component: 'agent.fetch' });
  const now = o.now ?? (() => new Date());
  const settings = { ...DEFAULT_FETCH_SETTINGS, ...o.settings };
  const label = `${o.name}${o.version ? `@${o.version}` : ''}`;
  if (o.sources.length === 0)
    throw new DepotsyncError('bad-input', `fetch ${label}: no sources configured`, {
      hint: 'give depots with --depot, or the master URL',
    });
  await checkOutputParent(o.out);

  const remotes = o.sources.map((s) => o.connect(s));
  const failedHere = new Set<string>();
  const penalize = (r: RemoteSource, e: unknown) => {
    failedHere.add(r.name);
    o.state.penalize(r.source.url, now().getTime() + settings.penaltyMs, (e as Error)?.message ?? String(e));
  };
  let cache: ChunkCache | undefined;
  let staging: Staging | undefined;
  let old: OldVersion | undefined;
  /** Chunks this fetch verified and wrote into the staging folder (salvaged into the cache on failure). */
  const staged = new Set<string>();
  const t0 = performance.now();
  const steps: Record<string, number> = {};
  let mark = t0;
  const step = (name: string) => {
    const t = performance.now();
    steps[name] = Math.round(t - mark);
    mark = t;
  };
  try {
    // The chunk cache holds only what failed or killed fetches had staged: a successful fetch writes
    // the package once (into its staging folder), not a second time into a cache. Not durable: every
    // cached chunk is re-hashed when read (readCached), so a power loss costs a re-download, never a
    // wrong byte.
    if (o.cacheDir && settings.cacheMaxBytes > 0)
      cache = await FileChunkCache.open(o.cacheDir, { logger: log, durable: false });
    // Leftovers of a fetch to the same output that was killed mid-way (the output itself was never
    // touched): their verified chunks go into the cache, the folders away.
    await salvageStaging(o.out, cache, STALE_STAGING_MS, Date.now(), log);

    // 1. Catalog and manifest from the first source that passes every check.
    const shelf = o.manifestDir ? new ManifestShelf(o.manifestDir, log) : undefined;
    const kept = shelf?.base(o.name);
    const { pkg, index } = await resolveFromSources(o, remotes, now, penalize, log, kept);
    const metaSource = remotes[index] as RemoteSource;
    const m = pkg.manifest;
    await checkOutput(o.out, m);
    step('metadataMs');

    // 2. Chunks: the cache first (resume), then the sources not yet found wanting, in order.
    staging = await Staging.create(o.out, m, pkg.manifestBytes, o.openSink ?? openFileSink);
    const stage = staging;
    const needs = planChunks(m);
    let done = 0;
    const progress = (n: number) => {
      done += n;
      o.onProgress?.(done, m.totalBytes);
    };
    const writePlaces = async (chunks: ReadonlyArray<{ need: ChunkNeed; data: Uint8Array }>) => {
      await stage.write(
        chunks.flatMap(({ need, data }) =>
          need.places.map((p) => ({ fileIndex: p.fileIndex, offset: p.offset, data })),
        ),
      );
      progress(chunks.reduce((s, { need }) => s + need.length * need.places.length, 0));
    };
    o.onProgress?.(0, m.totalBytes);
    const fromCache = cache
      ? await readCached(
          cache,
          needs,
          (need, data) => checkChunk(need, data, 'the local cache'),
          (need, data) => writePlaces([{ need, data }]),
          log,
        )
      : new Set<string>();
    const sources = remotes.slice(index);
    let left = needs.filter((n) => !fromCache.has(n.id));

    // The previous version, read back from its output: what is unchanged is copied, what changed
    // comes as deltas against the old chunks it replaces (old-version.ts).
    const keptOut = kept && shelf?.output(kept.name);
    old = kept && keptOut ? OldVersion.from(kept, keptOut, log) : undefined;
    let fromOld = 0;
    let fromDeltas = 0;
    let deltaWire = 0;
    let deltaPlain = 0;
    if (old) {
      const prev = old;
      const rest: ChunkNeed[] = [];
      for (const need of left) {
        const data = prev.has(need.id) ? await prev.chunk(need.id) : undefined;
        if (!data) {
          rest.push(need);
          continue;
        }
        await writePlaces([{ need, data }]);
        staged.add(need.id);
        fromOld++;
      }
      left = rest;
      const served = `${pkg.target.hashes.sha256}.${pkg.path}`;
      const pairs = pairChunkBases(
        [{ name: served, path: pkg.path, load: () => m }],
        [prev.version],
        new Set(left.map((n) => n.id)),
      );
      const wants = [];
      for (const n of left) {
        const b = pairs.get(n.id);
        if (b && (await prev.present(b.bases))) wants.push({ ...n, ...b });
      }
      const decoder = wants.length
        ? await (o.zstd ? Promise.resolve(o.zstd) : loadZstdDecoder()).catch((e: unknown) => {
            log.warn({ err: (e as Error).message }, 'no zstd decoder; changed chunks are fetched whole');
            return undefined;
          })
        : undefined;
      if (decoder) {
        const got = new Set<string>();
        const r = await downloadDeltas({
          needs: wants,
          source: metaSource,
          readBase: (ids) => prev.base(ids),
          applyDelta: (base, frame, opts) => decoder.applyDelta(base, frame, opts),
          batchMaxBytes: settings.batchMaxBytes,
          batchMaxChunks: settings.batchMaxChunks,
          requestTimeoutMs: settings.requestTimeoutMs,
          fatal: (e) => fatalRefusal(e) !== undefined,
          deliver: async (need, chunk) => {
            await writePlaces([{ need, data: chunk.data }]);
            staged.add(need.id);
            got.add(need.id);
            deltaPlain += need.length;
          },
          log,
        });
        fromDeltas = got.size;
        deltaWire = r.wireBytes;
        left = left.filter((n) => !got.has(n.id));
        log.info(
          {
            source: metaSource.name,
            pairs: wants.length,
            rebuilt: r.rebuilt,
            whole: r.whole,
            refused: r.refused,
            wireBytes: r.wireBytes,
            zstd: decoder.implementation,
          },
          'chunks fetched as deltas against the previous version',
        );
      }
      step('deltaMs');
    }

    const wireBySource = new Map<string, number>();
    // Fail over at once: a source that errs, stalls or forges is penalised and the next one asked.
    const bySource = await downloadChunks(
      {
        needs: left,
        sources,
        concurrency: settings.concurrency,
        batchMaxBytes: settings.batchMaxBytes,
        batchMaxChunks: settings.batchMaxChunks,
        requestTimeoutMs: settings.requestTimeoutMs,
        attempts: 1,
        fatal: (e) => fatalRefusal(e) !== undefined,
        exhausted: (left, failed, lacking) => noSourceLeft(left, sources, failed, lacking),
        deliverBytes: DELIVER_BYTES,
        deliver: async (group) => {
          await writePlaces(group.map((g) => ({ need: g.need, data: g.chunk.data })));
          for (const g of group) staged.add(g.need.id);
        },
        onSourceFailed: penalize,
        // Recycled receive buffers: fresh memory is faulted in page by page, which is
        // dear (src/store/buffer-pool.ts).
        pool: new SizedBufferPool(64 * 1024, 1024 * 1024, 128 * 1024 * 1024),
        log,
      },
      wireBySource,
    );
    const sum = (m: Map<string, number>) => [...m.values()].reduce((s, n) => s + n, 0);
    // Closed before the commit: Windows does not rename over a file that is open.
    await old?.close();
    old = undefined;

    step('chunksMs');
    // 3. Whole files again, then one rename into place.
    await stage.verify(m);
    step('verifyMs');
    await stage.commit(o.out, m);
    step('commitMs');
    staging = undefined;

    const used = [metaSource.name, ...[...bySource.keys()].filter((n) => n !== metaSource.name)];
    // A source that served its part and never failed in this fetch is in good standing again.
    for (const r of remotes)
      if (used.includes(r.name) && !failedHere.has(r.name)) o.state.recordSuccess(r.source.url);
    if (cache)
      await trimCache(
        cache,
        settings.cacheMaxBytes,
        m.totalBytes <= settings.cacheMaxBytes ? new Set(needs.map((n) => n.id)) : new Set(),
        log,
      );
    shelf?.keep(`${pkg.target.hashes.sha256}.${pkg.path}`, pkg.manifestBytes, o.out);
    log.info(
      {
        package: `${m.name}@${m.version}`,
        bytes: m.totalBytes,
        sources: used,
        fromCache: fromCache.size,
        fromOld,
        fromDeltas,
        deltaWireBytes: deltaWire,
        blake3: blake3Implementation(),
        durationMs: Math.round(performance.now() - t0),
        ...steps,
      },
      'package fetched and verified',
    );
    return {
      id: manifestId(pkg.manifestBytes),
      name: m.name,
      version: m.version,
      bytes: m.totalBytes,
      source: used,
      generation: pkg.generation,
      path: resolve(o.out),
      kind: stage.kind,
      chunks: needs.length,
      chunksFromCache: fromCache.size,
      chunksFromOld: fromOld,
      chunksFromDeltas: fromDeltas,
      chunkPlainBytes: sum(bySource) + deltaPlain,
      chunkWireBytes: sum(wireBySource) + deltaWire,
    };
  } finally {
    await old?.close().catch(() => undefined);
    if (staging) {
      // A failed fetch: what it verified and staged goes into the cache (resume), then the folder away.
      if (cache) {
        const kept = await staging.salvage(cache, staged).catch((e: unknown) => {
          log.warn(
            { err: (e as Error).message },
            'chunk cache write failed; a retry downloads everything again',
          );
          return 0;
        });
        if (kept > 0) log.info({ chunks: kept }, 'verified chunks kept in the cache for the next attempt');
      }
      await staging.discard();
    }
    await cache?.close();
    for (const r of remotes) r.close();
  }
}

/**
 * Try the sources in order until one yields a fully verified manifest. A source that fails a check
 * (forged or stale metadata, a rollback, a wrong file) or errors is penalised and the next is tried;
 * a refused certificate (revoked, blocked) ends the fetch at once: no other source will differ.
 */
async function resolveFromSources(
  o: FetchPackageOptions,
  remotes: readonly RemoteSource[],
  now: () => Date,
  penalize: (r: RemoteSource, e: unknown) => void,
  log: Logger,
  manifestBase: TargetBase | undefined,
): Promise<{ pkg: ResolvedPackage; index: number }> {
  const errors: Array<{ source: string; error: unknown }> = [];
  for (const [index, remote] of remotes.entries()) {
    try {
      const want = o.version ? { name: o.name, version: o.version } : { name: o.name };
      // A source with several URLs (the masters): one whose catalog fails verification leaves it for the next.
      const pkg = await acrossEquivalentServers(
        remote.http.picker,
        () =>
          resolvePackage({
            remote,
            store: o.store,
            fingerprint: o.fingerprint,
            now,
            limits: o.limits,
            state: o.state,
            want,
            log,
            manifestBase,
          }),
        (refused, next, e) =>
          log.warn(
            { source: remote.name, refused, next, err: e.message },
            'master URL refused; trying the next',
          ),
      );
      return { pkg, index };
    } catch (e) {
      if (fatalRefusal(e)) throw e;
      if (isDepotsyncError(e, 'internal')) throw e;
      errors.push({ source: remote.name, error: e });
      // A package missing from a verified catalog is not the source's fault (it may lag behind).
      if (!isDepotsyncError(e, 'not-found')) penalize(remote, e);
      log.warn({ source: remote.name, err: (e as Error).message }, 'source failed; trying the next');
    }
  }
  throw allFailed(`fetch ${o.name}${o.version ? `@${o.version}` : ''}`, errors);
}

/** One error for "every source failed", naming each source and its reason; the code is the first's. */
function allFailed(what: string, errors: Array<{ source: string; error: unknown }>): DepotsyncError {
  const first = errors[0]?.error;
  const code = isDepotsyncError(first) ? first.code : 'network';
  const reasons = errors.map((x) => `${x.source}: ${(x.error as Error)?.message ?? String(x.error)}`);
  const hint =
    isDepotsyncError(first) && first.hint
      ? first.hint
      : 'check the depots and the master (depotsync agent depots)';
  return new DepotsyncError(code, `${what}: no source passed verification (${reasons.join('; ')})`, {
    hint,
    cause: first,
  });
}
