import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { compress, delta } from '../compress/zstd.js';
import type { DeltaJob, DeltaJobReply } from './pool.js';

/**
 * A zstd delta worker (started by pool.ts): encodes a chunk against its base and, to judge whether the
 * delta pays off, alone. On Linux a nice value set here applies to this thread only, so the master's
 * serving thread keeps its priority while deltas are computed in the background.
 */
const port = parentPort;
if (!port) throw new Error('worker-thread.ts runs as a worker thread only (see pool.ts)');
const nice = (workerData as { nice?: number } | undefined)?.nice ?? 0;
if (nice > 0) {
  try {
    setPriority(nice);
  } catch {
    // Not permitted here: the bounded number of workers still leaves the other cores to the server.
  }
}

port.on('message', (m: DeltaJob) => {
  let reply: DeltaJobReply;
  try {
    const base = new Uint8Array(m.base);
    const target = new Uint8Array(m.target);
    const frame = delta(base, target, m.level);
    const alone = compress(target, m.wholeLevel).length;
    const out = new Uint8Array(frame.length);
    out.set(frame);
    reply = { seq: m.seq, frame: out.buffer, alone };
  } catch (e) {
    reply = { seq: m.seq, error: (e as Error).message };
  }
  port.postMessage(reply, 'frame' in reply ? [reply.frame] : []);
});
