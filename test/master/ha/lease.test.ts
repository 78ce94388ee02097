import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/db/open.js';
import { openPostgresSql } from '../../../src/db/postgres-sql.js';
import type { Sql } from '../../../src/db/sql.js';
import { SqliteSql } from '../../../src/db/sqlite-sql.js';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import {
  acquireLease,
  assertLeaseHeld,
  currentLease,
  releaseLease,
  renewLease,
  SignerLease,
  type Lease,
} from '../../../master/ha/lease.js';
import { POSTGRES_MASTER_MIGRATIONS } from '../../../master/db/schema-postgres.js';
import { MASTER_MIGRATIONS } from '../../../master/db/schema.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';

let cluster: PgCluster;
let dir: string;
const opened: Sql[] = [];
beforeAll(async () => {
  cluster = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'depotsync-lease-'));
});
afterAll(async () => {
  for (const s of new Set(opened)) await s.close().catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** Two masters' connections to one fresh catalog. */
const backends = [
  {
    name: 'sqlite',
    // One connection shared by both contenders: better-sqlite3 is synchronous, so a second connection in
    // this process would wait for the first one's lock while blocking the event loop that must release it.
    // (Several masters need PostgreSQL; SQLite serves one master.)
    async two(): Promise<[Sql, Sql]> {
      const path = join(dir, `m${++n}.db`);
      const s = new SqliteSql(
        openDatabase(path, { migrations: MASTER_MIGRATIONS, logger: silentLogger() }),
        `database ${path}`,
      );
      opened.push(s);
      return [s, s];
    },
  },
  {
    name: 'postgres',
    async two(): Promise<[Sql, Sql]> {
      const url = await cluster.createDatabase('lease');
      const open = () =>
        openPostgresSql(url, { logger: silentLogger(), migrations: POSTGRES_MASTER_MIGRATIONS });
      const pair: [Sql, Sql] = [await open(), await open()];
      opened.push(...pair);
      return pair;
    },
  },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(backends)('signer lease on $name', (b) => {
  it('is taken when free, refused while alive, taken over after expiry with a new epoch', async () => {
    const [a, c] = await b.two();
    expect(await currentLease(a)).toBeUndefined();
    const first = (await acquireLease(a, 'master-a', 400))!;
    expect(first).toMatchObject({ holder: 'master-a', epoch: 1 });
    expect(await acquireLease(c, 'master-b', 400)).toBeUndefined();
    // Ours again: only extended, same epoch.
    expect(await acquireLease(a, 'master-a', 400)).toMatchObject({ holder: 'master-a', epoch: 1 });
    expect(await currentLease(c)).toMatchObject({ holder: 'master-a', epoch: 1, live: true });
    await sleep(500);
    expect(await currentLease(c)).toMatchObject({ holder: 'master-a', live: false });
    const taken = (await acquireLease(c, 'master-b', 400))!;
    expect(taken).toMatchObject({ holder: 'master-b', epoch: 2 });
    // The former signer cannot renew and is fenced out of a commit.
    expect(await renewLease(a, 'master-a', 1, 400)).toBeUndefined();
    const e = await a
      .transaction(async () => {
        await assertLeaseHeld(a, 'master-a', 1);
        await a.run("INSERT INTO generations (generation, created_at, created_by) VALUES (1, 't', 'a')");
      })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DepotsyncError);
    expect((e as DepotsyncError).code).toBe('conflict');
    expect((e as DepotsyncError).message).toBe(
      'this master is no longer the signer (lease epoch 2, held by master-b): not committing',
    );
    expect(await a.get('SELECT COUNT(*) AS n FROM generations')).toEqual({ n: 0 });
    // The holder commits.
    await c.transaction(async () => {
      await assertLeaseHeld(c, 'master-b', 2);
      await c.run("INSERT INTO generations (generation, created_at, created_by) VALUES (1, 't', 'b')");
    });
    expect(await a.get('SELECT created_by FROM generations')).toEqual({ created_by: 'b' });
  });

  it('fences a holder whose lease expired even when nobody took it, and counts epochs across releases', async () => {
    const [a, c] = await b.two();
    const l = (await acquireLease(a, 'master-a', 200))!;
    expect(await renewLease(a, 'master-a', l.epoch, 200)).toMatchObject({ epoch: 1 });
    await sleep(300);
    await expect(a.transaction(() => assertLeaseHeld(a, 'master-a', 1))).rejects.toThrow(
      /lease epoch 1, held by master-a \(expired\)/,
    );
    expect(await renewLease(a, 'master-a', 1, 200)).toBeUndefined();
    // Taken again by the same master after expiry: a new epoch, so the old one stays fenced.
    expect(await acquireLease(a, 'master-a', 5000)).toMatchObject({ epoch: 2 });
    expect(await releaseLease(c, 'master-b', 2)).toBe(false);
    expect(await releaseLease(a, 'master-a', 2)).toBe(true);
    expect(await currentLease(c)).toMatchObject({ holder: null, live: false });
    expect(await acquireLease(c, 'master-b', 5000)).toMatchObject({ holder: 'master-b', epoch: 3 });
    await expect(acquireLease(c, '', 5000)).rejects.toMatchObject({ code: 'bad-input' });
    await expect(acquireLease(c, 'x', 5)).rejects.toMatchObject({ code: 'bad-input' });
  });

  it('never lets two contenders hold it at once', async () => {
    const [a, c] = await b.two();
    const seen: number[] = [];
    for (let round = 0; round < 15; round++) {
      const [ra, rc] = await Promise.all([
        acquireLease(a, 'master-a', 150),
        acquireLease(c, 'master-b', 150),
      ]);
      const winners = [ra, rc].filter((x): x is Lease => x !== undefined);
      expect(winners.length, `round ${round}`).toBe(1);
      seen.push(winners[0]!.epoch);
      await sleep(170);
    }
    // Every round the lease had expired, so every acquisition is a new epoch.
    expect(seen).toEqual(seen.map((_, i) => i + 1));
  });

  it('SignerLease renews while alive, and a survivor takes over within the ttl after the signer dies', async () => {
    const [a, c] = await b.two();
    const ttlMs = 600;
    const la = new SignerLease(a, { holder: 'master-a', ttlMs, logger: silentLogger() });
    const lc = new SignerLease(c, { holder: 'master-b', ttlMs, logger: silentLogger() });
    const events: string[] = [];
    la.on('gained', (l: Lease) => events.push(`a gained ${l.epoch}`));
    la.on('lost', () => events.push('a lost'));
    lc.on('gained', (l: Lease) => events.push(`b gained ${l.epoch}`));
    await la.start();
    await lc.start();
    expect(la.held()).toMatchObject({ epoch: 1 });
    expect(lc.held()).toBeUndefined();
    await sleep(ttlMs * 2); // a renews past its first ttl
    expect(la.held()).toMatchObject({ epoch: 1 });
    expect(lc.held()).toBeUndefined();
    // The signer dies (no release): the other takes over once the lease expires.
    const died = Date.now();
    await la.stop({ release: false });
    while (!lc.held()) {
      expect(Date.now() - died).toBeLessThan(ttlMs * 3);
      await sleep(20);
    }
    expect(lc.held()).toMatchObject({ epoch: 2 });
    await lc.stop();
    expect(await currentLease(a)).toMatchObject({ holder: null });
    expect(events).toEqual(['a gained 1', 'b gained 2']);
  });
});
