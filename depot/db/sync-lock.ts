import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { DepotsyncError } from '../../src/errors.js';
import type { DepotDb } from './depot-db.js';

export interface LockHolder {
  pid: number;
  host: string;
  acquiredAt: string;
}

/** Is a process of this host alive? (signal 0 checks existence and permission, sends nothing) */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Single flight across processes: one row in the depot database names the process that syncs (or
 * collects garbage). Taken in a write transaction, so two processes cannot both win. A row left by a
 * process that died (kill -9, power loss) is taken over when that pid no longer runs on this host.
 */
export class SyncLock {
  private token: string | undefined;

  constructor(
    private readonly db: DepotDb,
    private readonly opts: {
      pid?: number;
      host?: string;
      isAlive?: (pid: number) => boolean;
      now?: () => Date;
    } = {},
  ) {}

  /** Take the lock or throw 'conflict' naming the holder. */
  acquire(what = 'sync'): void {
    const pid = this.opts.pid ?? process.pid;
    const host = this.opts.host ?? hostname();
    const isAlive = this.opts.isAlive ?? processAlive;
    const token = randomBytes(12).toString('hex');
    const holder = this.db.tx('take the sync lock', () => {
      const row = this.db.db
        .prepare<[], { pid: number; host: string; acquired_at: string; token: string }>(
          'SELECT pid, host, token, acquired_at FROM sync_lock WHERE id = 1',
        )
        .get();
      if (row && row.token !== this.token) {
        // A holder on another host cannot be checked: the depot folder must not be shared, so refuse.
        const stale = row.host === host && row.pid !== pid && !isAlive(row.pid);
        if (!stale) return { pid: row.pid, host: row.host, acquiredAt: row.acquired_at } satisfies LockHolder;
      }
      this.db.db
        .prepare(
          'INSERT OR REPLACE INTO sync_lock (id, pid, host, token, acquired_at) VALUES (1, ?, ?, ?, ?)',
        )
        .run(pid, host, token, (this.opts.now ?? (() => new Date()))().toISOString());
      return undefined;
    });
    if (holder) {
      throw new DepotsyncError(
        'conflict',
        `${what}: another sync is running on this depot (pid ${holder.pid} on ${holder.host} since ${holder.acquiredAt})`,
        {
          hint: 'wait for it to finish; two syncs never run at once on one depot',
        },
      );
    }
    this.token = token;
  }

  release(): void {
    if (!this.token) return;
    const token = this.token;
    this.token = undefined;
    this.db.db.prepare('DELETE FROM sync_lock WHERE id = 1 AND token = ?').run(token);
  }

  get held(): boolean {
    return this.token !== undefined;
  }
}
