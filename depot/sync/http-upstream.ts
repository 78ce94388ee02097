import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { HttpClient } from '../../src/net/client.js';
import type { MetadataSource } from '../../src/tuf/client.js';
import { fetchChunkDeltas, type DeltaFetchResult, type DeltaNeed } from './chunk-delta.js';
import { fetchChunks, type ChunkNeed, type ChunkSinkDeps } from './chunks.js';
import { targetUrlPath } from './manifests.js';
import { explainUpstream, HttpMetadataSource, type ByteCounter, type Upstream } from './upstream.js';

/**
 * The network upstream: the master or a parent depot over mutual TLS (their read API, DESIGN.md §7).
 * Metadata and manifests are capped while streaming; chunks come in batches (`POST /v1/chunks/batch`).
 */
export class HttpUpstream implements Upstream {
  readonly origin: string;

  constructor(readonly client: HttpClient) {
    this.origin = client.baseUrl.origin;
  }

  private source: HttpMetadataSource | undefined;

  metadataSource(counter: ByteCounter): MetadataSource {
    this.source = new HttpMetadataSource(this.client, counter);
    return this.source;
  }

  revocationsUnchanged(sha256: string): boolean {
    return this.source?.hints?.revocationsSha256 === sha256;
  }

  async revocationList(maxBytes: number): Promise<Buffer | undefined> {
    try {
      return await this.client.getBytes('/v1/revocations.json', { maxBytes, what: 'revocation list' });
    } catch (e) {
      if (isDepotsyncError(e, 'not-found')) return undefined;
      throw explainUpstream(e, this.origin);
    }
  }

  async target(name: string, maxBytes: number, what: string): Promise<Buffer> {
    try {
      return await this.client.getBytes(targetUrlPath(name), { maxBytes, what });
    } catch (e) {
      if (e instanceof DepotsyncError && e.code === 'not-found') {
        throw new DepotsyncError('not-found', `${what}: the signed catalog lists it but upstream ${this.origin} does not have it (404)`, {
          hint: 'the upstream is inconsistent (a half-published generation or a broken mirror); the served generation is unchanged; retry later',
          cause: e,
        });
      }
      throw explainUpstream(e, this.origin);
    }
  }

  fetchChunks(needs: readonly ChunkNeed[], deps: ChunkSinkDeps): Promise<{ chunks: number; bytes: number }> {
    return fetchChunks(needs, { ...deps, upstream: this.client });
  }

  fetchChunkDeltas(needs: readonly DeltaNeed[], deps: ChunkSinkDeps): Promise<DeltaFetchResult> {
    return fetchChunkDeltas(needs, { ...deps, upstream: this.client });
  }
}
