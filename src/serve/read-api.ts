import { createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { DepotsyncError, isDepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ZstdDeltaSource } from '../deltas/source.js';
import {
  CHOSEN_BASES,
  CHOSEN_BASES_HEADER,
  CHUNK_DELTA_LIMITS,
  parseDeltaRequestWith,
} from '../wire/chunk-delta.js';
import { parseBatchRequest } from '../wire/chunk-batch.js';
import { ChunkBatchWriter } from './chunk-batch-writer.js';
import { respondDelta } from './chunk-delta-writer.js';
import { CHUNK_ID, readChunk, readStoredChunk, type ChunkReader } from './chunk-reader.js';
import { TargetDeltaCache } from './target-delta.js';
import { TARGET_DELTA_BASE_HEADER, TARGET_DELTA_CONTENT_TYPE } from '../wire/target-delta.js';
import { acceptsBr, BR, brEncode, decodeBody, REQUEST_ENCODING_HEADER } from '../wire/json-encoding.js';

/** The plain length of a chunk sent with `content-encoding: zstd` (`GET /v1/chunks/{id}`). */
export const PLAIN_LENGTH_HEADER = 'x-depotsync-plain-length';
import type { ServeEnv } from './env.js';
import { readBodyCapped } from './http-errors.js';

/** Where the served bytes come from: the master's catalog or a depot's served generation. */
export interface ReadApiSource {
  /**
   * A TUF metadata file by its served name (`timestamp.json`, `3.root.json`,
   * `12.snapshot.json`, `7.bin-3a.json`).
   */
  metadata(name: string): Buffer | undefined | Promise<Buffer | undefined>;
  /** A TUF target (a package manifest) by its consistent-snapshot name `{sha256}.{name}`. */
  target(name: string): Buffer | undefined | Promise<Buffer | undefined>;
  /** The signed revocation list. */
  revocations(): Buffer | undefined;
  /** The newest root version served (for the timestamp's hint headers, SYNC_HINT_HEADERS). */
  latestRootVersion?(): number | undefined | Promise<number | undefined>;
  chunks: ChunkReader;
}

/**
 * Headers on `timestamp.json` that let a syncing depot make one request when nothing changed
 * (depot/sync/upstream.ts): the newest root version and the SHA-256 of the revocation list served.
 * They are hints, never trusted: a lying upstream can only make a client skip a fetch, which is what
 * withholding a file does anyway; whatever is fetched is verified as always.
 */
export const SYNC_HINT_HEADERS = {
  rootVersion: 'x-depotsync-root-version',
  revocations: 'x-depotsync-revocations-sha256',
} as const;

export interface ReadApiOptions {
  batchMaxIds: number;
  batchMaxBodyBytes: number;
  /** Re-hash a chunk before serving it (docs/contributing.md: distrust your own disk). */
  verifyOnServe: boolean;
  /** How long a chunk re-hashed before serving counts as verified for the next client. */
  verifiedTtlMs: number;
  /** Memory shared by all batch responses in flight (read-ahead and socket buffers). */
  batchMemoryBytes: number;
  /** Chunks many clients ask for at once, kept in memory (hot-chunks.ts); 0 = none. */
  hotChunkBytes: number;
  /** Bytes sent (compressed where a chunk went compressed) and, for chunks, their plain length. */
  onServed?: (kind: 'chunk' | 'metadata' | 'target', bytes: number, plainBytes?: number) => void;
  /** A stored chunk failed its hash and was not served: the owner quarantines and refetches it. */
  onCorrupt?: (id: string) => void;
  /** zstd chunk deltas (cached, or computed on request) for callers that accept them. */
  zstdDeltas?: ZstdDeltaSource;
}

export const DEFAULT_READ_API_OPTIONS: ReadApiOptions = {
  batchMaxIds: 4096,
  batchMaxBodyBytes: 4096 * 70 + 64,
  verifyOnServe: true,
  // 0: a chunk read from disk is re-hashed every time (disk rot after a check is never served).
  verifiedTtlMs: 0,
  batchMemoryBytes: 64 * 1024 * 1024,
  hotChunkBytes: 64 * 1024 * 1024,
};

const METADATA_NAME = /^(?:\d{1,10}\.(?:root|snapshot|targets|bin-[0-9a-f]{1,4})|timestamp)\.json$/;
const ROOT_NAME = /^\d{1,10}\.root\.json$/;
const TARGET_NAME = /^[0-9a-f]{64}\.[A-Za-z0-9._+@-]{1,300}$/;

/** Public part of the read API: root versions, so a client can bootstrap from its pinned fingerprint. */
export function publicReadRoutes(source: ReadApiSource): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  app.get('/v1/metadata/:name{[0-9]+\\.root\\.json}', async (c) => {
    const name = c.req.param('name');
    if (!ROOT_NAME.test(name))
      throw new DepotsyncError('bad-input', `bad metadata name: ${JSON.stringify(name)}`);
    return metadataResponse(c, await source.metadata(name), name);
  });
  return app;
}

