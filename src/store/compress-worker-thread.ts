import { workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { compressChunk } from './compress-chunk.js';

/**
 * A helper of the chunk worker (chunk-worker-thread.ts): compresses a share of each reply's chunks on
 * a second core while the chunk worker compresses the rest. It answers on its port, then raises the
 * shared flag the chunk worker waits on (the chunk worker takes the answer synchronously, so its
 * replies keep their order).
 */
export interface CompressRequest {
  level: number;
  /** The chunks, one after the other. */
  data: ArrayBuffer;
  lengths: number[];
}
export type CompressReply =
  { frames: ArrayBuffer; spans: number[]; error?: undefined } | { error: string; frames?: undefined };

const { port, flag } = workerData as { port: MessagePort; flag: SharedArrayBuffer };
const done = new Int32Array(flag);

port.on('message', (m: CompressRequest) => {
  let out: CompressReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const frames: Array<Buffer | null> = [];
    let at = 0;
    for (const len of m.lengths) {
      frames.push(compressChunk(new Uint8Array(m.data, at, len), m.level));
      at += len;
    }
    const all = new Uint8Array(frames.reduce((n, f) => n + (f ? f.length : 0), 0));
    const spans: number[] = [];
    let w = 0;
    for (const f of frames) {
      if (!f) {
        spans.push(-1, 0);
        continue;
      }
      all.set(f, w);
      spans.push(w, f.length);
      w += f.length;
    }
    out = { frames: all.buffer, spans };
    transfer = [all.buffer];
  } catch (e) {
    out = { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  port.postMessage(out, transfer);
  Atomics.store(done, 0, 1);
  Atomics.notify(done, 0);
});
