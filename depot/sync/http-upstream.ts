import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { HttpClient } from '../../src/net/client.js';
import { downloadChunks } from '../../src/read/chunk-download.js';
import { ReadClient } from '../../src/read/client.js';
import { SYNC_HINT_HEADERS } from '../../src/serve/read-api.js';
import { SizedBufferPool } from '../../src/store/buffer-pool.js';
import { checkMetadataFileName, type MetadataSource } from '../../src/tuf/client.js';
import { fetchChunkDeltas, type DeltaFetchResult, type DeltaNeed } from './chunk-delta.js';
import { openChunkStream, ByteCounter, type ChunkNeed, type ChunkSinkDeps } from './chunks.js';
import { upstreamRefused, type Upstream } from './upstream.js';

/**
 * The network upstream: the master or a parent depot over mutual TLS (their read API, src/read/client.ts).
 * Metadata and manifests are capped while streaming; chunks come in batches (`POST /v1/chunks/batch`)
 * through the shared download engine (src/read/chunk-download.ts) into the store's checkpointed stream.
 */
export class HttpUpstream implements Upstream {
  readonly read: ReadClient;

  /** The server answering now (with several master URLs, the one the last request went to). */
  get origin(): string {
    return this.client.baseUrl.origin;
  }

  constructor(readonly client: HttpClient) {
    const origin = client.baseUrl.origin;
    this.read = new ReadClient(client, {
      name: origin,
      role: 'depot',
      refused: upstreamRefused(origin),
    });
  }

  private source: HttpMetadataSource | undefined;

  metadataSource(counter: ByteCounter): MetadataSource {
    this.source = new HttpMetadataSource(this.read, counter);
    return this.source;
  }

  revocationsUnchanged(sha256: string): boolean {
    return this.source?.hints?.revocationsSha256 === sha256;
  }

  revocationList(maxBytes: number): Promise<Buffer | undefined> {
    return this.read.revocations(maxBytes);
  }

  async target(name: string, maxBytes: number, what: string): Promise<Buffer> {
    return (await this.targetCounted(name, maxBytes, what)).bytes;
  }

  async targetCounted(
    name: string,
    maxBytes: number,
    what: string,
  ): Promise<{ bytes: Buffer; wireBytes: number }> {
    try {
      return await this.read.targetByNameCounted(name, maxBytes, what);
    } catch (e) {
      if (isDepotsyncError(e, 'not-found')) {
        throw new DepotsyncError(
          'not-found',
          `${what}: the signed catalog lists it but upstream ${this.origin} does not have it (404)`,
          {
            hint: 'the upstream is inconsistent (a half-published generation or a broken mirror); the served generation is unchanged; retry later',
            cause: e,
          },
        );
      }
      throw e;
    }
  }

  targetDelta(
    base: string,
    name: string,
    maxBytes: number,
    what: string,
  ): Promise<{ kind: 'delta' | 'full'; bytes: Buffer; wireBytes: number }> {
    return this.read.targetDelta(base, name, maxBytes, what);
  }

  /**
   * Batches `deps.concurrency` at a time, each retried up to `deps.attempts` times on the errors worth
   * it. One checkpointed stream for the whole download: the disk writes while batches arrive, with one
   * waited fdatasync per checkpoint instead of one per batch. What was written is committed (kept) even
   * when the download fails: the next run skips it.
   */
  async fetchChunks(
    needs: readonly ChunkNeed[],
    deps: ChunkSinkDeps,
  ): Promise<{ chunks: number; bytes: number }> {
    const total = { chunks: 0, bytes: 0 };
    const stream = openChunkStream(deps, total);
    const { counter, bandwidth } = deps;
    let failure: unknown;
    try {
      await downloadChunks({
        needs,
        sources: [this.read],
        concurrency: deps.concurrency,
        batchMaxBytes: deps.batchMaxBytes,
        batchMaxChunks: deps.batchMaxChunks,
        attempts: deps.attempts,
        retryDelayMs: deps.retryDelayMs,
        sleep: deps.sleep,
        retryable,
        deliverBytes: HANDOFF_BYTES,
        deliver: (group) => stream.add(group.map((g) => g.chunk)),
        onPiece: bandwidth
          ? (n) => {
              counter.add(n);
              return bandwidth.take(n);
            }
          : (n) => {
              counter.add(n);
              return undefined;
            },
        pool: new SizedBufferPool(64 * 1024, 1024 * 1024, 32 * 1024 * 1024),
        log: deps.log,
      });
    } catch (e) {
      failure = e;
    }
    try {
      await stream.end();
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) throw failure;
    return total;
  }

