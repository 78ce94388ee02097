import { stat } from 'node:fs/promises';
import { Chunker, chunkFile, chunkStream, type ChunkerOptions, type ChunkRecord } from '../chunk/fastcdc.js';
import { BlockPool, DEFAULT_READ_BLOCK_BYTES, readBlocks } from '../chunk/read-blocks.js';
import { intOption } from '../config/validate.js';
import { fromSystemError } from '../errors.js';
import { hashedChunk, workerHashedChunk, type ChunkInput } from './chunk-id.js';
import type { ChunkStore } from './chunk-store.js';
import { chunkWorkerAvailable, ChunkWorkerStream, type ChunkedBlock } from './chunk-worker.js';

export interface IngestOptions {
  chunker?: Partial<ChunkerOptions>;
  /** Bytes of chunks per group handed to the store's stream (ChunkStore.putStream). */
  batchBytes?: number;
  /** Called after each durable checkpoint, with the input bytes stored so far. */
  onProgress?: (bytesDone: number) => void;
  /**
   * Chunk and hash on a worker thread while this thread reads, writes and indexes (ingestFile only;
   * default: for files of at least `DEFAULT_INGEST.workerMinBytes`, when the native BLAKE3 addon is
   * loaded). The result is the same either way.
   */
  hashWorker?: boolean;
  /**
   * Bytes between two durable commits of the store's stream (default
   * `DEFAULT_INGEST.checkpointBytes`; ChunkStore.putStream).
   */
  checkpointBytes?: number;
  /** Bytes per read of the file on the worker path (default DEFAULT_READ_BLOCK_BYTES, 4 MiB). */
  readBlockBytes?: number;
}

export interface IngestResult {
  size: number;
  /** Every chunk of the input in order (repeats included): the file's chunk list for its manifest. */
  chunks: Array<{ id: string; length: number }>;
  /** Chunks and bytes this ingest added to the store (the rest were already there). */
  newChunks: number;
  newBytes: number;
}

export const DEFAULT_INGEST = {
  /**
   * One read block's worth. A block goes back to the pool only once the batches holding its chunks are
   * written, so the batch size sets how many blocks an ingest has out (about 9 at 4 MiB, 26 at 32 MiB),
   * and fresh blocks cost page faults; the pack writes do not care (writeback and checkpoints go by bytes).
   */
  batchBytes: 4 * 1024 * 1024,
  /** Batches queued for the store's stream before this thread waits for the pack writes. */
  putsInFlight: 2,
  /** Read blocks out to the chunk worker and not yet back. */
  hashJobsInFlight: 4,
  /** Smaller files hash in-thread: the worker round trip would cost more than it saves. */
  workerMinBytes: 8 * 1024 * 1024,
  /**
   * Bytes between two durable checkpoints of the store's stream: the most a crash makes re-done. While
   * a checkpoint waits for its fdatasync and commit the chunk worker stalls for want of free read
   * blocks, so they are rare: a 1 GiB file has only the closing one, as cp + sync has its sync.
   */
  checkpointBytes: 1024 * 1024 * 1024,
} as const;

export const DEFAULT_INGEST_BATCH_BYTES = DEFAULT_INGEST.batchBytes;

/**
 * Chunk, hash and durably store a file, streaming (memory ≈ (putsInFlight + 1) × batchBytes plus
 * hashJobsInFlight read blocks).
 */
export async function ingestFile(
  store: ChunkStore,
  path: string,
  opts: IngestOptions = {},
): Promise<IngestResult> {
  const chunker = new Chunker(opts.chunker ?? {}); // options checked before the file is touched
  const sink = new BatchSink(store, opts);
  let useWorker = opts.hashWorker ?? true;
  if (useWorker && opts.hashWorker === undefined) {
    const size = await stat(path).then(
      (s) => s.size,
      (e: unknown) => Promise.reject(fromSystemError(e, `reading ${path}`)),
    );
    useWorker = size >= DEFAULT_INGEST.workerMinBytes;
  }
  if (!useWorker || !chunkWorkerAvailable()) return sink.run(chunkFile(path, chunker.options));
  const blockBytes = intOption(
    'ingest',
    'readBlockBytes',
    opts.readBlockBytes ?? DEFAULT_READ_BLOCK_BYTES,
    4096,
    1 << 30,
  );
  const pool = new BlockPool(blockBytes);
  const worker = new ChunkWorkerStream(chunker.options, store.compressLevel);
  return sink.runPipelined(readBlocks(path, blockBytes, pool), worker, pool);
}

