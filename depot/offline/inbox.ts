import { randomBytes } from 'node:crypto';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { BundleFile } from './bundle-file.js';
import { DEFAULT_INBOX } from '../config.js';
import type { ImportResult } from './import.js';

export interface InboxOptions {
  inbox: string;
  importFile: (path: string) => Promise<ImportResult>;
  log: Logger;
  /** A file must keep its size and mtime this long before it is looked at. */
  settleMs: number;
  /** A file shorter than its header declares, unchanged this long, is refused as truncated. */
  stalledMs: number;
  /** A transient failure (another sync holds the lock, a full disk) is retried after this long. */
  retryMs: number;
  clockMs?: () => number;
  usePolling?: boolean;
  onOutcome?: (o: InboxOutcome) => void;
  /** Each settle check and its verdict (tests wait on it instead of sleeping). */
  onCheck?: (name: string, verdict: InboxCheck) => void;
}

/** settleMs and stalledMs come from depot.json (`inbox`, depot/config.ts); these are their defaults. */
export const INBOX_DEFAULTS = { ...DEFAULT_INBOX, retryMs: 60_000 } as const;

/**
 * settling: changed recently; growing: shorter than its header declares; queued: going to
 * import; retry: transient failure.
 */
export type InboxCheck = 'settling' | 'growing' | 'queued' | 'retry' | 'gone';

export type InboxOutcome =
  | { kind: 'imported'; name: string; result: ImportResult; movedTo: string }
  | { kind: 'rejected'; name: string; reason: string; movedTo: string };

interface FileState {
  size: number;
  mtimeMs: number;
  changedAt: number;
  timer?: NodeJS.Timeout;
}

/**
 * The inbox: `D/inbox/FILE` is imported once its copy has finished, and never half:
 *   1. every watcher event restarts the file's quiet period; the check itself compares size and mtime
 *      with the last look (catches writes the watcher missed);
 *   2. after `settleMs` of quiet, the header and table of contents must decode and the file must be
 *      exactly as long as the table declares; a shorter file is still being copied (or was cut: after
 *      `stalledMs` it is refused as truncated);
 *   3. the import itself verifies everything again, exactly as `depot import` does.
 * Imported files move to `inbox/done/`, refused ones to `inbox/rejected/` with `FILE.reason.txt`.
 * Dot files (temporary names of copy tools) are ignored.
 */
export class InboxWatcher {
  private readonly files = new Map<string, FileState>();
  private watcher: FSWatcher | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly busy = new Set<string>();
  private closed = false;
  private readonly clock: () => number;
  readonly done: string;
  readonly rejected: string;

