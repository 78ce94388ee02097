import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';

/** A fresh temporary folder per call, removed after the test. */
const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'depotsync-store-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

export function chunk(bytes = 1000): { id: string; data: Buffer } {
  const data = randomBytes(bytes);
  return { id: blake3Hex(data), data };
}

export async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<DepotsyncError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof DepotsyncError) return e;
    throw e;
  }
  throw new Error('expected a DepotsyncError, got success');
}

/** A logger whose lines are kept, parsed, in `lines`. */
export function capturingLogger(level: 'info' | 'debug' = 'info'): {
  logger: pino.Logger;
  lines: Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(buf: Buffer, _enc, cb) {
      for (const l of buf.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/**
 * Make the index of the store in `dir` refuse the `nth` commit of new chunk rows from now on (1: the
 * next one) with `message`, as a full or failing disk would once the batch's pack bytes are written:
 * a trigger in the store's own SQLite file fails the row update inside the writer's transaction,
 * which then rolls back. Nothing in the store's code knows about it. Returns the function that
 * removes the fault again.
 */
export function failIndexCommit(dir: string, message: string, nth = 1): () => void {
  const path = join(dir, 'chunks-v1', 'index.sqlite');
  const sql = (text: string) => {
    const db = new Database(path);
    try {
      db.exec(text);
    } finally {
      db.close();
    }
  };
  sql(`
    CREATE TABLE test_fault (commits INTEGER NOT NULL);
    INSERT INTO test_fault VALUES (0);
    CREATE TRIGGER test_fault BEFORE UPDATE OF chunks ON packs WHEN NEW.chunks > OLD.chunks BEGIN
      UPDATE test_fault SET commits = commits + 1;
      SELECT RAISE(ABORT, '${message.replace(/'/g, "''")}') WHERE (SELECT commits FROM test_fault) >= ${nth};
    END;`);
  return () => sql('DROP TRIGGER test_fault; DROP TABLE test_fault;');
}
