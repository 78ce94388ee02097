import { Worker } from 'node:worker_threads';
import { DepotsyncError } from '../errors.js';
import { backend } from '../hash/backend.js';

/**
 * BLAKE3 of chunks on a worker thread, so that ingest's main thread only reads and chunks (issue 2:
 * on the 2-core machine, hashing on the main thread was a third of its CPU time).
 *
 * The chunk bytes are not copied: the ArrayBuffers holding them are transferred to the worker and
 * transferred back with the ids, and the caller gets fresh views at the same offsets. So every buffer
 * of a job must belong to that job alone (no view of Node's shared Buffer pool, no buffer another
 * job or another part of the program still uses): ingest feeds it blocks from `readBlocks` and the
 * chunker's own copies, which guarantee that. SharedArrayBuffers are no way around it: the native
 * addon cannot read them (see blake3.ts).
 *
 * One worker per process, started on first use and unref'd while idle so it never keeps a command
 * alive. The worker is plain JavaScript passed as a string (`eval`), so it runs the same from the
 * TypeScript sources under the test runner and from dist/, and loads the very addon file the main
 * thread proved with the BLAKE3 test vector (backend.ts). Only with the native backend: on the
 * WebAssembly fallback `hashWorkerAvailable()` is false and ingest hashes in-thread.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const native = require(workerData.addonPath);
parentPort.on('message', (job) => {
  try {
    const { seq, buffers, spans } = job;
    const n = spans.length / 3;
    const ids = new Array(n);
    for (let k = 0; k < n; k++) {
      const h = native.createHash();
      h.update(new Uint8Array(buffers[spans[3 * k]], spans[3 * k + 1], spans[3 * k + 2]));
      ids[k] = h.digest().toString('hex');
    }
    parentPort.postMessage({ seq, buffers, ids }, buffers);
  } catch (e) {
    parentPort.postMessage({ seq: job && job.seq, error: String(e && e.stack || e) });
  }
});
`;

export interface HashedPieces {
  /** The hex BLAKE3 id of each piece, in order. */
  ids: string[];
  /** The pieces again, as views of the returned buffers (the originals are detached). */
  pieces: Uint8Array[];
  /** Each transferred ArrayBuffer (now detached) → the same memory, back on this thread. */
  moved: Map<ArrayBufferLike, ArrayBuffer>;
}

interface Pending {
  resolve: (r: HashedPieces) => void;
  reject: (e: unknown) => void;
  sent: ArrayBuffer[];
  /** Per piece: [buffer index, byteOffset, byteLength]. */
  spans: number[];
}

class HashWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  dead: Error | undefined;

  constructor(addonPath: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { addonPath } });
    this.worker.unref();
    this.worker.on('message', (m: { seq: number; buffers?: ArrayBuffer[]; ids?: string[]; error?: string }) => this.settle(m));
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`hash worker exited with code ${code}`)));
  }

  hash(pieces: readonly Uint8Array[]): Promise<HashedPieces> {
    if (this.dead) return Promise.reject(workerError(this.dead));
    const buffers: ArrayBuffer[] = [];
    const index = new Map<ArrayBufferLike, number>();
    const spans: number[] = [];
    for (const p of pieces) {
      let b = index.get(p.buffer);
      if (b === undefined) {
        if (p.buffer instanceof SharedArrayBuffer) throw new DepotsyncError('internal', 'hash worker: a chunk lives in a SharedArrayBuffer, which the BLAKE3 addon cannot read');
        b = buffers.push(p.buffer as ArrayBuffer) - 1;
        index.set(p.buffer, b);
      }
      spans.push(b, p.byteOffset, p.byteLength);
    }
    const seq = ++this.seq;
    return new Promise<HashedPieces>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, spans, sent: buffers });
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ seq, buffers, spans }, buffers);
    });
  }

  private settle(m: { seq: number; buffers?: ArrayBuffer[]; ids?: string[]; error?: string }): void {
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    if (this.pending.size === 0) this.worker.unref();
    if (m.error !== undefined || !m.buffers || !m.ids) {
      p.reject(workerError(new Error(m.error ?? 'malformed reply')));
      return;
    }
    const { buffers, ids } = m;
    const pieces: Uint8Array[] = [];
    for (let k = 0; k < p.spans.length; k += 3) {
      pieces.push(Buffer.from(buffers[p.spans[k]!]!, p.spans[k + 1]!, p.spans[k + 2]!));
    }
    const moved = new Map<ArrayBufferLike, ArrayBuffer>(p.sent.map((ab, i) => [ab, buffers[i]!]));
    p.resolve({ ids, pieces, moved });
  }

  private fail(e: Error): void {
    this.dead ??= e;
    for (const p of this.pending.values()) p.reject(workerError(e));
    this.pending.clear();
  }
}

function workerError(e: Error): DepotsyncError {
  return new DepotsyncError('internal', `hash worker failed: ${e.message}`, {
    hint: 'this is a bug or the process is out of memory; run the command again',
    cause: e,
  });
}

let shared: HashWorker | undefined;

/** Is the worker usable here (the native BLAKE3 addon loaded)? */
export function hashWorkerAvailable(): boolean {
  return backend.implementation === 'native' && backend.nativeAddonPath !== undefined;
}

/**
 * Hash `pieces` on the worker thread. Their ArrayBuffers are detached until the promise settles (and
 * for good if it rejects): use the returned views. Jobs are answered in the order they were sent.
 */
export function hashOnWorker(pieces: readonly Uint8Array[]): Promise<HashedPieces> {
  if (!hashWorkerAvailable()) return Promise.reject(new DepotsyncError('internal', 'hash worker: the native BLAKE3 addon is not loaded'));
  if (!shared || shared.dead) shared = new HashWorker(backend.nativeAddonPath!);
  return shared.hash(pieces);
}
