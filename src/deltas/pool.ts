import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DepotsyncError } from '../errors.js';

/**
 * zstd chunk deltas computed on worker threads (worker-thread.ts), a bounded number at a time, so that
 * neither a delta request nor the background computation after a publish holds the serving thread.
 * `run` resolves undefined when the queue is full: the caller then answers without a zstd delta (the
 * byte delta or the whole chunk) rather than making a client wait behind the backlog.
 */
export interface DeltaJob {
  seq: number;
  base: ArrayBuffer;
  target: ArrayBuffer;
  level: number;
  /** Level of the plain compression the delta is compared with. */
  wholeLevel: number;
}

export type DeltaJobReply =
  { seq: number; frame: ArrayBuffer; alone: number; error?: undefined } | { seq: number; error: string };

export interface DeltaResult {
  /** The zstd frame of the target against the base. */
  frame: Buffer;
  /** Bytes of the target compressed alone at `wholeLevel`. */
  alone: number;
}

export interface DeltaPoolOptions {
  workers: number;
  /** Jobs waiting beyond the running ones; more are refused (run resolves undefined). */
  maxQueued: number;
  /** Nice value of the worker threads (0 normal, 19 lowest). */
  nice: number;
}

function workerFile(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./worker-thread.js', here);
  const built = new URL('../../dist/src/deltas/worker-thread.js', here);
  if (!existsSync(fileURLToPath(built))) {
    throw new DepotsyncError(
      'internal',
      `the delta worker is not built (${fileURLToPath(built)} is missing)`,
      {
        hint: 'run `npm run build`',
      },
    );
  }
  return built;
}

interface Slot {
  worker: Worker;
  busy: boolean;
}

interface Waiting {
  job: Omit<DeltaJob, 'seq'>;
  resolve: (r: DeltaResult | undefined) => void;
  reject: (e: unknown) => void;
}

export class DeltaPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Waiting[] = [];
  private readonly pending = new Map<number, Waiting & { slot: Slot }>();
  private seq = 0;
  private closed = false;

  constructor(readonly opts: DeltaPoolOptions) {}

  /** Jobs running or waiting. */
  get load(): number {
    return this.pending.size + this.queue.length;
  }

  run(base: Uint8Array, target: Uint8Array, level: number, wholeLevel = 3): Promise<DeltaResult | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    if (this.queue.length >= this.opts.maxQueued && !this.idleSlot()) return Promise.resolve(undefined);
    // Copies: the caller's buffers may be views of pooled or shared memory.
    const job = {
      base: Uint8Array.from(base).buffer,
      target: Uint8Array.from(target).buffer,
      level,
      wholeLevel,
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.pump();
    });
  }

  close(): Promise<void> {
    this.closed = true;
    for (const w of this.queue.splice(0)) w.resolve(undefined);
    return Promise.all(this.slots.map((s) => s.worker.terminate())).then(() => undefined);
  }

  private idleSlot(): Slot | undefined {
    const idle = this.slots.find((s) => !s.busy);
    if (idle) return idle;
    if (this.slots.length < Math.max(1, this.opts.workers)) {
      const worker = new Worker(workerFile(), { workerData: { nice: this.opts.nice } });
      const slot: Slot = { worker, busy: false };
      worker.unref();
      worker.on('message', (m: DeltaJobReply) => this.settle(m));
      worker.on('error', (e) => this.fail(slot, e));
      worker.on('exit', (code) => this.fail(slot, new Error(`delta worker exited with code ${code}`)));
      this.slots.push(slot);
      return slot;
    }
    return undefined;
  }

  private pump(): void {
    while (this.queue.length) {
      const slot = this.idleSlot();
      if (!slot) return;
      const w = this.queue.shift()!;
      const seq = ++this.seq;
      slot.busy = true;
      slot.worker.ref();
      this.pending.set(seq, { ...w, slot });
      slot.worker.postMessage({ seq, ...w.job } satisfies DeltaJob, [w.job.base, w.job.target]);
    }
  }

  private settle(m: DeltaJobReply): void {
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    p.slot.busy = false;
    p.slot.worker.unref();
    if (m.error !== undefined) p.reject(new DepotsyncError('internal', `delta worker: ${m.error}`));
    else p.resolve({ frame: Buffer.from(m.frame), alone: m.alone });
    this.pump();
  }

  private fail(slot: Slot, e: Error): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    for (const [seq, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(seq);
      if (this.closed) p.resolve(undefined);
      else p.reject(new DepotsyncError('internal', `delta worker failed: ${e.message}`, { cause: e }));
    }
    if (!this.closed) this.pump();
  }
}
