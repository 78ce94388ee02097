import { explainRefusal } from '../../src/read/refusal.js';
import type { MetadataSource } from '../../src/tuf/client.js';
import type { DeltaFetchResult, DeltaNeed } from './chunk-delta.js';
import type { ByteCounter, ChunkNeed, ChunkSinkDeps } from './chunks.js';

export { ByteCounter } from './chunks.js';

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
  /** Optional: `target` with the bytes it took on the wire (the network upstream may get it compressed). */
  targetCounted?(name: string, maxBytes: number, what: string): Promise<{ bytes: Buffer; wireBytes: number }>;
  /**
   * Optional (the network upstream has it, a bundle does not): manifest `name` as a delta against
   * manifest `base` the depot holds (`GET /v1/targets-delta`), or whole when the upstream found no
   * smaller delta; at most maxBytes, unverified (src/read/target-delta.ts checks it).
   */
  targetDelta?(
    base: string,
    name: string,
    maxBytes: number,
    what: string,
  ): Promise<{ kind: 'delta' | 'full'; bytes: Buffer }>;
  /**
   * Deliver the chunks in `needs` into `deps.store`: each hashed and compared with its id before it is
   * stored (src/read/verify.ts), what arrived intact kept even when the delivery fails part way.
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

/**
 * Turn the upstream refusing this depot (401/403 from its mutual-TLS gate) into one clear message: a
 * revoked or blocked depot must not look like a network problem to its operator.
 */
export function explainUpstream(e: unknown, origin: string): unknown {
  return explainRefusal(e, 'depot', upstreamRefused(origin));
}

/** How a refusal by the upstream at `origin` opens its message. */
export function upstreamRefused(origin: string): string {
  return `sync refused by upstream ${origin}`;
}
