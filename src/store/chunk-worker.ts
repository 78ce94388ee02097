import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ChunkerOptions } from '../chunk/fastcdc.js';
import { DepotsyncError } from '../errors.js';
import { backend } from '../hash/backend.js';

/**
 * FastCDC + BLAKE3 of a file's blocks on a worker thread (chunk-worker-thread.ts), so that ingest's
 * main thread only reads, batches, writes and indexes. The worker cuts each block and
 * hashes every chunk just after cutting it, while its bytes are still in the CPU cache: one pass of
 * the block through memory instead of two (a gear scan on one thread, the hash later on another).
 *
 * Blocks are not copied: each is transferred to the worker and back, and the caller gets views at
 * the same offsets. So a block pushed must own its ArrayBuffer (`readBlocks` guarantees that), and
 * it is detached until its reply arrives (SharedArrayBuffers were tried: see `push`).
 *
 * One worker per process, started on first use and unref'd while idle so it never keeps a command
 * alive; several streams (ingests) may share it, each with its own chunker state. Only with the
 * native BLAKE3 backend (`chunkWorkerAvailable`): on the WebAssembly fallback ingest chunks and hashes
 * in-thread. The worker runs the compiled module: from dist/ the file next to this one; from the
 * TypeScript sources (the test runner) the copy in dist/, which `npm test` builds first.
 */

export type ChunkWorkerRequest =
  | { op: 'open'; stream: number; options: Readonly<ChunkerOptions>; level: number }
  | { op: 'push'; stream: number; seq: number; block: ArrayBuffer; offset: number; length: number }
  | { op: 'finish'; stream: number; seq: number }
  | { op: 'close'; stream: number };

export type ChunkWorkerReply =
  | {
      seq: number;
      buffers: ArrayBuffer[];
      spans: number[];
      ids: string[];
      /** Compression was tried (level ≠ 0): a chunk without a frame stays plain. */
      compressed: boolean;
      /** The zstd frames of the chunks, per chunk `offset, length` in `frameBuffer`, or -1 for none. */
      frameBuffer?: ArrayBuffer;
      frameSpans?: number[];
      error?: undefined;
    }
  | { seq: number; error: string };

export interface ChunkedBlock {
  /** The chunks completed by this push (or the last one, for `finish`), in order. */
  pieces: Uint8Array[];
  /** The hex BLAKE3 id of each piece. */
  ids: string[];
  /**
   * Per piece, its zstd frame, or null when compression does not pay (store/encoding.ts); undefined
   * when the stream compresses nothing (level 0).
   */
  frames: Array<Uint8Array | null> | undefined;
  /** The pushed block's memory, back on this thread (undefined for `finish`). */
  block: ArrayBuffer | undefined;
}

interface Pending {
  resolve: (r: ChunkedBlock) => void;
  reject: (e: unknown) => void;
  /** A push (its reply returns the block first), not a finish. */
  pushed: boolean;
}

function workerFile(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./chunk-worker-thread.js', here);
  const built = new URL('../../dist/src/store/chunk-worker-thread.js', here);
  if (!existsSync(fileURLToPath(built))) {
    throw new DepotsyncError(
      'internal',
      `the chunk worker is not built (${fileURLToPath(built)} is missing)`,
      { hint: 'run `npm run build`' },
    );
  }
  return built;
}

class ChunkWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private streams = 0;
  dead: Error | undefined;

  constructor() {
    this.worker = new Worker(workerFile());
    this.worker.unref();
    this.worker.on('message', (m: ChunkWorkerReply) => this.settle(m));
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`chunk worker exited with code ${code}`)));
  }

  open(options: Readonly<ChunkerOptions>, level: number): number {
    const stream = ++this.streams;
    this.post({ op: 'open', stream, options: { ...options }, level }, []);
    return stream;
  }

  close(stream: number): void {
    if (!this.dead) this.post({ op: 'close', stream }, []);
  }

  push(stream: number, block: Uint8Array): Promise<ChunkedBlock> {
    // Shared memory would need no transfer, but V8 copies out of a SharedArrayBuffer byte-safely and
    // the worker's gear scan copies every byte: the worker got slower (bench/README.md, `ingest`).
    if (block.buffer instanceof SharedArrayBuffer)
      return Promise.reject(
        new DepotsyncError('internal', 'chunk worker: a block lives in a SharedArrayBuffer'),
      );
    const ab = block.buffer;
    return this.call(
      { op: 'push', stream, seq: ++this.seq, block: ab, offset: block.byteOffset, length: block.byteLength },
      [ab],
      true,
    );
  }

  finish(stream: number): Promise<ChunkedBlock> {
    return this.call({ op: 'finish', stream, seq: ++this.seq }, [], false);
  }

  private call(
    m: ChunkWorkerRequest & { seq: number },
    transfer: ArrayBuffer[],
    pushed: boolean,
  ): Promise<ChunkedBlock> {
    if (this.dead) return Promise.reject(workerError(this.dead));
    return new Promise<ChunkedBlock>((resolve, reject) => {
      this.pending.set(m.seq, { resolve, reject, pushed });
      if (this.pending.size === 1) this.worker.ref();
      this.post(m, transfer);
    });
  }

  private post(m: ChunkWorkerRequest, transfer: ArrayBuffer[]): void {
    this.worker.postMessage(m, transfer);
  }

  private settle(m: ChunkWorkerReply): void {
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    if (this.pending.size === 0) this.worker.unref();
    if (m.error !== undefined) {
      p.reject(workerError(new Error(m.error)));
      return;
    }
    const pieces: Uint8Array[] = [];
    for (let k = 0; k < m.spans.length; k += 3)
      pieces.push(Buffer.from(m.buffers[m.spans[k]!]!, m.spans[k + 1], m.spans[k + 2]));
    let frames: Array<Uint8Array | null> | undefined;
    if (m.compressed) {
      frames = [];
      const fs = m.frameSpans ?? [];
      for (let k = 0, i = 0; i < m.ids.length; i++) {
        if (m.frameBuffer === undefined || fs[k] === -1) {
          frames.push(null);
          k += m.frameBuffer === undefined ? 0 : 1;
          continue;
        }
        frames.push(Buffer.from(m.frameBuffer, fs[k], fs[k + 1]));
        k += 2;
      }
    }
    p.resolve({ pieces, ids: m.ids, frames, block: p.pushed ? m.buffers[0] : undefined });
  }

  private fail(e: Error): void {
    this.dead ??= e;
    for (const p of this.pending.values()) p.reject(workerError(e));
    this.pending.clear();
  }
}

function workerError(e: Error): DepotsyncError {
  return new DepotsyncError('internal', `chunk worker failed: ${e.message}`, {
    hint: 'this is a bug or the process is out of memory; run the command again',
    cause: e,
  });
}

let shared: ChunkWorker | undefined;

/** Is the worker usable here (the native BLAKE3 addon loaded)? */
export function chunkWorkerAvailable(): boolean {
  return backend.implementation === 'native';
}

/**
 * One input's chunking on the worker: `push` each block in order, then `finish`; `close` if the
 * input is abandoned. Replies resolve in order. A pushed block is detached until its reply.
 */
export class ChunkWorkerStream {
  private readonly worker: ChunkWorker;
  private readonly stream: number;
  private open = true;

  /** `level`: zstd level each chunk is compressed at on the worker (0: none; store/encoding.ts). */
  constructor(options: Readonly<ChunkerOptions>, level = 0) {
    if (!chunkWorkerAvailable())
      throw new DepotsyncError('internal', 'chunk worker: the native BLAKE3 addon is not loaded');
    if (!shared || shared.dead) shared = new ChunkWorker();
    this.worker = shared;
    this.stream = this.worker.open(options, level);
  }

  push(block: Uint8Array): Promise<ChunkedBlock> {
    return this.worker.push(this.stream, block);
  }

  finish(): Promise<ChunkedBlock> {
    this.open = false;
    return this.worker.finish(this.stream);
  }

  /** Drop the worker's state for an input that will not be finished (safe to call more than once). */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.worker.close(this.stream);
  }
}