  fetchChunkDeltas(needs: readonly DeltaNeed[], deps: ChunkSinkDeps): Promise<DeltaFetchResult> {
    return fetchChunkDeltas(needs, { ...deps, upstream: this.read });
  }
}

/** Chunk bytes verified before they are handed to the store's stream (bounds memory per batch). */
const HANDOFF_BYTES = 2 * 1024 * 1024;

/** Errors worth another try from the same upstream: the network, a cut stream, a damaged or missing chunk. */
function retryable(e: unknown): boolean {
  return (
    isDepotsyncError(e) && ['network', 'timeout', 'truncated', 'hash-mismatch', 'not-found'].includes(e.code)
  );
}

/**
 * What the upstream's `timestamp.json` response said besides the file
 * (src/serve/read-api.ts SYNC_HINT_HEADERS).
 */
export interface UpstreamHints {
  rootVersion?: number;
  revocationsSha256?: string;
}

/**
 * Largest timestamp.json fetched ahead of the root walk (TUF's client default; the
 * updater re-checks its own cap).
 */
const TIMESTAMP_PROBE_MAX_BYTES = 16 * 1024;
const TIMESTAMP = 'timestamp.json';
const ROOT_FILE = /^(\d+)\.root\.json$/;

/**
 * TUF metadata from the upstream's read API (`GET /v1/metadata/{name}`): the master or a parent depot,
 * which serve the same files. Capped per request by the TUF client's per-role limit (HttpClient counts
 * while streaming); a 404 is 'not-found', which ends the client's root walk.
 *
 * One request when nothing changed: a TUF update starts with the root walk (is there a root N+1?),
 * then the timestamp. When the walk asks for the first root, this asks for the timestamp instead and
 * keeps it for the update's timestamp step; the upstream's hint headers say its newest root version,
 * so a root the upstream does not have is 'not-found' without a request, and the revocation list's
 * SHA-256 lets the engine skip re-fetching an unchanged list. Hints are never trusted: a lying upstream
 * can only make the depot skip a fetch, as withholding the file would; whatever is fetched is verified
 * exactly as before, and an upstream without the headers gets the plain requests.
 */
export class HttpMetadataSource implements MetadataSource {
  /** The timestamp fetched ahead of this update's root walk, for its timestamp step. */
  private prefetched: Buffer | undefined;
  /** Hints of the last timestamp response. */
  hints: UpstreamHints | undefined;
  /** The root version last asked for: a lower or equal one starts a new update's walk. */
  private walkAt = 0;

  constructor(
    private readonly read: ReadClient,
    /** Where received bytes are counted (the engine swaps in each run's counter). */
    public counter: ByteCounter = new ByteCounter(),
  ) {}

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    checkMetadataFileName(name);
    if (name === TIMESTAMP) {
      const ahead = this.prefetched;
      this.prefetched = undefined;
      if (ahead) return ahead;
      return this.timestamp(maxBytes);
    }
    const root = ROOT_FILE.exec(name);
    if (root && Number(root[1]) > 1) {
      const version = Number(root[1]);
      // The first root of a walk: fetch the timestamp now (a leftover of an update
      // that failed part way is replaced).
      if (!this.prefetched || version <= this.walkAt)
        this.prefetched = await this.timestamp(TIMESTAMP_PROBE_MAX_BYTES);
      this.walkAt = version;
      const newest = this.hints?.rootVersion;
      if (newest !== undefined && version > newest) {
        throw new DepotsyncError(
          'not-found',
          `metadata ${name}: the upstream's newest root is version ${newest}`,
        );
      }
    }
    const { bytes, wireBytes } = await this.read.fetchCounted(name, maxBytes);
    this.counter.add(wireBytes);
    return bytes;
  }

  private async timestamp(maxBytes: number): Promise<Buffer> {
    const { bytes, headers, wireBytes } = await this.read.metadataWithHeaders(TIMESTAMP, maxBytes);
    this.counter.add(wireBytes);
    const root = Number(headers[SYNC_HINT_HEADERS.rootVersion]);
    const list = headers[SYNC_HINT_HEADERS.revocations];
    this.hints = {
      ...(Number.isSafeInteger(root) && root >= 1 ? { rootVersion: root } : {}),
      ...(typeof list === 'string' && /^[0-9a-f]{64}$/.test(list) ? { revocationsSha256: list } : {}),
    };
    return bytes;
  }
}