  constructor(private readonly o: InboxOptions) {
    for (const k of ['settleMs', 'stalledMs', 'retryMs'] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 0)
        throw new DepotsyncError(
          'bad-input',
          `inbox: ${k} must be an integer >= 0, got ${JSON.stringify(o[k])}`,
        );
    }
    this.clock = o.clockMs ?? Date.now;
    this.done = join(o.inbox, 'done');
    this.rejected = join(o.inbox, 'rejected');
  }

  /** The timing in effect (depot.json `inbox`, else the defaults). */
  get settings(): { settleMs: number; stalledMs: number; retryMs: number } {
    return { settleMs: this.o.settleMs, stalledMs: this.o.stalledMs, retryMs: this.o.retryMs };
  }

  async start(): Promise<void> {
    for (const d of [this.o.inbox, this.done, this.rejected]) await mkdir(d, { recursive: true });
    const w = watch(this.o.inbox, {
      ignoreInitial: false,
      followSymlinks: false,
      depth: 0,
      ignored: (p: string) =>
        p !== this.o.inbox && (basename(p).startsWith('.') || p === this.done || p === this.rejected),
      ...(this.o.usePolling
        ? { usePolling: true, interval: Math.max(50, Math.floor(this.o.settleMs / 4)) }
        : {}),
    });
    this.watcher = w;
    w.on('add', (p) => this.touched(p));
    w.on('change', (p) => this.touched(p));
    w.on('error', (e) => this.o.log.error({ err: (e as Error).message }, 'inbox watcher error'));
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    this.o.log.info({ inbox: this.o.inbox, settleMs: this.o.settleMs }, 'watching the inbox');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.files.values()) clearTimeout(s.timer);
    this.files.clear();
    await this.watcher?.close();
    await this.queue;
  }

  private touched(path: string): void {
    const rel = relative(this.o.inbox, path);
    if (rel === '' || rel.includes(sep) || rel.startsWith('.')) return;
    const state = this.files.get(rel) ?? { size: -1, mtimeMs: -1, changedAt: 0 };
    state.changedAt = this.clock();
    this.files.set(rel, state);
    this.schedule(rel, state, this.o.settleMs);
  }

  private schedule(name: string, state: FileState, ms: number): void {
    if (this.closed) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(
      () =>
        void this.check(name).catch((e: unknown) =>
          this.o.log.error({ file: name, err: (e as Error).message }, 'inbox check failed'),
        ),
      ms,
    );
    state.timer.unref();
  }

  private async check(name: string): Promise<void> {
    const state = this.files.get(name);
    if (!state || this.closed || this.busy.has(name)) return;
    const path = join(this.o.inbox, name);
    const st = await stat(path).catch(() => undefined);
    if (!st || !st.isFile()) {
      this.files.delete(name);
      this.o.onCheck?.(name, 'gone');
      return;
    }
    const now = this.clock();
    if (st.size !== state.size || st.mtimeMs !== state.mtimeMs) {
      state.size = st.size;
      state.mtimeMs = st.mtimeMs;
      state.changedAt = now;
    }
    const quiet = now - state.changedAt;
    if (quiet < this.o.settleMs) {
      this.o.onCheck?.(name, 'settling');
      return this.schedule(name, state, this.o.settleMs - quiet);
    }
    // The header and table of contents must be complete and the file exactly as long as they declare.
    const probe = await BundleFile.open(path).then(
      async (f) => {
        await f.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    if (probe && isDepotsyncError(probe, 'truncated') && quiet < this.o.stalledMs) {
      this.o.onCheck?.(name, 'growing');
      return this.schedule(name, state, Math.min(this.o.settleMs || 1, this.o.stalledMs - quiet));
    }
    this.files.delete(name);
    if (probe) return this.enqueue(name, () => this.reject(name, describe(probe)));
    this.o.onCheck?.(name, 'queued');
    this.enqueue(name, () => this.process(name));
  }

  /** One import at a time (they share the depot's sync lock anyway). */
  private enqueue(name: string, job: () => Promise<void>): void {
    this.busy.add(name);
    this.queue = this.queue
      .then(job)
      .catch((e: unknown) =>
        this.o.log.error({ file: name, err: (e as Error).message }, 'inbox processing failed'),
      )
      .finally(() => this.busy.delete(name));
  }

  private async process(name: string): Promise<void> {
    if (this.closed) return;
    const path = join(this.o.inbox, name);
    try {
      const result = await this.o.importFile(path);
      const movedTo = await moveAside(path, this.done);
      this.o.log.info(
        { file: name, generation: result.generation, chunks: result.chunksImported, movedTo },
        'inbox file imported',
      );
      this.o.onOutcome?.({ kind: 'imported', name, result, movedTo });
    } catch (e) {
      if (transient(e)) {
        this.o.log.warn(
          { file: name, err: (e as Error).message, retryMs: this.o.retryMs },
          'inbox import failed for now; the file stays in the inbox and is tried again',
        );
        this.o.onCheck?.(name, 'retry');
        const state: FileState = { size: -1, mtimeMs: -1, changedAt: this.clock() };
        this.files.set(name, state);
        return this.schedule(name, state, this.o.retryMs);
      }
      await this.reject(name, describe(e));
    }
  }

  private async reject(name: string, reason: string): Promise<void> {
    try {
      const movedTo = await moveAside(join(this.o.inbox, name), this.rejected);
      await writeFile(`${movedTo}.reason.txt`, `${reason}\n`);
      this.o.log.warn({ file: name, reason, movedTo }, 'inbox file refused');
      this.o.onOutcome?.({ kind: 'rejected', name, reason, movedTo });
    } catch (e) {
      this.o.log.error(
        { file: name, reason, err: (e as Error).message },
        'inbox file refused, but it could not be moved aside',
      );
    }
  }
}

/** Another sync holding the lock, a full disk or an I/O error: the bundle is fine, try again later. */
function transient(e: unknown): boolean {
  return (
    (isDepotsyncError(e, 'conflict') && /another sync is running/.test((e as Error).message)) ||
    isDepotsyncError(e, 'disk-full') ||
    isDepotsyncError(e, 'io')
  );
}

function describe(e: unknown): string {
  const err = e as DepotsyncError;
  return `${err.code ? `${err.code}: ` : ''}${err.message}${err.hint ? `; ${err.hint}` : ''}`;
}

/** Move into `folder` under the same name, or with a suffix when that name is taken. */
async function moveAside(path: string, folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  let target = join(folder, basename(path));
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  )
    target = join(folder, `${basename(path)}.${Date.now()}-${randomBytes(3).toString('hex')}`);
  if (dirname(target) !== folder)
    throw new DepotsyncError('internal', `inbox: ${target} is not in ${folder}`);
  await rename(path, target);
  return target;
}
