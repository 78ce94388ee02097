import { DepotsyncError } from '../../src/errors.js';
import type { HttpClient, StreamResponse } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
import { checkMetadataFileName, type MetadataSource } from '../../src/tuf/client.js';
import { BATCH_CONTENT_TYPE } from '../../src/wire/chunk-batch.js';

/** A place the agent fetches from: a depot, or finally the master. */
export interface Source {
  name: string;
  url: string;
  kind: 'depot' | 'master';
  site?: string;
  /** Listed by the signed depot directory: the server must present the machine certificate of depot `name`. */
  fromDirectory?: boolean;
}

/** URL paths of a repository: depotsync's read API, or a plain TUF layout (the conformance suite). */
export interface RemoteLayout {
  metadata(name: string): string;
  /** A target file by its path and sha256 (consistent-snapshot naming). */
  target(path: string, sha256: string): string;
}

const encodePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/** DESIGN.md §7: `/v1/metadata/{name}` and `/v1/targets/{sha256}.{path}`. */
export const READ_API_LAYOUT: RemoteLayout = {
  metadata: (name) => `/v1/metadata/${name}`,
  target: (path, sha256) => `/v1/targets/${sha256}.${encodePath(path)}`,
};

/** Server codes that mean "this agent is not allowed anywhere": no other depot will answer differently. */
const FATAL_REFUSALS = new Set(['revoked', 'blocked', 'expired']);

/** The refusal code when a source refused this agent's certificate for good (revoked, blocked, expired). */
export function fatalRefusal(e: unknown): string | undefined {
  const http = e instanceof HttpError ? e : (e as { cause?: unknown })?.cause instanceof HttpError ? ((e as { cause: HttpError }).cause) : undefined;
  if (!http || (http.status !== 401 && http.status !== 403)) return undefined;
  return http.serverCode && FATAL_REFUSALS.has(http.serverCode) ? http.serverCode : undefined;
}

/**
 * One source over HTTP(S). It is a TUF `MetadataSource` (so the same verification code runs against
 * any mirror) and fetches target files and chunk batches. Nothing it returns is trusted: callers
 * verify every byte.
 */
export class RemoteSource implements MetadataSource {
  constructor(
    readonly source: Source,
    readonly http: HttpClient,
    private readonly layout: RemoteLayout = READ_API_LAYOUT,
  ) {}

  get name(): string {
    return this.source.name;
  }

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    checkMetadataFileName(name);
    try {
      return await this.http.getBytes(this.layout.metadata(name), { maxBytes, what: `metadata ${name} from ${this.source.name}` });
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** The target file's bytes, capped at the length the signed metadata gives (endless data). */
  async target(path: string, sha256: string, length: number): Promise<Buffer> {
    try {
      return await this.http.getBytes(this.layout.target(path, sha256), { maxBytes: length, what: `target ${path} from ${this.source.name}` });
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** `POST /v1/chunks/batch` for `ids`; the body is capped at the sum of the records' declared sizes. */
  async batch(ids: readonly string[], maxBytes: number, signal: AbortSignal): Promise<StreamResponse> {
    try {
      return await this.http.request('POST', '/v1/chunks/batch', {
        headers: { 'content-type': 'application/json', accept: BATCH_CONTENT_TYPE },
        body: Buffer.from(JSON.stringify({ ids })),
        maxBytes,
        what: `chunk batch of ${ids.length} from ${this.source.name}`,
        signal,
      });
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** Round trip of the public `GET /healthz`, in milliseconds. */
  async probe(signal?: AbortSignal): Promise<number> {
    const t0 = performance.now();
    await this.http.getBytes('/healthz', { maxBytes: 64 * 1024, what: `health probe of ${this.source.name}`, ...(signal ? { signal } : {}) });
    return performance.now() - t0;
  }

  close(): void {
    this.http.close();
  }

  /**
   * A source refusing this agent's certificate (401/403 from its mutual-TLS gate) becomes one clear
   * message: a revoked agent must not look like a network problem.
   */
  explain(e: unknown): unknown {
    if (!(e instanceof HttpError) || (e.status !== 401 && e.status !== 403)) return e;
    const why = e.serverCode ?? (e.status === 401 ? 'unauthorized' : 'forbidden');
    const hint =
      why === 'revoked'
        ? "this agent's certificate was revoked by the master operator; enroll it again (depotsync agent init)"
        : why === 'expired'
          ? "this agent's certificate expired before it renewed itself (renewal starts at two thirds of its lifetime, at a fetch); enroll it again (depotsync agent init)"
          : why === 'blocked'
            ? 'the master operator blocked this agent; ask them to unblock it'
            : 'ask the master operator to approve this agent, or check that the depot belongs to this master';
    return new DepotsyncError(e.status === 401 ? 'unauthorized' : 'forbidden', `${this.source.name} (${this.source.url}) refused this agent: ${why} (${e.message})`, { hint, cause: e });
  }
}
