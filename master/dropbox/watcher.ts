import { mkdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { PublishResult } from '../publish/publish.js';
import { dropProblem, rejectDrop, removePublishedDrop, snapshotDrop, type DropSnapshot } from './drop.js';

/**
 * The drop folder: `M/dropbox/NAME/VERSION/` is published as NAME@VERSION once nothing
 * in it has changed for `settleMs`. A half-copied file is never published:
 *   1. every watcher event restarts the quiet period of its drop;
 *   2. after the quiet period the drop is snapshotted (names, sizes, mtimes), and again `recheckMs`
 *      later; only two equal snapshots go on (catches writes the watcher missed, e.g. on network shares);
 *   3. publish() itself refuses a file whose size changed while it was read; and if the drop changed
 *      while publishing failed, it is treated as still being written, not as bad.
 * A bad drop (bad name, a file where a folder belongs, a link pointing outside, an unreadable file,
 * content that conflicts with a published version) is moved to `M/dropbox-rejected/NAME/VERSION-<time>/`
 * with a REASON.txt, and logged. A published drop is REMOVED from the drop folder (its content is in
 * the chunk store and the catalog; the audit log records who and when).
 */
export interface DropboxOptions {
  dropbox: string;
  rejected: string;
  publish: (name: string, version: string, path: string) => Promise<PublishResult>;
  log: Logger;
  settleMs: number;
  /** Delay between the two snapshots of step 2. Default: a quarter of settleMs, 50 ms to 1 s. */
  recheckMs?: number;
  clockMs?: () => number;
  /** Poll instead of OS events (network file systems). */
  usePolling?: boolean;
  pollIntervalMs?: number;
  onOutcome?: (outcome: DropOutcome) => void;
  /** Each settle check of a drop and its verdict (observability; tests wait on it instead of sleeping). */
  onCheck?: (key: string, verdict: DropCheck) => void;
}

/**
 * settling: changed less than settleMs ago; rechecking: first snapshot taken; queued: going to publish; idle:
 * gone, empty or a package folder.
 */
export type DropCheck = 'settling' | 'rechecking' | 'queued' | 'idle';

export type DropOutcome =
  | { kind: 'published'; key: string; result: PublishResult }
  | { kind: 'rejected'; key: string; reason: string; movedTo: string };

interface DropState {
  lastChangeMs: number;
  timer?: NodeJS.Timeout;
  snapshot?: DropSnapshot;
}

export class DropboxWatcher {
  private readonly o: Required<
    Omit<DropboxOptions, 'onOutcome' | 'onCheck' | 'usePolling' | 'pollIntervalMs'>
  > &
    Pick<DropboxOptions, 'onOutcome' | 'onCheck' | 'usePolling' | 'pollIntervalMs'>;
  private readonly drops = new Map<string, DropState>();
  private watcher: FSWatcher | undefined;
  private queue: Promise<void> = Promise.resolve();
  private busy = new Set<string>();
  private closed = false;

  constructor(opts: DropboxOptions) {
    if (!Number.isInteger(opts.settleMs) || opts.settleMs < 0) {
      throw new DepotsyncError(
        'bad-input',
        `dropbox: settleMs must be an integer >= 0, got ${JSON.stringify(opts.settleMs)}`,
      );
    }
    const recheckMs = opts.recheckMs ?? Math.min(1000, Math.max(50, Math.floor(opts.settleMs / 4)));
    if (!Number.isInteger(recheckMs) || recheckMs < 1) {
      throw new DepotsyncError(
        'bad-input',
        `dropbox: recheckMs must be an integer >= 1, got ${JSON.stringify(opts.recheckMs)}`,
      );
    }
    this.o = {
      ...opts,
      recheckMs,
      clockMs: opts.clockMs ?? Date.now,
      log: opts.log.child({ component: 'master.dropbox' }),
    };
  }

  /** Start watching; resolves once the initial scan is done (drops already there are picked up too). */
  async start(): Promise<void> {
    await mkdir(this.o.dropbox, { recursive: true, mode: 0o700 });
    await mkdir(this.o.rejected, { recursive: true, mode: 0o700 });
    const w = watch(this.o.dropbox, {
      ignoreInitial: false,
      followSymlinks: false,
      persistent: true,
      depth: 64,
      ...(this.o.usePolling ? { usePolling: true, interval: this.o.pollIntervalMs ?? 1000 } : {}),
    });
    this.watcher = w;
    w.on('all', (_event, path) => this.touched(path));
    w.on('error', (e) => this.o.log.error({ err: (e as Error).message }, 'drop folder watcher error'));
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    this.o.log.info({ dropbox: this.o.dropbox, settleMs: this.o.settleMs }, 'watching the drop folder');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.drops.values()) clearTimeout(s.timer);
    this.drops.clear();
    await this.watcher?.close();
    await this.queue;
  }

  private touched(path: string): void {
    const rel = relative(this.o.dropbox, path);
    if (rel === '' || rel.startsWith('..')) return;
    const key = rel.split(sep).slice(0, 2).join('/');
    const state = this.drops.get(key) ?? { lastChangeMs: 0 };
    state.lastChangeMs = this.o.clockMs();
    delete state.snapshot;
    this.drops.set(key, state);
    this.schedule(key, state, this.o.settleMs);
  }

  private schedule(key: string, state: DropState, ms: number): void {
    if (this.closed) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(
      () =>
        void this.check(key).catch((e: unknown) =>
          this.o.log.error({ key, err: (e as Error).message }, 'drop check failed'),
        ),
      ms,
    );
    state.timer.unref();
  }

  private async check(key: string): Promise<void> {
    const state = this.drops.get(key);
    if (!state || this.closed) return;
    const quietMs = this.o.clockMs() - state.lastChangeMs;
    if (quietMs < this.o.settleMs || this.busy.has(key)) {
      this.o.onCheck?.(key, 'settling');
      return this.schedule(key, state, Math.max(this.o.recheckMs, this.o.settleMs - quietMs));
    }
    let snap: DropSnapshot | undefined;
    try {
      snap = await snapshotDrop(join(this.o.dropbox, ...key.split('/')));
    } catch (e) {
      // An unreadable folder inside the drop: it cannot be published as it is.
      this.drops.delete(key);
      this.enqueue(key, () => this.reject(key, key.split('/'), (e as Error).message));
      return;
    }
    if (this.drops.get(key) !== state) return; // touched again meanwhile: a newer check is scheduled
    if (!snap) {
      this.drops.delete(key); // gone (published, rejected, or removed by the operator)
      this.o.onCheck?.(key, 'idle');
      return;
    }
    // A package folder NAME/ is not a drop itself (its versions are), and an empty version folder has
    // nothing to publish yet: a file arriving in it wakes it up again.
    if ((!key.includes('/') && snap.isDirectory) || snap.files === 0) {
      this.drops.delete(key);
      this.o.onCheck?.(key, 'idle');
      return;
    }
    if (state.snapshot?.signature !== snap.signature) {
      state.snapshot = snap;
      this.o.onCheck?.(key, 'rechecking');
      return this.schedule(key, state, this.o.recheckMs);
    }
    this.drops.delete(key);
    this.o.onCheck?.(key, 'queued');
    const settled = snap;
    this.enqueue(key, () => this.process(key, settled));
  }

  /** One drop at a time: publishing is heavy, and the catalog takes one generation per change anyway. */
  private enqueue(key: string, job: () => Promise<void>): void {
    this.busy.add(key);
    this.queue = this.queue
      .then(job)
      .catch((e: unknown) =>
        this.o.log.error({ drop: key, err: (e as Error).message }, 'drop processing failed'),
      )
      .finally(() => this.busy.delete(key));
  }

  private async process(key: string, snap: DropSnapshot): Promise<void> {
    if (this.closed) return;
    const segments = key.split('/');
    const log = this.o.log.child({ drop: key });
    const problem = await dropProblem(this.o.dropbox, segments).catch(
      (e: unknown) => `cannot inspect the drop: ${(e as Error).message}`,
    );
    if (problem) return this.reject(key, segments, problem);
    const [name, version] = segments as [string, string];
    try {
      const result = await this.o.publish(name, version, join(this.o.dropbox, name, version));
      await removePublishedDrop(this.o.dropbox, segments);
      log.info(
        {
          name,
          version,
          generation: result.generation,
          unchanged: result.unchanged,
          newChunks: result.newChunks,
        },
        'drop published',
      );
      this.o.onOutcome?.({ kind: 'published', key, result });
    } catch (e) {
      const now = await snapshotDrop(join(this.o.dropbox, name, version)).catch(() => undefined);
      if (now && now.signature !== snap.signature) {
        // Still being written: not a bad drop. The watcher events (or this re-check) bring it back.
        log.info(
          { err: (e as Error).message },
          'drop changed while it was published; waiting for it to settle',
        );
        this.touched(join(this.o.dropbox, name, version));
        return;
      }
      const err = e as DepotsyncError;
      await this.reject(key, segments, err.hint ? `${err.message}; ${err.hint}` : err.message);
    }
  }

  private async reject(key: string, segments: string[], reason: string): Promise<void> {
    try {
      const movedTo = await rejectDrop(
        this.o.dropbox,
        this.o.rejected,
        segments,
        reason,
        new Date(this.o.clockMs()),
      );
      this.o.log.warn({ drop: key, reason, movedTo }, 'drop rejected');
      this.o.onOutcome?.({ kind: 'rejected', key, reason, movedTo });
    } catch (e) {
      this.o.log.error(
        { drop: key, reason, err: (e as Error).message },
        'drop rejected, but it could not be moved aside',
      );
    }
  }
}
