import type { ChunkInput } from './chunk-id.js';
import type { PutResult, PutStreamOptions } from './chunk-store.js';

/** What a ChunkStream writes into: `putStream` when the store has it, else one `putMany` per group. */
export interface StreamTarget {
  putMany(chunks: readonly ChunkInput[]): Promise<PutResult>;
  putStream?(groups: AsyncIterable<readonly ChunkInput[]>, opts?: PutStreamOptions): Promise<PutResult>;
}

export interface ChunkStreamOptions {
  /** Bytes between two durable commits (putStream's checkpoint): the most a crash makes re-fetched. */
  checkpointBytes?: number;
  /** Bytes of groups queued and not yet written before `add` waits (back-pressure on the producers). */
  maxQueuedBytes?: number;
  /** After each durable commit: the chunks and bytes (as handed to `add`) it made durable. */
  onDurable?: (chunks: number, bytes: number) => void;
}

export const CHUNK_STREAM_DEFAULTS = {
  checkpointBytes: 256 * 1024 * 1024,
  maxQueuedBytes: 64 * 1024 * 1024,
} as const;

interface Group {
  chunks: readonly ChunkInput[];
  bytes: number;
  written: () => void;
}

/**
 * The push side of `ChunkStore.putStream`, for producers that receive verified chunks over time and
 * from several places at once (a depot sync's parallel batches, a bundle import): `add` queues a group
 * and resolves once its bytes are written to the pack (its buffers may then be reused); the store
 * fdatasyncs and indexes a checkpoint every `checkpointBytes`, so the disk streams instead of waiting
 * for an fdatasync per group. Every guarantee of putMany holds: a chunk is indexed (exists) only once
 * durable; a crash loses at most the open checkpoint, which the next run fetches again.
 *
 * Chunks must have been hashed by this process (`hashedChunk`, `verifiedChunk`). The first failure
 * (disk full) rejects every pending and later `add`, and `end`. A store without `putStream` (a test
 * wrapper injecting faults into putMany) gets one putMany per group, with the same callbacks.
 */
export class ChunkStream {
  private readonly queue: Group[] = [];
  private queuedBytes = 0;
  private readonly spaceWaiters: Array<() => void> = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: unknown;
  private readonly done: Promise<PutResult>;
  /** Chunks and bytes written to the pack and not yet durable (counts only: the data is not kept). */
  private pendingDurable = { chunks: 0, bytes: 0 };
  private readonly o: Required<Omit<ChunkStreamOptions, 'onDurable'>> & Pick<ChunkStreamOptions, 'onDurable'>;

  constructor(
    private readonly store: StreamTarget,
    opts: ChunkStreamOptions = {},
  ) {
    this.o = { ...CHUNK_STREAM_DEFAULTS, ...opts };
    this.done = this.run();
    this.done.catch(() => undefined); // observed through add/end
  }

  /** Queue a group; resolves once it is written (not yet durable), rejects if the stream failed. */
  async add(chunks: readonly ChunkInput[]): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.ended) throw new Error('ChunkStream: add after end');
    if (chunks.length === 0) return;
    while (this.queuedBytes >= this.o.maxQueuedBytes && this.failure === undefined) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (this.failure !== undefined) throw this.failure;
    let bytes = 0;
    for (const c of chunks) bytes += c.data.length;
    let written!: () => void;
    let failed!: (e: unknown) => void;
    const p = new Promise<void>((resolve, reject) => {
      written = resolve;
      failed = reject;
    });
    this.queue.push({ chunks, bytes, written });
    this.queuedBytes += bytes;
    this.pendingRejects.add(failed);
    p.then(
      () => this.pendingRejects.delete(failed),
      () => this.pendingRejects.delete(failed),
    );
    this.wake?.();
    return p;
  }

  private readonly pendingRejects = new Set<(e: unknown) => void>();

  /** No more groups: waits for the last checkpoint; rejects with the stream's failure. */
  async end(): Promise<PutResult> {
    this.ended = true;
    this.wake?.();
    return this.done;
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    for (const r of this.pendingRejects) r(e);
    this.pendingRejects.clear();
    for (const w of this.spaceWaiters.splice(0)) w();
  }

  private take(): Group {
    const g = this.queue.shift() as Group;
    this.queuedBytes -= g.bytes;
    while (this.spaceWaiters.length > 0 && this.queuedBytes < this.o.maxQueuedBytes)
      this.spaceWaiters.shift()!();
    return g;
  }

  /** Yields queued groups as putStream pulls them; `order` maps each one's index to it until written. */
  private async *groups(order: Map<number, Group>): AsyncGenerator<readonly ChunkInput[]> {
    for (let i = 0; ;) {
      if (this.queue.length > 0) {
        const g = this.take();
        order.set(i++, g);
        yield g.chunks;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private written(g: Group): void {
    this.pendingDurable.chunks += g.chunks.length;
    this.pendingDurable.bytes += g.bytes;
    g.written();
  }

  private durable(): void {
    const { chunks, bytes } = this.pendingDurable;
    this.pendingDurable = { chunks: 0, bytes: 0 };
    if (chunks > 0) this.o.onDurable?.(chunks, bytes);
  }

  private async run(): Promise<PutResult> {
    try {
      if (this.store.putStream) {
        const order = new Map<number, Group>();
        const r = await this.store.putStream(this.groups(order), {
          checkpointBytes: this.o.checkpointBytes,
          onWritten: (i) => {
            const g = order.get(i) as Group;
            order.delete(i);
            this.written(g);
          },
          onDurable: () => this.durable(),
        });
        return r;
      }
      const total: PutResult = { written: 0, bytesWritten: 0, storedBytes: 0 };
      const order = new Map<number, Group>();
      let i = 0;
      for await (const chunks of this.groups(order)) {
        const r = await this.store.putMany(chunks);
        total.written += r.written;
        total.bytesWritten += r.bytesWritten;
        total.storedBytes += r.storedBytes;
        // putMany is durable on return: written and durable at once.
        const g = order.get(i) as Group;
        order.delete(i++);
        this.written(g);
        this.durable();
      }
      return total;
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }
}
