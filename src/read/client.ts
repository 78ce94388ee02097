import type { IncomingHttpHeaders } from 'node:http';
import { DepotsyncError, isDepotsyncError } from '../errors.js';
import type { HttpClient, StreamResponse } from '../net/client.js';
import { checkMetadataFileName, type MetadataSource } from '../tuf/client.js';
import {
  TARGET_DELTA_BASE_HEADER,
  TARGET_DELTA_CONTENT_TYPE,
  targetDeltaUrlPath,
} from '../wire/target-delta.js';
import { BATCH_CONTENT_TYPE, BATCH_CONTENT_TYPE_V2, encodeBatchRequest } from '../wire/chunk-batch.js';
import {
  DELTA_CONTENT_TYPE,
  CHOSEN_BASES,
  CHOSEN_BASES_HEADER,
  DELTA_RECORD_OVERHEAD,
  encodeDeltaRequest,
  type DeltaPair,
} from '../wire/chunk-delta.js';
import { acceptsBr, BR, brEncode, decodeBody, REQUEST_ENCODING_HEADER } from '../wire/json-encoding.js';
import { explainRefusal, type ReaderRole } from './refusal.js';

/** URL paths of a repository: depotsync's read API, or a plain TUF layout (the conformance suite). */
export interface RemoteLayout {
  metadata(name: string): string;
  /** A target file by its path and sha256 (consistent-snapshot naming). */
  target(path: string, sha256: string): string;
}

/**
 * URL path of a target by its served name `{sha256}.{path}`: percent-encoded except
 * what the read API allows as-is.
 */
export function targetUrlPath(name: string): string {
  return `/v1/targets/${encodeURIComponent(name).replace(/%40/g, '@').replace(/%2B/g, '+')}`;
}

/** The read API (docs: `/v1/metadata/{name}` and `/v1/targets/{sha256}.{path}`). */
export const READ_API_LAYOUT: RemoteLayout = {
  metadata: (name) => `/v1/metadata/${name}`,
  target: (path, sha256) => targetUrlPath(`${sha256}.${path}`),
};

export interface ReadClientOptions {
  /** Names the server in messages ("depot-1", or an origin). */
  name: string;
  role: ReaderRole;
  /** Opens the message of a refusal: "depot-1 (https://…) refused this agent". */
  refused: string;
  layout?: RemoteLayout;
}

/**
 * The client of the read API a master and every depot serve, for both readers (an agent, a depot
 * syncing from its upstream): TUF metadata, target files, the revocation list, chunk batches and chunk
 * deltas, each capped while streaming, and a refused certificate explained once (refusal.ts). Nothing
 * it returns is trusted: callers verify every byte. It is a TUF `MetadataSource`, so the same
 * verification code runs against any mirror.
 */
export class ReadClient implements MetadataSource {
  readonly name: string;
  readonly role: ReaderRole;
  private readonly refused: string;
  private readonly layout: RemoteLayout;

  constructor(
    readonly http: HttpClient,
    o: ReadClientOptions,
  ) {
    this.name = o.name;
    this.role = o.role;
    this.refused = o.refused;
    this.layout = o.layout ?? READ_API_LAYOUT;
  }

  /** The server decodes brotli request bodies (it said so on its timestamp answer). */
  private brRequests = false;
  /** The server reads `"chosen":true` in delta requests (it said so on its timestamp answer). */
  private chosenBases = false;

