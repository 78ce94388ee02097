import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteSql } from '../../../src/db/sqlite-sql.js';

function memory(): SqliteSql {
  return new SqliteSql(new BetterSqlite3(':memory:'), 'database :memory:');
}

describe('SqliteSql', () => {
  it('keeps a transaction to its own asynchronous context; others wait for it', async () => {
    const s = memory();
    await s.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)');
    const tx = s.transaction(async () => {
      await s.run('INSERT INTO t (v) VALUES (?)', ['a']);
      await new Promise((r) => setTimeout(r, 30));
      await s.transaction(async () => s.run('INSERT INTO t (v) VALUES (?)', ['b']));
      return (await s.get<{ n: number }>('SELECT COUNT(*) AS n FROM t'))!.n;
    });
    const outside = s.get<{ n: number }>('SELECT COUNT(*) AS n FROM t');
    expect(await tx).toBe(2);
    expect((await outside)!.n).toBe(2);
  });

  it('rolls back everything on a throw and maps a broken constraint to conflict', async () => {
    const s = memory();
    await s.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)');
    await s.run('INSERT INTO t (v) VALUES (?)', ['a']);
    await expect(
      s.transaction(async () => {
        await s.run('INSERT INTO t (v) VALUES (?)', ['c']);
        await s.run('INSERT INTO t (v) VALUES (?)', ['a']);
      }),
    ).rejects.toMatchObject({ code: 'conflict' });
    expect(await s.all('SELECT v FROM t ORDER BY v')).toEqual([{ v: 'a' }]);
    expect(await s.get('INSERT INTO t (v) VALUES (?) RETURNING id', ['z'])).toEqual({ id: 2 });
    expect(await s.run('UPDATE t SET v = v || ?', ['!'])).toEqual({ changes: 2 });
  });

  it('undoes only a failed savepoint', async () => {
    const s = memory();
    await s.exec('CREATE TABLE t (v TEXT UNIQUE)');
    await s.transaction(async () => {
      await s.run('INSERT INTO t (v) VALUES (?)', ['a']);
      await expect(
        s.transaction(async () => {
          await s.run('INSERT INTO t (v) VALUES (?)', ['b']);
          throw new Error('inner');
        }),
      ).rejects.toThrow('inner');
    });
    expect(await s.all('SELECT v FROM t')).toEqual([{ v: 'a' }]);
  });
});
