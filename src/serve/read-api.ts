import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { DepotsyncError, isDepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { BATCH_CONTENT_TYPE, encodeRecordHeader } from '../wire/chunk-batch.js';
import { CHUNK_DELTA_LIMITS, DELTA_CONTENT_TYPE, deltaRecords, parseDeltaRequest } from '../wire/chunk-delta.js';
import type { ServeEnv } from './env.js';
import { readBodyCapped } from './http-errors.js';
import { SizedBufferPool } from '../store/buffer-pool.js';
import { BatchBudget, RecentlyVerified } from './batch-budget.js';
import { HotChunks } from './hot-chunks.js';
import { idToKey, matchesKey } from '../store/chunk-id.js';

/** What the read API needs from the chunk store. */
export interface ChunkReader {
  get(id: string, opts?: { verify?: boolean }): Promise<Buffer>;
  has(id: string): boolean;
  /** Chunks in the order asked (ChunkStore.readMany): no data, and the problem, for one it cannot serve. */
  readMany(
    ids: readonly string[],
    opts: { verify: boolean | ((id: string) => boolean); runBytes?: number; aheadRuns?: number; pool?: SizedBufferPool },
  ): AsyncIterable<{ id: string; data: Buffer | undefined; problem?: Error; release?: () => void }>;
}

/** Where the served bytes come from: the master's catalog or a depot's served generation. */
export interface ReadApiSource {
  /** A TUF metadata file by its served name (`timestamp.json`, `3.root.json`, `12.snapshot.json`, `7.bin-3a.json`). */
  metadata(name: string): Buffer | undefined;
  /** A TUF target (a package manifest) by its consistent-snapshot name `{sha256}.{name}`. */
  target(name: string): Buffer | undefined;
  /** The signed revocation list. */
  revocations(): Buffer | undefined;
  /** The newest root version served (for the timestamp's hint headers, SYNC_HINT_HEADERS). */
  latestRootVersion?(): number | undefined;
  chunks: ChunkReader;
}

/**
 * Headers on `timestamp.json` that let a syncing depot make one request when nothing changed
 * (depot/sync/upstream.ts): the newest root version and the SHA-256 of the revocation list served.
 * They are hints, never trusted: a lying upstream can only make a client skip a fetch, which is what
 * withholding a file does anyway; whatever is fetched is verified as always.
 */
export const SYNC_HINT_HEADERS = { rootVersion: 'x-depotsync-root-version', revocations: 'x-depotsync-revocations-sha256' } as const;

export interface ReadApiOptions {
  batchMaxIds: number;
  batchMaxBodyBytes: number;
  /** Re-hash a chunk before serving it (STYLE.md §5: distrust your own disk). */
  verifyOnServe: boolean;
  /** How long a chunk re-hashed before serving counts as verified for the next client. */
  verifiedTtlMs: number;
  /** Memory shared by all batch responses in flight (read-ahead and socket buffers). */
  batchMemoryBytes: number;
  /** Chunks many clients ask for at once, kept in memory (hot-chunks.ts); 0 = none. */
  hotChunkBytes: number;
  onServed?: (kind: 'chunk' | 'metadata' | 'target', bytes: number) => void;
  /** A stored chunk failed its hash and was not served: the owner quarantines and refetches it. */
  onCorrupt?: (id: string) => void;
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
const CHUNK_ID = /^[0-9a-f]{64}$/;
/** Chunk ids remembered as recently verified (about 9 MB of map entries). */
const VERIFIED_ENTRIES = 100_000;

/** Public part of the read API: root versions, so a client can bootstrap from its pinned fingerprint. */
export function publicReadRoutes(source: ReadApiSource): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  app.get('/v1/metadata/:name{[0-9]+\\.root\\.json}', (c) => {
    const name = c.req.param('name');
    if (!ROOT_NAME.test(name)) throw new DepotsyncError('bad-input', `bad metadata name: ${JSON.stringify(name)}`);
    return metadataResponse(c, source.metadata(name), name);
  });
  return app;
}

/** The mutual-TLS part of the read API (DESIGN.md §7): metadata, targets, chunks, batches, revocations. */
export function readRoutes(source: ReadApiSource, log: Logger, options: Partial<ReadApiOptions> = {}): Hono<ServeEnv> {
  const opts = { ...DEFAULT_READ_API_OPTIONS, ...options };
  const app = new Hono<ServeEnv>();
  const budget = new BatchBudget(opts.batchMemoryBytes);
  // Runs are read into recycled buffers, given back once the socket has taken their last record.
  const pool = new SizedBufferPool(64 * 1024, 1024 * 1024, opts.batchMemoryBytes);
  const verified = new RecentlyVerified(VERIFIED_ENTRIES, opts.verifiedTtlMs);
  // Kept chunks are re-hashed once as they go in (verify on serve), not each time they are served.
  const hot = new HotChunks(opts.hotChunkBytes, opts.verifyOnServe ? (id, data) => matchesKey(idToKey(id), data) : undefined);

  app.get('/v1/metadata/:name', (c) => {
    const name = c.req.param('name');
    if (!METADATA_NAME.test(name)) throw new DepotsyncError('bad-input', `bad metadata name: ${JSON.stringify(name)}`);
    const bytes = source.metadata(name);
    if (bytes) opts.onServed?.('metadata', bytes.length);
    if (name === 'timestamp.json' && bytes) {
      const root = source.latestRootVersion?.();
      if (root !== undefined) c.header(SYNC_HINT_HEADERS.rootVersion, String(root));
      const list = source.revocations();
      if (list) c.header(SYNC_HINT_HEADERS.revocations, revocationsDigest(list));
    }
    return metadataResponse(c, bytes, name);
  });

  app.get('/v1/targets/:name', (c) => {
    const name = c.req.param('name');
    if (!TARGET_NAME.test(name)) throw new DepotsyncError('bad-input', `bad target name: ${JSON.stringify(name)}`);
    const bytes = source.target(name);
    if (!bytes) throw new DepotsyncError('not-found', `target ${name} not found`);
    opts.onServed?.('target', bytes.length);
    return c.body(new Uint8Array(bytes), 200, {
      'content-type': 'application/json',
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });

  app.get('/v1/revocations.json', (c) => {
    const bytes = source.revocations();
    if (!bytes) throw new DepotsyncError('not-found', 'no revocation list has been published yet');
    return c.body(new Uint8Array(bytes), 200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
  });

  app.get('/v1/chunks/:id', async (c) => {
    const id = c.req.param('id');
    if (!CHUNK_ID.test(id)) throw new DepotsyncError('bad-input', `bad chunk id: ${JSON.stringify(id.slice(0, 80))}`);
    const etag = `"${id}"`;
    const common = { etag, 'cache-control': 'public, max-age=31536000, immutable', 'accept-ranges': 'bytes' };
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, common);
    const data = await readChunk(source, id, opts.verifyOnServe, log, opts.onCorrupt);
    const range = c.req.header('range');
    if (range === undefined) {
      opts.onServed?.('chunk', data.length);
      return c.body(new Uint8Array(data), 200, { ...common, 'content-type': 'application/octet-stream' });
    }
    const r = parseRange(range, data.length);
    if (r === 'unsatisfiable') {
      return c.json(
        { error: { code: 'range', message: `range ${range} is beyond the end of chunk ${id} (${data.length} bytes)` } },
        416,
        { 'content-range': `bytes */${data.length}` },
      );
    }
    opts.onServed?.('chunk', r.end - r.start + 1);
    return c.body(new Uint8Array(data.subarray(r.start, r.end + 1)), 206, {
      ...common,
      'content-type': 'application/octet-stream',
      'content-range': `bytes ${r.start}-${r.end}/${data.length}`,
    });
  });

  app.post('/v1/chunks/batch', async (c) => {
    const body = await readBodyCapped(c, opts.batchMaxBodyBytes, 'chunk batch request');
    const ids = parseBatchRequest(body, opts.batchMaxIds);
    const share = budget.acquire();
    const checked = new Set<string>();
    const verify = opts.verifyOnServe ? (id: string) => !verified.fresh(id) && (checked.add(id), true) : false;
    const outgoing = c.env?.outgoing;
    const records = hot.readMany(source.chunks, ids, { verify, runBytes: share.runBytes, aheadRuns: share.aheadRuns, ...(outgoing ? { pool } : {}) });
    if (outgoing) {
      // Hot path: records go straight to the socket (the store reads back-to-back records in runs, a
      // few runs ahead); writes are corked so a run leaves as one large TLS write instead of two small
      // ones per chunk, and no more than the response's share of memory waits on the socket.
      outgoing.writeHead(200, { 'content-type': BATCH_CONTENT_TYPE });
      let corked = 0;
      try {
        outgoing.cork();
        for await (const r of records) {
          if (outgoing.destroyed) break;
          if (r.problem && isDepotsyncError(r.problem, 'corrupt')) {
            log.error({ chunk: r.id }, 'stored chunk failed verification; not served');
            opts.onCorrupt?.(r.id);
          }
          if (r.data && checked.has(r.id)) verified.add(r.id);
          // A run's buffer goes back to the pool when the write of its last record has completed
          // (writes complete in order, so every earlier record of the run is out too).
          const release = r.release;
          if (!r.data) {
            outgoing.write(encodeRecordHeader(r.id, undefined), release && ((e) => !e && release()));
            continue;
          }
          outgoing.write(encodeRecordHeader(r.id, r.data.length));
          corked += r.data.length;
          opts.onServed?.('chunk', r.data.length);
          if (corked < share.flushBytes) {
            outgoing.write(r.data, release && ((e) => !e && release()));
            continue;
          }
          corked = 0;
          const flushed = new Promise<void>((resolve) =>
            outgoing.write(r.data, (e) => {
              if (!e) release?.();
              resolve();
            }),
          );
          outgoing.uncork();
          if (outgoing.writableNeedDrain || outgoing.writableLength > share.flushBytes) await untilOrClose(outgoing, flushed);
          outgoing.cork();
        }
      } finally {
        share.release();
        outgoing.uncork();
        outgoing.end();
      }
      return RESPONSE_ALREADY_SENT;
    }
    const parts: Buffer[] = [];
    try {
      for await (const r of records) {
        if (r.problem && isDepotsyncError(r.problem, 'corrupt')) opts.onCorrupt?.(r.id);
        parts.push(encodeRecordHeader(r.id, r.data?.length));
        if (r.data) parts.push(r.data);
      }
    } finally {
      share.release();
    }
    return c.body(new Uint8Array(Buffer.concat(parts)), 200, { 'content-type': BATCH_CONTENT_TYPE });
  });

  // Chunk deltas (src/wire/chunk-delta.ts): each target as the difference from a base the caller holds.
  app.post('/v1/chunks/delta', async (c) => {
    const body = await readBodyCapped(c, CHUNK_DELTA_LIMITS.maxRequestBytes, 'chunk delta request');
    const pairs = parseDeltaRequest(body, CHUNK_DELTA_LIMITS.maxPairs);
    const load = (id: string) =>
      source.chunks.has(id) ? readChunk(source, id, opts.verifyOnServe, log, opts.onCorrupt).catch(() => undefined) : Promise.resolve(undefined);
    const records = deltaRecords(pairs, load);
    const outgoing = c.env?.outgoing;
    if (!outgoing) {
      const parts: Buffer[] = [];
      for await (const r of records) parts.push(r.record);
      return c.body(new Uint8Array(Buffer.concat(parts)), 200, { 'content-type': DELTA_CONTENT_TYPE });
    }
    // Straight to the socket with backpressure: at most CHUNK_DELTA_LIMITS.readAhead pairs in memory.
    outgoing.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
    try {
      for await (const r of records) {
        if (outgoing.destroyed) break;
        if (r.payloadBytes) opts.onServed?.('chunk', r.payloadBytes);
        if (!outgoing.write(r.record)) await drainOrClose(outgoing);
      }
      outgoing.end();
    } catch (e) {
      // The status line is gone: cut the stream (the caller sees it truncated and fetches whole).
      log.error({ err: e }, 'chunk delta response failed part way');
      outgoing.destroy();
    }
    return RESPONSE_ALREADY_SENT;
  });

  return app;
}

/** Waits for the socket to drain, or for the caller to hang up: never forever. */
function drainOrClose(outgoing: NodeJS.WritableStream & { off(e: string, f: () => void): unknown }): Promise<void> {
  let onDrain = () => {};
  const drained = new Promise<void>((resolve) => (onDrain = resolve));
  outgoing.once('drain', onDrain);
  return untilOrClose(outgoing, drained).finally(() => outgoing.off('drain', onDrain));
}

/** Waits for `done` (a write flushed), or for the caller to hang up: never forever. */
function untilOrClose(outgoing: NodeJS.WritableStream & { off(e: string, f: () => void): unknown }, done: Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const finish = () => {
      outgoing.off('close', finish);
      resolve();
    };
    outgoing.on('close', finish);
    void done.then(finish);
  });
}

/** SHA-256 of the revocation list, remembered for the same buffer (it changes rarely). */
let lastDigest: { list: Buffer; hex: string } | undefined;
function revocationsDigest(list: Buffer): string {
  if (lastDigest?.list !== list) lastDigest = { list, hex: createHash('sha256').update(list).digest('hex') };
  return lastDigest.hex;
}

function metadataResponse(c: import('hono').Context<ServeEnv>, bytes: Buffer | undefined, name: string): Response {
  if (!bytes) throw new DepotsyncError('not-found', `metadata ${name} not found`);
  const immutable = name !== 'timestamp.json';
  return c.body(new Uint8Array(bytes), 200, {
    'content-type': 'application/json',
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
}

async function readChunk(source: ReadApiSource, id: string, verify: boolean, log: Logger, onCorrupt?: (id: string) => void): Promise<Buffer> {
  try {
    return await source.chunks.get(id, { verify });
  } catch (e) {
    if (isDepotsyncError(e, 'corrupt')) {
      log.error({ chunk: id }, 'stored chunk failed verification; not served');
      onCorrupt?.(id);
    }
    if (isDepotsyncError(e, 'not-found') || isDepotsyncError(e, 'corrupt')) {
      throw new DepotsyncError('not-found', `chunk ${id} not found`);
    }
    throw e;
  }
}

export function parseBatchRequest(body: Buffer, maxIds: number): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new DepotsyncError('bad-json', 'chunk batch request: body is not JSON');
  }
  const ids = (parsed as { ids?: unknown })?.ids;
  if (!Array.isArray(ids)) throw new DepotsyncError('bad-input', 'chunk batch request: expected {"ids":[…]}');
  if (ids.length > maxIds) throw new DepotsyncError('too-large', `chunk batch request: ${ids.length} ids, limit ${maxIds}`);
  ids.forEach((id, i) => {
    if (typeof id !== 'string' || !CHUNK_ID.test(id)) {
      throw new DepotsyncError('bad-input', `chunk batch request: ids[${i}] is not a chunk id`);
    }
  });
  return ids as string[];
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range (multiple ranges are not supported). */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw new DepotsyncError('bad-input', `bad Range header: ${JSON.stringify(header)}`);
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
