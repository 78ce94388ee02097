/*
 * A full garbage collection on request, for the few places that move gigabytes through one process
 * and know when a good moment has come (a depot sync's or bundle import's durable checkpoint).
 *
 * Why: what a depot holds live while it syncs a 4 GiB package is about 50 MB (22 MB of JavaScript
 * objects, 27 MB of pooled buffers), yet its RSS peaked at 231-254 MiB: V8 collects dead buffers only
 * after 64 MB more of them have piled up (the network's 16 KiB TLS reads are each a new buffer), and
 * lets the heap run far past what is live between collections. One full collection per checkpoint once
 * 128 MiB have been stored since the last (a few milliseconds against about a second of transfer;
 * never for a small sync, where a full collection of a large catalog would cost more) returns both: 220-222 MiB
 * (bench/depot-sync.ts, BENCH_ONLY=fresh BENCH_BYTES=4294967296, two runs each way).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

/** Run a full collection; false where the engine does not offer one (then nothing happens). */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    try {
      // The supported way to reach V8's gc() without starting node with --expose-gc.
      setFlagsFromString('--expose-gc');
      const f = runInNewContext('gc') as unknown;
      gc = typeof f === 'function' ? (f as () => void) : null;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  gc();
  return true;
}
