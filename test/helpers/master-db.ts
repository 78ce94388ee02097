import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { openMasterDatabase, type MasterDb } from '../../master/db/database.js';

/**
 * The one way the master's catalog tests get a database: a fresh one on a temporary SQLite file. The
 * tests use only the MasterDb (its `sql`, never a SQLite handle), so running them on another backend
 * means changing this helper alone.
 */
export interface TestMasterDb {
  m: MasterDb;
  /** A folder of the test's own (removed by `cleanup`). */
  dir: string;
  /** Close and open the same database again (what a restarted master sees). */
  reopen(): Promise<MasterDb>;
  /** A second connection to the same database (what another master process sees); the caller closes it. */
  another(): Promise<MasterDb>;
  cleanup(): Promise<void>;
}

export async function openTestMasterDb(opts: { now?: () => Date } = {}): Promise<TestMasterDb> {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-master-db-'));
  const path = join(dir, 'master.db');
  const open = () =>
    openMasterDatabase(path, { logger: silentLogger(), ...(opts.now ? { now: opts.now } : {}) });
  let closed = false;
  const t: TestMasterDb = {
    m: open(),
    dir,
    async reopen() {
      await t.m.close();
      t.m = open();
      return t.m;
    },
    another: () => Promise.resolve(open()),
    async cleanup() {
      if (!closed) await t.m.close().catch(() => undefined);
      closed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
