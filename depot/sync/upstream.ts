import { DepotsyncError } from '../../src/errors.js';
import type { HttpClient } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
import { SYNC_HINT_HEADERS } from '../../src/serve/read-api.js';
import { checkMetadataFileName, type MetadataSource } from '../../src/tuf/client.js';
import type { DeltaFetchResult, DeltaNeed } from './chunk-delta.js';
import type { ChunkNeed, ChunkSinkDeps } from './chunks.js';

/**
 * Where a sync reads from: the network (the master or a parent depot, http-upstream.ts) or an offline
 * bundle file (depot/offline). The engine runs the same verification on whatever an upstream delivers:
 * the TUF client over `metadataSource`, the revocation list's CA signature, each manifest's length and
 * SHA-256 against the signed catalog, each chunk's BLAKE3 against its id before it is stored.
 */
export interface Upstream {
  /** Names the source in messages and logs (an https origin, or `bundle FILE`). */
  readonly origin: string;
  /** TUF metadata by consistent-snapshot name; received bytes are added to `counter`. */
  metadataSource(counter: ByteCounter): MetadataSource;
  /** The signed revocation list (at most maxBytes), or undefined when the source has none. */
  revocationList(maxBytes: number): Promise<Buffer | undefined>;
  /** Optional: true when the upstream said (a hint, this sync) that its revocation list has this SHA-256. */
  revocationsUnchanged?(sha256: string): boolean;
  /** A manifest by its served name `{sha256}.{path}`, at most maxBytes; 'not-found' when absent. */
  target(name: string, maxBytes: number, what: string): Promise<Buffer>;
  /**
   * Deliver the chunks in `needs` into `deps.store`: each hashed and compared with its id before it is
   * stored (`verifiedChunk`), what arrived intact kept even when the delivery fails part way.
   */
  fetchChunks(needs: readonly ChunkNeed[], deps: ChunkSinkDeps): Promise<{ chunks: number; bytes: number }>;
  /**
   * Optional (the network upstream has it, a bundle does not): deliver chunks as deltas against bases
   * the store holds (chunk-delta.ts), each rebuilt chunk verified like `fetchChunks` does. Chunks it
   * could not deliver stay missing for `fetchChunks`; it throws only when storing fails or the
   * upstream refuses this depot.
   */
  fetchChunkDeltas?(needs: readonly DeltaNeed[], deps: ChunkSinkDeps): Promise<DeltaFetchResult>;
}

/** Counts the bytes a sync receives (metadata, manifests, chunks, revocation list). */
export class ByteCounter {
  bytes = 0;
  add(n: number): void {
    this.bytes += n;
  }
}

/** What the upstream's `timestamp.json` response said besides the file (src/serve/read-api.ts SYNC_HINT_HEADERS). */
export interface UpstreamHints {
  rootVersion?: number;
  revocationsSha256?: string;
}

/** Largest timestamp.json fetched ahead of the root walk (TUF's client default; the updater re-checks its own cap). */
const TIMESTAMP_PROBE_MAX_BYTES = 16 * 1024;

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
    private readonly client: HttpClient,
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
      // The first root of a walk: fetch the timestamp now (a leftover of an update that failed part way is replaced).
      if (!this.prefetched || version <= this.walkAt) this.prefetched = await this.timestamp(TIMESTAMP_PROBE_MAX_BYTES);
      this.walkAt = version;
      const newest = this.hints?.rootVersion;
      if (newest !== undefined && version > newest) {
        throw new DepotsyncError('not-found', `metadata ${name}: the upstream's newest root is version ${newest}`);
      }
    }
    return this.get(name, maxBytes);
  }

  private async timestamp(maxBytes: number): Promise<Buffer> {
    try {
      const res = await this.client.getStream(`/v1/metadata/${TIMESTAMP}`, { maxBytes, what: `metadata ${TIMESTAMP}` });
      const parts: Buffer[] = [];
      for await (const piece of res.body) parts.push(piece as Buffer);
      const bytes = Buffer.concat(parts);
      this.counter.add(bytes.length);
      const root = Number(res.headers[SYNC_HINT_HEADERS.rootVersion]);
      const list = res.headers[SYNC_HINT_HEADERS.revocations];
      this.hints = {
        ...(Number.isSafeInteger(root) && root >= 1 ? { rootVersion: root } : {}),
        ...(typeof list === 'string' && /^[0-9a-f]{64}$/.test(list) ? { revocationsSha256: list } : {}),
      };
      return bytes;
    } catch (e) {
      throw explainUpstream(e, this.client.baseUrl.origin);
    }
  }

  private async get(name: string, maxBytes: number): Promise<Buffer> {
    try {
      const bytes = await this.client.getBytes(`/v1/metadata/${name}`, { maxBytes, what: `metadata ${name}` });
      this.counter.add(bytes.length);
      return bytes;
    } catch (e) {
      throw explainUpstream(e, this.client.baseUrl.origin);
    }
  }
}

const TIMESTAMP = 'timestamp.json';
const ROOT_FILE = /^(\d+)\.root\.json$/;

/**
 * Turn the upstream refusing this depot (401/403 from its mutual-TLS gate) into one clear message: a
 * revoked or blocked depot must not look like a network problem to its operator.
 */
export function explainUpstream(e: unknown, origin: string): unknown {
  if (!(e instanceof HttpError) || (e.status !== 401 && e.status !== 403)) return e;
  const why = e.serverCode ?? (e.status === 401 ? 'unauthorized' : 'forbidden');
  const hint =
    why === 'revoked'
      ? "this depot's certificate was revoked by the master operator; it cannot sync until it is enrolled again (depotsync depot init)"
      : why === 'expired'
        ? "this depot's certificate expired before it renewed itself (renewal starts at two thirds of its lifetime, during `depot serve`); enroll it again (depotsync depot init)"
        : 'ask the master operator to approve or unblock this depot';
  return new DepotsyncError(e.status === 401 ? 'unauthorized' : 'forbidden', `sync refused by upstream ${origin}: ${why} (${e.message})`, { hint, cause: e });
}