/** The same for any byte stream. */
export async function ingestStream(
  store: ChunkStore,
  source: AsyncIterable<Uint8Array>,
  opts: IngestOptions = {},
): Promise<IngestResult> {
  return new BatchSink(store, opts).run(chunkStream(source, opts.chunker ?? {}));
}

/** The same for bytes in memory (tests, small inputs). */
export async function ingestBuffer(
  store: ChunkStore,
  data: Uint8Array,
  opts: IngestOptions = {},
): Promise<IngestResult> {
  return ingestStream(
    store,
    (async function* () {
      yield data;
    })(),
    opts,
  );
}

/**
 * The ingest pipeline (figures in bench/README.md, `ingest`). For a large file the
 * work is spread over three kinds of threads:
 *   - libuv: the next 4 MiB read of the file into a recycled block (read-blocks.ts: fresh memory is
 *     dear on this VM), and the pack writes and fdatasyncs;
 *   - the chunk worker (chunk-worker.ts): FastCDC (gear scan in WebAssembly, gear-wasm.ts) and BLAKE3
 *     of each chunk right after it is cut, in one call per chunk (backend.ts, `oneShot`); blocks go
 *     there and back by transfer, not copied;
 *   - this thread: batching, the index lookups, and one `ChunkStore.putStream` per ingest: records
 *     appended as batches come, writeback started every 32 MiB without waiting, one fdatasync and one
 *     index commit per checkpoint (`DEFAULT_INGEST.checkpointBytes`; the rows go in while that
 *     fdatasync runs).
 * The chunk worker is the critical path (where the CPU goes: bench/README.md, `ingest`).
 * Every guarantee of `putMany` holds: a chunk's index row is committed only after its bytes are
 * fdatasynced, a failed write fails the ingest, nothing is half-visible. Each chunk is hashed once, as
 * it is cut; the store trusts those ids (`hashedChunk`, `workerHashedChunk`).
 */
class BatchSink {
  private readonly batchBytes: number;
  private readonly result: IngestResult = { size: 0, chunks: [], newChunks: 0, newBytes: 0 };
  private batch: ChunkInput[] = [];
  private pending = 0;
  /** Groups handed to the store's stream and not yet written (bounded: DEFAULT_INGEST.putsInFlight). */
  private readonly queue: ChunkInput[][] = [];
  private batchesQueued = 0;
  private batchesWritten = 0;
  private ended = false;
  private failure: unknown;
  private waiters: Array<() => void> = [];
  /** Input bytes of each queued batch, and of the batches written so far (durable at the next checkpoint). */
  private readonly queuedBytes: number[] = [];
  private writtenBytes = 0;
  private readonly releases: Array<{ batch: number; fn: () => void }> = [];

  constructor(
    private readonly store: ChunkStore,
    private readonly opts: IngestOptions,
  ) {
    this.batchBytes = intOption(
      'ingest',
      'batchBytes',
      opts.batchBytes ?? DEFAULT_INGEST.batchBytes,
      1,
      2 ** 31,
    );
  }

  /** Chunks hashed on this thread. */
  async run(records: AsyncIterable<ChunkRecord>): Promise<IngestResult> {
    return this.guard(async () => {
      for await (const rec of records) await this.add(hashedChunk(rec.data));
    });
  }

