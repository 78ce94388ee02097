import { DepotsyncError } from '../../src/errors.js';
import type { HttpClient } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
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

/**
 * TUF metadata from the upstream's read API (`GET /v1/metadata/{name}`): the master or a parent depot,
 * which serve the same files. Capped per request by the TUF client's per-role limit (HttpClient counts
 * while streaming); a 404 is 'not-found', which ends the client's root walk.
 */
export class HttpMetadataSource implements MetadataSource {
  constructor(
    private readonly client: HttpClient,
    /** Where received bytes are counted (the engine swaps in each run's counter). */
    public counter: ByteCounter = new ByteCounter(),
  ) {}

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    checkMetadataFileName(name);
    try {
      const bytes = await this.client.getBytes(`/v1/metadata/${name}`, { maxBytes, what: `metadata ${name}` });
      this.counter.add(bytes.length);
      return bytes;
    } catch (e) {
      throw explainUpstream(e, this.client.baseUrl.origin);
    }
  }
}

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
