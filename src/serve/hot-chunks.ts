import type { ChunkEncoding } from '../store/chunk-store.js';
import type { ChunkReader, ReadRecord } from './chunk-reader.js';

interface Hot {
  data: Buffer;
  encoding: ChunkEncoding;
  plainLength: number;
}

type ReadOptions = Parameters<ChunkReader['readMany']>[1];

/**
 * The chunks many clients are asking for at the same time, kept in memory (least recently used out).
 * When a new package goes out, hundreds of agents fetch the same chunks within seconds of each other:
 * each one otherwise costs an index lookup and a pack read per client (a fifth of the depot's CPU at
 * 200 agents, bench/agent-load.ts). A chunk's bytes never change (its id is their hash), so an entry is
 * never stale. Only chunks asked for a second time while still remembered are kept: a single large
 * fetch (a child depot's sync, one agent) passes through without copying anything into memory.
 * Chunks are kept as they were read (stored form, or plain) with their encoding: the batch writer reads
 * the stored form only.
 */
export class HotChunks {
  private readonly chunks = new Map<string, Hot>();
  private bytes = 0;
  /** Ids asked for once recently (insertion order: oldest first). */
  private readonly seen = new Set<string>();

  constructor(
    readonly maxBytes: number,
    /**
     * Checked before a chunk is kept (the read API passes a BLAKE3 comparison with the id when it
     * verifies on serve): whatever the store returned, only bytes that match their id stay in memory,
     * however long they stay.
     */
    private readonly check?: (
      id: string,
      data: Buffer,
      encoding: ChunkEncoding,
      plainLength: number,
    ) => boolean,
    /** How many once-asked ids are remembered for admission. */
    private readonly maxSeen = Math.max(1024, Math.ceil(maxBytes / 16384)),
  ) {}

  get size(): number {
    return this.chunks.size;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /**
   * The records of `ids` in order: hot ones from memory, runs of the others from `reader` (with
   * `opts`). Records read from the store that came back whole are offered to the hot set.
   */
  async *readMany(
    reader: Pick<ChunkReader, 'readMany'>,
    ids: readonly string[],
    opts: ReadOptions,
  ): AsyncGenerator<ReadRecord> {
    if (this.maxBytes <= 0) {
      yield* reader.readMany(ids, opts);
      return;
    }
    let i = 0;
    while (i < ids.length) {
      const hot = this.take(ids[i] as string);
      if (hot) {
        yield { id: ids[i] as string, ...hot };
        i++;
        continue;
      }
      let j = i + 1;
      while (j < ids.length && !this.chunks.has(ids[j] as string)) j++;
      for await (const r of reader.readMany(ids.slice(i, j), opts)) {
        if (r.data && !r.problem)
          this.offer(r.id, r.data, r.encoding ?? 'plain', r.plainLength ?? r.data.length);
        yield r;
      }
      i = j;
    }
  }

  /** A hot chunk's bytes (marked as just used), or undefined. */
  private take(id: string): Hot | undefined {
    const data = this.chunks.get(id);
    if (data) {
      this.chunks.delete(id);
      this.chunks.set(id, data);
    }
    return data;
  }

  /** Keep a copy of `data` if `id` was asked for before (its buffer may be recycled after this call). */
  private offer(id: string, data: Buffer, encoding: ChunkEncoding, plainLength: number): void {
    if (this.chunks.has(id) || data.length > this.maxBytes / 8) return;
    if (!this.seen.has(id)) {
      this.seen.add(id);
      if (this.seen.size > this.maxSeen) this.seen.delete(this.seen.values().next().value as string);
      return;
    }
    this.seen.delete(id);
    if (this.check && !this.check(id, data, encoding, plainLength)) return;
    this.chunks.set(id, { data: Buffer.from(data), encoding, plainLength });
    this.bytes += data.length;
    while (this.bytes > this.maxBytes) {
      const [oldId, old] = this.chunks.entries().next().value as [string, Hot];
      this.chunks.delete(oldId);
      this.bytes -= old.data.length;
    }
  }
}
