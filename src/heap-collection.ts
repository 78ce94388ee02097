/*
 * A full garbage collection on request, for the few places that move gigabytes through one process
 * and know when a good moment has come (a depot sync's or bundle import's durable checkpoint).
 *
 * Why: what a depot holds live while it syncs is small, yet its RSS ran far above it: V8 collects dead
 * buffers only after 64 MB more of them have piled up (each TLS read is a new buffer) and lets the heap
 * run far past what is live. One full collection per checkpoint once 128 MiB have been stored since the
 * last (cheap against the transfer; never for a small sync, where collecting a large catalog would cost
 * more) keeps a 4 GiB sync under its memory goal (bench/README.md, `depot-sync`).
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
