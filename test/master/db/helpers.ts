import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../src/log.js';
import { openMasterDatabase, type MasterDb } from '../../../master/db/database.js';

/** A master database in a fresh temp folder with a clock the test moves by hand. */
export interface TestMaster {
  m: MasterDb;
  dir: string;
  path: string;
  clock: { t: number; advance(ms: number): void };
  reopen(): MasterDb;
  cleanup(): void;
}

export function testMaster(start = Date.parse('2030-01-01T00:00:00.000Z')): TestMaster {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-master-db-'));
  const path = join(dir, 'master.db');
  const clock = {
    t: start,
    advance(ms: number) {
      this.t += ms;
    },
  };
  const open = () => openMasterDatabase(path, { logger: silentLogger(), now: () => new Date(clock.t) });
  const t: TestMaster = {
    m: open(),
    dir,
    path,
    clock,
    reopen() {
      t.m.close();
      t.m = open();
      return t.m;
    },
    cleanup() {
      if (t.m.db.open) t.m.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** A fake 64-hex id derived from a label (the db does not check ids against content). */
export function hexId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

export function caught(fn: () => unknown): Error & { code?: string; hint?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string; hint?: string };
  }
  throw new Error('expected a throw');
}
