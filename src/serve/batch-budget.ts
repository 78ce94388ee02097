/**
 * Memory and CPU bounds of the batch route when many clients fetch at once (200 agents on one depot):
 *  - `BatchBudget` splits one memory budget between the batch responses in flight, so read-ahead and
 *    socket buffering shrink as connections grow instead of multiplying (4 MiB × 200 would be 800 MiB);
 *  - `RecentlyVerified` remembers chunks re-hashed a moment ago, so the same popular chunk is not
 *    re-hashed once per client: the check still runs once per `ttlMs` for every chunk served, and the
 *    scrub re-hashes everything on its own schedule.
 */

export interface BatchShare {
  /** Largest single read of back-to-back records. */
  runBytes: number;
  /** Reads in flight ahead of the record being written. */
  aheadRuns: number;
  /** Bytes written before the socket is uncorked, and most bytes left queued on it before waiting. */
  flushBytes: number;
  release(): void;
}

const MIN_RUN_BYTES = 64 * 1024;
const MAX_RUN_BYTES = 1024 * 1024;

export class BatchBudget {
  private active = 0;

  constructor(private readonly totalBytes: number) {
    if (!Number.isSafeInteger(totalBytes) || totalBytes < MIN_RUN_BYTES) {
      throw new RangeError(
        `batch memory budget: expected an integer ≥ ${MIN_RUN_BYTES} bytes, got ${totalBytes}`,
      );
    }
  }

  /** A share for one response, sized by how many are in flight now (at least one 64 KiB run). */
  acquire(): BatchShare {
    this.active++;
    const share = Math.floor(this.totalBytes / this.active);
    const runBytes = Math.max(MIN_RUN_BYTES, Math.min(MAX_RUN_BYTES, Math.floor(share / 4 / 4096) * 4096));
    const aheadRuns = Math.max(1, Math.min(4, Math.floor(share / runBytes) - 2));
    let released = false;
    return {
      runBytes,
      aheadRuns,
      flushBytes: runBytes,
      release: () => {
        if (released) return;
        released = true;
        this.active--;
      },
    };
  }

  get inFlight(): number {
    return this.active;
  }
}

export class RecentlyVerified {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Was `id` re-hashed and found intact less than `ttlMs` ago? */
  fresh(id: string): boolean {
    const at = this.seen.get(id);
    if (at === undefined) return false;
    if (this.now() - at < this.ttlMs) return true;
    this.seen.delete(id);
    return false;
  }

  add(id: string): void {
    this.seen.delete(id);
    this.seen.set(id, this.now());
    // Oldest first (insertion order): drop beyond the bound.
    while (this.seen.size > this.maxEntries) this.seen.delete(this.seen.keys().next().value as string);
  }
}
