import { createHash } from 'node:crypto';
import type { MasterDb } from '../../../master/db/database.js';
import { openTestMasterDb } from '../../helpers/master-db.js';

/** A master database in a fresh temp folder with a clock the test moves by hand. */
export interface TestMaster {
  m: MasterDb;
  dir: string;
  clock: { t: number; advance(ms: number): void };
  reopen(): Promise<MasterDb>;
  another(): Promise<MasterDb>;
  cleanup(): Promise<void>;
}

export async function testMaster(start = Date.parse('2030-01-01T00:00:00.000Z')): Promise<TestMaster> {
  const clock = {
    t: start,
    advance(ms: number) {
      this.t += ms;
    },
  };
  const db = await openTestMasterDb({ now: () => new Date(clock.t) });
  return {
    get m() {
      return db.m;
    },
    dir: db.dir,
    clock,
    reopen: () => db.reopen(),
    another: () => db.another(),
    cleanup: () => db.cleanup(),
  };
}

/** A fake 64-hex id derived from a label (the db does not check ids against content). */
export function hexId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

export async function caught(fn: () => unknown): Promise<Error & { code?: string; hint?: string }> {
  try {
    await fn();
  } catch (e) {
    return e as Error & { code?: string; hint?: string };
  }
  throw new Error('expected a throw');
}