/** The mutual-TLS part of the read API (docs/http.md): metadata, targets, chunks, batches, revocations. */
export function readRoutes(
  source: ReadApiSource,
  log: Logger,
  options: Partial<ReadApiOptions> = {},
): Hono<ServeEnv> {
  const opts = { ...DEFAULT_READ_API_OPTIONS, ...options };
  const app = new Hono<ServeEnv>();
  const batches = new ChunkBatchWriter(source.chunks, log, opts);

  app.get('/v1/metadata/:name', async (c) => {
    const name = c.req.param('name');
    if (!METADATA_NAME.test(name))
      throw new DepotsyncError('bad-input', `bad metadata name: ${JSON.stringify(name)}`);
    const bytes = await source.metadata(name);
    if (name === 'timestamp.json' && bytes) {
      const root = await source.latestRootVersion?.();
      if (root !== undefined) c.header(SYNC_HINT_HEADERS.rootVersion, String(root));
      const list = source.revocations();
      if (list) c.header(SYNC_HINT_HEADERS.revocations, revocationsDigest(list));
      // On the timestamp only: every sync and fetch starts with it, and each byte here is paid per request.
      c.header(REQUEST_ENCODING_HEADER, BR);
      c.header(CHOSEN_BASES_HEADER, CHOSEN_BASES);
    }
    return metadataResponse(c, bytes, name, (n) => opts.onServed?.('metadata', n));
  });

  app.get('/v1/targets/:name', async (c) => {
    const name = c.req.param('name');
    if (!TARGET_NAME.test(name))
      throw new DepotsyncError('bad-input', `bad target name: ${JSON.stringify(name)}`);
    const bytes = await source.target(name);
    if (!bytes) throw new DepotsyncError('not-found', `target ${name} not found`);
    const body = jsonBody(c, bytes);
    opts.onServed?.('target', body.bytes.length);
    return c.body(new Uint8Array(body.bytes), 200, {
      ...body.headers,
      'content-type': 'application/json',
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });

  // A manifest as the difference from another one the reader holds (target-delta.ts); both must be
  // served here, so a reader cannot make the server read anything it would not serve whole.
  const targetDeltas = new TargetDeltaCache();
  app.get('/v1/targets-delta/:base/:name', async (c) => {
    const base = c.req.param('base');
    const name = c.req.param('name');
    for (const n of [base, name])
      if (!TARGET_NAME.test(n))
        throw new DepotsyncError('bad-input', `bad target name: ${JSON.stringify(n)}`);
    const bytes = await source.target(name);
    if (!bytes) throw new DepotsyncError('not-found', `target ${name} not found`);
    const baseBytes = await source.target(base);
    if (!baseBytes)
      throw new DepotsyncError('not-found', `delta base ${base} not found`, {
        hint: 'fetch the target whole: GET /v1/targets/{name}',
      });
    const answer = targetDeltas.answer(base, baseBytes, name, bytes);
    // A delta is a zstd frame already; the whole manifest is JSON, compressed like any other.
    const body = answer.kind === 'delta' ? { bytes: answer.bytes, headers: {} } : jsonBody(c, answer.bytes);
    opts.onServed?.('target', body.bytes.length);
    const headers: Record<string, string> = {
      ...body.headers,
      'content-type': answer.kind === 'delta' ? TARGET_DELTA_CONTENT_TYPE : 'application/json',
      'cache-control': 'public, max-age=31536000, immutable',
    };
    if (answer.kind === 'delta') headers[TARGET_DELTA_BASE_HEADER] = base;
    return c.body(new Uint8Array(body.bytes), 200, headers);
  });

  app.get('/v1/revocations.json', (c) => {
    const bytes = source.revocations();
    if (!bytes) throw new DepotsyncError('not-found', 'no revocation list has been published yet');
    const body = jsonBody(c, bytes);
    return c.body(new Uint8Array(body.bytes), 200, {
      ...body.headers,
      'content-type': 'application/json',
      'cache-control': 'no-cache',
    });
  });

  app.get('/v1/chunks/:id', async (c) => {
    const id = c.req.param('id');
    if (!CHUNK_ID.test(id))
      throw new DepotsyncError('bad-input', `bad chunk id: ${JSON.stringify(id.slice(0, 80))}`);
    // A client that accepts zstd (and asks for the whole chunk) gets the stored frame as it is, with
    // `content-encoding: zstd` and the plain length in `x-depotsync-plain-length`; a chunk stored plain
    // goes plain. Ranges are of the plain bytes.
    const zstd =
      /(^|[\s,])zstd($|[\s,;])/.test(c.req.header('accept-encoding') ?? '') && !c.req.header('range');
    const common = {
      'cache-control': 'public, max-age=31536000, immutable',
      'accept-ranges': 'bytes',
      vary: 'accept-encoding',
    };
    const plainTag = `"${id}"`;
    const zstdTag = `"${id}.zstd"`;
    const match = c.req.header('if-none-match');
    if (match === plainTag || (zstd && match === zstdTag))
      return c.body(null, 304, { ...common, etag: match });
    if (zstd) {
      const s = await readStoredChunk(source.chunks, id, opts.verifyOnServe, log, opts.onCorrupt);
      if (s.encoding === 'zstd') {
        opts.onServed?.('chunk', s.data.length, s.plainLength);
        return c.body(new Uint8Array(s.data), 200, {
          ...common,
          etag: zstdTag,
          'content-type': 'application/octet-stream',
          'content-encoding': 'zstd',
          [PLAIN_LENGTH_HEADER]: String(s.plainLength),
        });
      }
      return chunkResponse(c, id, s.data, { ...common, etag: plainTag }, opts.onServed);
    }
    const data = await readChunk(source.chunks, id, opts.verifyOnServe, log, opts.onCorrupt);
    return chunkResponse(c, id, data, { ...common, etag: plainTag }, opts.onServed);
  });

  app.post('/v1/chunks/batch', async (c) => {
    const body = await readBodyCapped(c, opts.batchMaxBodyBytes, 'chunk batch request');
    return batches.respond(c, parseBatchRequest(body, opts.batchMaxIds, opts.batchMaxBodyBytes));
  });

  // Chunk deltas (src/wire/chunk-delta.ts): each target as the difference from a base the caller holds.
  app.post('/v1/chunks/delta', async (c) => {
    const what = 'chunk delta request';
    const wire = await readBodyCapped(c, CHUNK_DELTA_LIMITS.maxRequestBytes, what);
    const body = requestBody(
      wire,
      c.req.header('content-encoding'),
      CHUNK_DELTA_LIMITS.maxRequestBytes,
      what,
    );
    const { pairs, zstd, stored, chosen } = parseDeltaRequestWith(body, CHUNK_DELTA_LIMITS.maxPairs);
    const load = (id: string) =>
      source.chunks.has(id)
        ? readChunk(source.chunks, id, opts.verifyOnServe, log, opts.onCorrupt).catch(() => undefined)
        : Promise.resolve(undefined);
    // The frame as stored; the receiver decodes and hashes it, and a bad one is fetched whole.
    const frame = async (id: string) => {
      const s = await source.chunks.getStored(id, { verify: opts.verifyOnServe });
      return s.encoding === 'zstd' ? s.data : undefined;
    };
    const zstdDeltas = zstd ? opts.zstdDeltas : undefined;
    return respondDelta(c, pairs, load, log, opts.onServed, zstdDeltas, stored ? frame : undefined, chosen);
  });

  return app;
}

/** SHA-256 of the revocation list, remembered for the same buffer (it changes rarely). */
let lastDigest: { list: Buffer; hex: string } | undefined;
function revocationsDigest(list: Buffer): string {
  if (lastDigest?.list !== list) lastDigest = { list, hex: createHash('sha256').update(list).digest('hex') };
  return lastDigest.hex;
}

/** A request body as decoded by `decodeBody`; the client's fault when it fails (400 or 413). */
function requestBody(wire: Buffer, encoding: string | undefined, maxBytes: number, what: string): Buffer {
  try {
    return decodeBody(wire, encoding, maxBytes, what);
  } catch (e) {
    if (isDepotsyncError(e, 'too-large')) throw e;
    throw new DepotsyncError('bad-input', (e as Error).message, {
      hint: 'send the body plain, or brotli-compressed with content-encoding: br',
    });
  }
}

/**
 * Brotli forms of the JSON bodies served (src/wire/json-encoding.ts), by content: metadata and
 * manifests are served many times and change only with a generation. Bounded in entries and bytes.
 */
const encoded = new Map<string, { plain: Buffer; br: Buffer | undefined }>();
let encodedBytes = 0;
const ENCODED_MAX_ENTRIES = 1024;
const ENCODED_MAX_BYTES = 32 * 1024 * 1024;
/** Below this, brotli's header eats the gain. */
const ENCODE_MIN_BYTES = 128;

/** The body to send for `plain`: brotli when the client accepts it and it is smaller. */
function jsonBody(c: Context<ServeEnv>, plain: Buffer): { bytes: Buffer; headers: Record<string, string> } {
  const vary = { vary: 'accept-encoding' };
  if (plain.length < ENCODE_MIN_BYTES || !acceptsBr(c.req.header('accept-encoding')))
    return { bytes: plain, headers: vary };
  const key = `${plain.length}:${createHash('sha256').update(plain).digest('hex')}`;
  let hit = encoded.get(key);
  if (!hit) {
    const br = brEncode(plain);
    hit = { plain, br: br.length < plain.length ? br : undefined };
    if (encoded.size >= ENCODED_MAX_ENTRIES || encodedBytes > ENCODED_MAX_BYTES) {
      encoded.clear();
      encodedBytes = 0;
    }
    encoded.set(key, hit);
    encodedBytes += plain.length + (hit.br?.length ?? 0);
  }
  return hit.br
    ? { bytes: hit.br, headers: { ...vary, 'content-encoding': BR } }
    : { bytes: plain, headers: vary };
}

function metadataResponse(
  c: Context<ServeEnv>,
  bytes: Buffer | undefined,
  name: string,
  served?: (wireBytes: number) => void,
): Response {
  if (!bytes) throw new DepotsyncError('not-found', `metadata ${name} not found`);
  const immutable = name !== 'timestamp.json';
  const body = jsonBody(c, bytes);
  served?.(body.bytes.length);
  return c.body(new Uint8Array(body.bytes), 200, {
    ...body.headers,
    'content-type': 'application/json',
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
}

/** A whole chunk (200), the part a Range header asks for (206), or 416 for a range beyond its end. */
function chunkResponse(
  c: Context<ServeEnv>,
  id: string,
  data: Buffer,
  common: Record<string, string>,
  onServed: ReadApiOptions['onServed'],
): Response {
  const range = c.req.header('range');
  if (range === undefined) {
    onServed?.('chunk', data.length);
    return c.body(new Uint8Array(data), 200, { ...common, 'content-type': 'application/octet-stream' });
  }
  const r = parseRange(range, data.length);
  if (r === 'unsatisfiable') {
    return c.json(
      {
        error: {
          code: 'range',
          message: `range ${range} is beyond the end of chunk ${id} (${data.length} bytes)`,
        },
      },
      416,
      { 'content-range': `bytes */${data.length}` },
    );
  }
  onServed?.('chunk', r.end - r.start + 1);
  return c.body(new Uint8Array(data.subarray(r.start, r.end + 1)), 206, {
    ...common,
    'content-type': 'application/octet-stream',
    'content-range': `bytes ${r.start}-${r.end}/${data.length}`,
  });
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range (multiple ranges are not supported). */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === ''))
    throw new DepotsyncError('bad-input', `bad Range header: ${JSON.stringify(header)}`);
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}