  /**
   * GET a JSON body, asking for brotli (src/wire/json-encoding.ts): decoded to at most `maxBytes`, the
   * cap the plain body has; `wireBytes` is what came over the wire. Unverified, as always.
   */
  private async getJson(
    urlPath: string,
    maxBytes: number,
    what: string,
  ): Promise<{ bytes: Buffer; headers: IncomingHttpHeaders; wireBytes: number }> {
    try {
      const res = await this.http.getStream(urlPath, { maxBytes, what, headers: { 'accept-encoding': BR } });
      const parts: Buffer[] = [];
      for await (const piece of res.body) parts.push(piece as Buffer);
      const wire = Buffer.concat(parts);
      if (acceptsBr(res.headers[REQUEST_ENCODING_HEADER])) this.brRequests = true;
      if (res.headers[CHOSEN_BASES_HEADER] === CHOSEN_BASES) this.chosenBases = true;
      const bytes = decodeBody(wire, res.headers['content-encoding'], maxBytes, what);
      return { bytes, headers: res.headers, wireBytes: wire.length };
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** TUF metadata by its consistent-snapshot file name, at most `maxBytes`; a 404 is 'not-found'. */
  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    return (await this.fetchCounted(name, maxBytes)).bytes;
  }

  /** `fetch`, with the bytes it took on the wire (compressed where the server compressed it). */
  async fetchCounted(name: string, maxBytes: number): Promise<{ bytes: Buffer; wireBytes: number }> {
    checkMetadataFileName(name);
    return this.getJson(this.layout.metadata(name), maxBytes, `metadata ${name} from ${this.name}`);
  }

  /** TUF metadata with the response's headers (the read API's hints ride on `timestamp.json`). */
  async metadataWithHeaders(
    name: string,
    maxBytes: number,
  ): Promise<{ bytes: Buffer; headers: IncomingHttpHeaders; wireBytes: number }> {
    checkMetadataFileName(name);
    return this.getJson(this.layout.metadata(name), maxBytes, `metadata ${name} from ${this.name}`);
  }

  /** The target file's bytes, capped at the length the signed metadata gives (endless data). */
  target(path: string, sha256: string, length: number): Promise<Buffer> {
    return this.targetAt(this.layout.target(path, sha256), length, `target ${path} from ${this.name}`);
  }

  /** A target by its served name `{sha256}.{path}`, at most `maxBytes`. */
  targetByName(name: string, maxBytes: number, what: string): Promise<Buffer> {
    return this.targetAt(targetUrlPath(name), maxBytes, what);
  }

  /** `targetByName`, with the bytes it took on the wire (compressed where the server compressed it). */
  async targetByNameCounted(
    name: string,
    maxBytes: number,
    what: string,
  ): Promise<{ bytes: Buffer; wireBytes: number }> {
    const { bytes, wireBytes } = await this.getJson(targetUrlPath(name), maxBytes, what);
    return { bytes, wireBytes };
  }

  /**
   * `GET /v1/targets-delta/{base}/{name}`: target `name` as a zstd frame against target `base`, which
   * the caller holds, or the target whole when the server found no smaller delta; at most `maxBytes`
   * (the target's signed length: a delta that is not smaller is worthless). Unverified: the caller
   * decodes with src/read/target-delta.ts, which checks the result against the signed catalog.
   */
  async targetDelta(
    base: string,
    name: string,
    maxBytes: number,
    what: string,
  ): Promise<{ kind: 'delta' | 'full'; bytes: Buffer; wireBytes: number }> {
    try {
      const res = await this.getJson(targetDeltaUrlPath(base, name), maxBytes, what);
      const { bytes, wireBytes } = res;
      const type = String(res.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim();
      if (type === 'application/json') return { kind: 'full', bytes, wireBytes };
      if (type === TARGET_DELTA_CONTENT_TYPE && res.headers[TARGET_DELTA_BASE_HEADER] === base)
        return { kind: 'delta', bytes, wireBytes };
      throw new DepotsyncError(
        'corrupt',
        `${what}: an answer of type ${JSON.stringify(type)} made against ${JSON.stringify(res.headers[TARGET_DELTA_BASE_HEADER] ?? null)}, not a delta against ${base}`,
      );
    } catch (e) {
      throw this.explain(e);
    }
  }

  private async targetAt(urlPath: string, maxBytes: number, what: string): Promise<Buffer> {
    return (await this.getJson(urlPath, maxBytes, what)).bytes;
  }

  /** The CA-signed revocation list (at most maxBytes), or undefined when the server has none. */
  async revocations(maxBytes: number): Promise<Buffer | undefined> {
    try {
      return (await this.getJson('/v1/revocations.json', maxBytes, 'revocation list')).bytes;
    } catch (e) {
      if (isDepotsyncError(e, 'not-found')) return undefined;
      throw this.explain(e);
    }
  }

  /** `POST /v1/chunks/batch` for `ids` (src/wire/chunk-batch.ts); the body is capped at `maxBytes`. */
  batch(
    ids: readonly string[],
    maxBytes: number,
    signal: AbortSignal,
    opts: { zstd: boolean } = { zstd: true },
  ): Promise<StreamResponse> {
    return this.explained(
      this.http.request('POST', '/v1/chunks/batch', {
        headers: {
          'content-type': 'application/json',
          accept: opts.zstd ? `${BATCH_CONTENT_TYPE_V2}, ${BATCH_CONTENT_TYPE}` : BATCH_CONTENT_TYPE,
        },
        body: encodeBatchRequest(ids, opts.zstd),
        maxBytes,
        what: `chunk batch of ${ids.length} from ${this.name}`,
        signal,
      }),
    );
  }

  /**
   * `POST /v1/chunks/delta` for `pairs` (src/wire/chunk-delta.ts). `targetLengths` bound the answer:
   * no answer is longer than every chunk sent whole with the largest record header (endless data).
   * `zstd`: accept zstd delta records; `stored`: accept whole chunks as zstd frames (kind 4);
   * `chosen`: accept deltas against bases the server chose (kind 5), asked only of a server that
   * announced it reads the flag.
   */
  delta(
    pairs: readonly DeltaPair[],
    targetLengths: readonly number[],
    signal: AbortSignal,
    zstd = false,
    stored = false,
    chosen = false,
  ): Promise<StreamResponse> {
    const json = encodeDeltaRequest(pairs, zstd, stored, chosen && this.chosenBases);
    // Compressed only for a server that said it reads brotli bodies; its ids repeat from pair to pair.
    const br = this.brRequests ? brEncode(json) : undefined;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: DELTA_CONTENT_TYPE,
    };
    if (br && br.length < json.length) headers['content-encoding'] = BR;
    return this.explained(
      this.http.request('POST', '/v1/chunks/delta', {
        headers,
        body: headers['content-encoding'] ? br! : json,
        maxBytes: targetLengths.reduce((s, n) => s + DELTA_RECORD_OVERHEAD + n, 0),
        what: `chunk delta batch of ${pairs.length} from ${this.name}`,
        signal,
      }),
    );
  }

  /** Round trip of the public `GET /healthz`, in milliseconds. */
  async probe(signal?: AbortSignal): Promise<number> {
    const t0 = performance.now();
    await this.http.getBytes('/healthz', {
      maxBytes: 64 * 1024,
      what: `health probe of ${this.name}`,
      ...(signal ? { signal } : {}),
    });
    return performance.now() - t0;
  }

  close(): void {
    this.http.close();
  }

  /** This server refusing this machine's certificate (401/403) as one clear error; others unchanged. */
  explain(e: unknown): unknown {
    return explainRefusal(e, this.role, this.refused);
  }

  private async explained<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      throw this.explain(e);
    }
  }
}