  /**
   * Blocks chunked and hashed on the worker, a few blocks ahead, while this thread reads the next
   * ones and stores what came back. A block goes back to the pool once every batch holding one of its
   * chunks is stored (the pack write copied it); chunks that straddle two blocks are the worker's own
   * copies and are simply dropped when stored.
   */
  async runPipelined(
    blocks: AsyncIterable<Buffer>,
    worker: ChunkWorkerStream,
    pool: BlockPool,
  ): Promise<IngestResult> {
    const jobs: Array<Promise<ChunkedBlock>> = [];
    const queue = (job: Promise<ChunkedBlock>): void => {
      job.catch(() => {}); // awaited in order below; this only keeps it from counting as unhandled meanwhile
      jobs.push(job);
    };
    const take = async (job: Promise<ChunkedBlock>): Promise<void> => {
      const { ids, pieces, frames, block } = await job;
      for (let k = 0; k < ids.length; k++)
        await this.add(workerHashedChunk(ids[k]!, pieces[k]!, frames?.[k]));
      if (!block) return;
      if (pieces.some((p) => p.buffer === block)) this.releaseAfterBatch(() => pool.give(block));
      else pool.give(block); // no chunk is a view of it (all its bytes went into the chunker's carry-over)
    };
    try {
      return await this.guard(async () => {
        for await (const block of blocks) {
          queue(worker.push(block));
          while (jobs.length > DEFAULT_INGEST.hashJobsInFlight) await take(jobs.shift()!);
        }
        queue(worker.finish());
        while (jobs.length > 0) await take(jobs.shift()!);
      });
    } finally {
      worker.close(); // after a failure: the worker drops this input's chunker state
      await Promise.allSettled(jobs); // on failure: no job left running over buffers we drop
    }
  }

  /** Run `fn` once the batch being filled now (and every one before it) is written to the pack. */
  private releaseAfterBatch(fn: () => void): void {
    this.releases.push({ batch: this.batchesQueued, fn });
  }

  private async add(chunk: ChunkInput): Promise<void> {
    const r = this.result;
    r.chunks.push({ id: chunk.id, length: chunk.data.length });
    r.size += chunk.data.length;
    this.batch.push(chunk);
    this.pending += chunk.data.length;
    if (this.pending >= this.batchBytes) await this.flush();
  }

  /** Hand the batch to the store's stream; wait only while `putsInFlight` batches wait to be written. */
  private async flush(): Promise<void> {
    while (this.queue.length >= DEFAULT_INGEST.putsInFlight && this.failure === undefined)
      await this.waitForChange();
    if (this.failure !== undefined) throw this.failure;
    if (this.batch.length === 0) return;
    this.queue.push(this.batch);
    this.queuedBytes.push(this.pending);
    this.batchesQueued++;
    this.batch = [];
    this.pending = 0;
    this.poke();
  }

  private waitForChange(): Promise<void> {
    return new Promise<void>((r) => this.waiters.push(r));
  }

  private poke(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** What the store's stream reads: the queued batches, until the producer ends. */
  private async *groups(): AsyncGenerator<ChunkInput[]> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        this.poke();
        yield next;
        continue;
      }
      if (this.ended) return;
      await this.waitForChange();
    }
  }

  private written(): void {
    this.batchesWritten++;
    this.writtenBytes += this.queuedBytes.shift() ?? 0;
    while (this.releases.length > 0 && this.releases[0]!.batch < this.batchesWritten)
      this.releases.shift()!.fn();
    this.poke();
  }

  private async guard(produce: () => Promise<void>): Promise<IngestResult> {
    // One durable stream per ingest (ChunkStore.putStream): checkpoints, not an fdatasync per batch.
    const stored = this.store.putStream(this.groups(), {
      checkpointBytes: this.opts.checkpointBytes ?? DEFAULT_INGEST.checkpointBytes,
      onWritten: () => this.written(),
      onDurable: () => this.opts.onProgress?.(this.writtenBytes),
    });
    stored.catch((e: unknown) => {
      this.failure ??= e;
      this.poke();
    });
    try {
      await produce();
      await this.flush();
    } catch (e) {
      this.failure ??= e;
    } finally {
      this.ended = true;
      this.poke();
    }
    // On a read or chunking error the stream still ends cleanly, so fail here instead of committing a
    // partial ingest's last checkpoint as if it were whole (its chunks are valid; GC removes them).
    const r = await stored.catch((e: unknown) => Promise.reject(this.failure ?? e));
    if (this.failure !== undefined) throw this.failure;
    this.result.newChunks = r.written;
    this.result.newBytes = r.bytesWritten;
    return this.result;
  }
}
