import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { openDatabase, type Migration } from '../../../src/db/open.js';
import { transaction } from '../../../src/db/transaction.js';

const logger = silentLogger();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'depotsync-db-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const twoSteps = (calls: number[] = []): Migration[] => [
  {
    version: 1,
    name: 'items',
    up: 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT;',
  },
  {
    version: 2,
    name: 'tags',
    up: (db) => {
      calls.push(2);
      db.exec('CREATE TABLE tags (item INTEGER NOT NULL REFERENCES items(id), tag TEXT NOT NULL) STRICT;');
    },
  },
];

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('openDatabase', () => {
  it('opens in WAL mode with synchronous=FULL, foreign keys and the newest schema', () => {
    const db = openDatabase(join(dir, 'a.db'), { migrations: twoSteps(), logger });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    expect(() => db.prepare('INSERT INTO tags (item, tag) VALUES (99, ?)').run('x')).toThrow(/FOREIGN KEY/);
    db.close();
  });

  it('keeps synchronous=FULL when a WAL database is reopened (plain better-sqlite3 drops to NORMAL)', () => {
    const path = join(dir, 'a.db');
    openDatabase(path, { migrations: twoSteps(), logger }).close();
    const raw = new BetterSqlite3(path);
    // The trap this guards against: a plain reopen of a WAL database runs at NORMAL (1).
    expect(raw.pragma('synchronous', { simple: true })).toBe(1);
    raw.close();
    for (let i = 0; i < 2; i++) {
      const db = openDatabase(path, { migrations: twoSteps(), logger });
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2);
      db.close();
    }
  });

  it('applies each migration once; reopening is idempotent and keeps data', () => {
    const path = join(dir, 'a.db');
    const calls: number[] = [];
    const first = openDatabase(path, { migrations: twoSteps(calls).slice(0, 1), logger });
    first.prepare('INSERT INTO items (name) VALUES (?)').run('kept');
    first.close();
    openDatabase(path, { migrations: twoSteps(calls), logger }).close();
    const db = openDatabase(path, { migrations: twoSteps(calls), logger });
    expect(calls).toEqual([2]);
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    expect(db.prepare('SELECT name FROM items').all()).toEqual([{ name: 'kept' }]);
    db.close();
  });

  it('refuses a database whose schema is newer than the code knows', () => {
    const path = join(dir, 'a.db');
    openDatabase(path, { migrations: twoSteps(), logger }).close();
    const raw = new BetterSqlite3(path);
    raw.pragma('user_version = 5');
    raw.close();
    const e = caught(() => openDatabase(path, { migrations: twoSteps(), logger }));
    expect(isDepotsyncError(e, 'conflict')).toBe(true);
    expect((e as Error).message).toContain('database schema v5 is newer than this depotsync (knows v2)');
    expect((e as { toLine(): string }).toLine()).toMatch(/upgrade depotsync$/);
  });

  it('rolls back a failing migration completely and leaves the previous version', () => {
    const path = join(dir, 'a.db');
    const broken: Migration[] = [
      twoSteps()[0]!,
      {
        version: 2,
        name: 'half done',
        up: (db) => {
          db.exec('CREATE TABLE half (x INTEGER) STRICT');
          throw new Error('boom');
        },
      },
    ];
    const e = caught(() => openDatabase(path, { migrations: broken, logger }));
    expect(isDepotsyncError(e, 'internal')).toBe(true);
    expect((e as Error).message).toMatch(/migration v2 \(half done\) failed: boom/);
    const raw = new BetterSqlite3(path);
    expect(raw.pragma('user_version', { simple: true })).toBe(1);
    expect(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined();
    raw.close();
    // The fixed code then migrates normally.
    openDatabase(path, { migrations: twoSteps(), logger }).close();
  });

  it('rejects a migration list with gaps', () => {
    const list = [twoSteps()[0]!, { ...twoSteps()[1]!, version: 3 }];
    expect(() => openDatabase(join(dir, 'a.db'), { migrations: list, logger })).toThrow(
      /migration #2 has version 3, expected 2/,
    );
  });

  it('names the file when it is not a database, or its directory is missing', () => {
    const path = join(dir, 'not.db');
    writeFileSync(path, 'this is not a database at all, just some text that is long enough'.repeat(20));
    const e = caught(() => openDatabase(path, { migrations: twoSteps(), logger }));
    expect(isDepotsyncError(e, 'corrupt')).toBe(true);
    expect((e as Error).message).toContain(path);
    const missing = caught(() => openDatabase(join(dir, 'nope', 'a.db'), { migrations: twoSteps(), logger }));
    expect(isDepotsyncError(missing, 'not-found')).toBe(true);
  });

  it('validates options', () => {
    expect(() => openDatabase(join(dir, 'a.db'), { migrations: [], logger, busyTimeoutMs: -1 })).toThrow(
      /busyTimeoutMs must be a non-negative integer, got -1/,
    );
  });
});

describe('transaction', () => {
  it('commits, rolls back on throw, and nests as a savepoint', () => {
    const db = openDatabase(join(dir, 'a.db'), { migrations: twoSteps(), logger });
    const insert = db.prepare('INSERT INTO items (name) VALUES (?)');
    expect(transaction(db, () => insert.run('a').changes)).toBe(1);
    expect(() =>
      transaction(db, () => {
        insert.run('b');
        throw new Error('abort');
      }),
    ).toThrow('abort');
    transaction(db, () => {
      insert.run('c');
      try {
        transaction(db, () => {
          insert.run('d');
          throw new Error('inner');
        });
      } catch {
        // the inner savepoint rolled back; the outer transaction goes on
      }
    });
    expect(db.prepare('SELECT name FROM items ORDER BY id').all()).toEqual([{ name: 'a' }, { name: 'c' }]);
    db.close();
  });
});
