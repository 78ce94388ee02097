/**
 * Recycled read buffers in power-of-two size classes, for reads whose size varies (the runs of
 * back-to-back chunk records a batch response reads: 64 KiB to 1 MiB). Fresh memory is faulted in
 * page by page, and page faults are dear in this VM: with fresh buffers they took a quarter of the
 * depot's serving CPU (bench/README.md, `agent-load`). Whoever knows when a buffer is no longer
 * needed (here: the socket write of its last record has completed) gives it back; a buffer that is
 * never given back is simply collected.
 * What the pool keeps is bounded by `maxFreeBytes`.
 */
export class SizedBufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;

  constructor(
    readonly minBytes = 64 * 1024,
    readonly maxBytes = 1024 * 1024,
    readonly maxFreeBytes = 64 * 1024 * 1024,
  ) {}

  /** The size class of a request: the next power of two from `minBytes`; undefined above `maxBytes`. */
  classOf(n: number): number | undefined {
    if (n > this.maxBytes) return undefined;
    let c = this.minBytes;
    while (c < n) c *= 2;
    return c;
  }

  /** A buffer of exactly `n` bytes, a view of a pooled block when `n` fits a class. */
  take(n: number): { buf: Buffer; block?: ArrayBuffer } {
    const c = this.classOf(n);
    if (c === undefined) return { buf: Buffer.allocUnsafeSlow(n) };
    const block = this.free.get(c)?.pop();
    if (block) {
      this.freeBytes -= block.byteLength;
      return { buf: Buffer.from(block, 0, n), block };
    }
    const fresh = Buffer.allocUnsafeSlow(c);
    return { buf: fresh.subarray(0, n), block: fresh.buffer };
  }

  /** Give a block back (its views must no longer be in use). */
  give(block: ArrayBuffer): void {
    const c = block.byteLength;
    if (this.classOf(c) !== c || this.freeBytes + c > this.maxFreeBytes) return;
    let list = this.free.get(c);
    if (!list) this.free.set(c, (list = []));
    list.push(block);
    this.freeBytes += c;
  }

  get pooledBytes(): number {
    return this.freeBytes;
  }
}
