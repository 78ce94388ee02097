import { EventEmitter } from 'node:events';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { Sql } from '../../src/db/sql.js';

/**
 * The signer lease (docs/architecture.md, several masters): one row in `signer_lease` naming the master
 * that may sign generations and timestamps, until `expires_at`. Times are read from the database's clock
 * (PostgreSQL's clock_timestamp(), SQLite's 'now'), so masters whose own clocks disagree still agree on
 * whether the lease ran out. `epoch` grows each time the lease changes hands; a generation commit calls
 * assertHeld inside its transaction, which is the fencing: a former signer that was paused or cut off past
 * its lease finds another holder or epoch there and does not commit.
 */
export interface Lease {
  holder: string | null;
  epoch: number;
  acquiredAt: string;
  expiresAt: string;
}

export interface LeaseState extends Lease {
  /** The database's clock when read. */
  now: string;
  /** Held by someone and not expired. */
  live: boolean;
}

interface Row {
  holder: string | null;
  epoch: number;
  acquired_at: string;
  expires_at: string;
}

function nowExpr(sql: Sql): string {
  return sql.dialect === 'postgres'
    ? `to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
    : `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`;
}

async function dbNow(sql: Sql): Promise<string> {
  return (await sql.get<{ now: string }>(`SELECT ${nowExpr(sql)} AS now`))!.now;
}

/** The row, locked against other writers until the transaction ends (PostgreSQL; SQLite's writer lock does it). */
async function readRow(sql: Sql): Promise<Row | undefined> {
  const lock = sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
  return sql.get<Row>(`SELECT holder, epoch, acquired_at, expires_at FROM signer_lease WHERE id = 1${lock}`);
}

function plus(iso: string, ms: number): string {
  return new Date(Date.parse(iso) + ms).toISOString();
}

function checkArgs(holder: string, ttlMs?: number): void {
  if (typeof holder !== 'string' || holder.trim() === '' || holder.length > 200) {
    throw new DepotsyncError(
      'bad-input',
      `signer lease: holder must be a non-empty name, got ${JSON.stringify(holder)}`,
    );
  }
  if (ttlMs !== undefined && (!Number.isSafeInteger(ttlMs) || ttlMs < 100 || ttlMs > 3_600_000)) {
    throw new DepotsyncError(
      'bad-input',
      `signer lease: ttl must be an integer between 100 ms and 1 hour, got ${JSON.stringify(ttlMs)}`,
    );
  }
}

function toLease(r: Row): Lease {
  return { holder: r.holder, epoch: r.epoch, acquiredAt: r.acquired_at, expiresAt: r.expires_at };
}

/**
 * Take the lease for `ttlMs` when it is free, expired or already ours (alive: then it is only extended).
 * The epoch grows whenever the lease was not ours and alive. Undefined while another master holds it.
 */
export async function acquireLease(sql: Sql, holder: string, ttlMs: number): Promise<Lease | undefined> {
  checkArgs(holder, ttlMs);
  return sql.transaction(async () => {
    const now = await dbNow(sql);
    const row = await readRow(sql);
    const expires = plus(now, ttlMs);
    if (!row) {
      await sql.run(
        'INSERT INTO signer_lease (id, holder, epoch, acquired_at, expires_at) VALUES (1, ?, 1, ?, ?)',
        [holder, now, expires],
      );
      return { holder, epoch: 1, acquiredAt: now, expiresAt: expires };
    }
    const alive = row.holder !== null && row.expires_at > now;
    if (alive && row.holder !== holder) return undefined;
    if (alive) {
      await sql.run('UPDATE signer_lease SET expires_at = ? WHERE id = 1', [expires]);
      return { ...toLease(row), expiresAt: expires };
    }
    const epoch = row.epoch + 1;
    await sql.run(
      'UPDATE signer_lease SET holder = ?, epoch = ?, acquired_at = ?, expires_at = ? WHERE id = 1',
      [holder, epoch, now, expires],
    );
    return { holder, epoch, acquiredAt: now, expiresAt: expires };
  });
}

/** Extend our lease of `epoch` by `ttlMs` from now; undefined when it expired or changed hands (lost). */
export async function renewLease(
  sql: Sql,
  holder: string,
  epoch: number,
  ttlMs: number,
): Promise<Lease | undefined> {
  checkArgs(holder, ttlMs);
  return sql.transaction(async () => {
    const now = await dbNow(sql);
    const row = await readRow(sql);
    if (!row || row.holder !== holder || row.epoch !== epoch || row.expires_at <= now) return undefined;
    const expires = plus(now, ttlMs);
    await sql.run('UPDATE signer_lease SET expires_at = ? WHERE id = 1', [expires]);
    return { ...toLease(row), expiresAt: expires };
  });
}

/** Give the lease up (a clean shutdown), so another master takes it at once; false when it was not ours. */
export async function releaseLease(sql: Sql, holder: string, epoch: number): Promise<boolean> {
  checkArgs(holder);
  return sql.transaction(async () => {
    const now = await dbNow(sql);
    const r = await sql.run(
      'UPDATE signer_lease SET holder = NULL, expires_at = ? WHERE id = 1 AND holder = ? AND epoch = ?',
      [now, holder, epoch],
    );
    return r.changes === 1;
  });
}

/** Who holds the lease now, by the database's clock; undefined when no master ever took it. */
export async function currentLease(sql: Sql): Promise<LeaseState | undefined> {
  const row = await sql.get<Row & { now: string }>(
    `SELECT holder, epoch, acquired_at, expires_at, ${nowExpr(sql)} AS now FROM signer_lease WHERE id = 1`,
  );
  if (!row) return undefined;
  return { ...toLease(row), now: row.now, live: row.holder !== null && row.expires_at > row.now };
}

/**
 * The fencing check: call it INSIDE the transaction that commits a generation (or a timestamp), before its
 * writes. It locks the lease row until that transaction ends (on PostgreSQL: FOR UPDATE; on SQLite the
 * writer lock), so the lease cannot change hands between the check and the commit. Throws 'conflict'
 * unless `holder` holds `epoch` and it has not expired.
 */
export async function assertLeaseHeld(sql: Sql, holder: string, epoch: number): Promise<void> {
  const now = await dbNow(sql);
  const row = await readRow(sql);
  if (row && row.holder === holder && row.epoch === epoch && row.expires_at > now) return;
  const by = !row
    ? 'nobody'
    : row.holder === null
      ? 'nobody (released)'
      : row.expires_at <= now
        ? `${row.holder} (expired)`
        : row.holder;
  throw new DepotsyncError(
    'conflict',
    `this master is no longer the signer (lease epoch ${row?.epoch ?? 0}, held by ${by}): not committing`,
    { hint: `this master (${holder}) held epoch ${epoch}; another master signs now, nothing was written` },
  );
}

export interface SignerLeaseOptions {
  /** This master's name in the lease (unique among the masters). */
  holder: string;
  /** How long a taken or renewed lease lasts; renewed every ttl/3. */
  ttlMs: number;
  logger: Logger;
}

/**
 * Keeps trying to take the lease and, while held, renews it every ttl/3. Emits 'gained' (Lease) and
 * 'lost' (reason). While the database cannot be reached the lease is considered lost once the last
 * successful renewal is older than the ttl by this process's clock, measured from when the renewal was
 * sent (never later than the database thinks it expires).
 */
export class SignerLease extends EventEmitter {
  private readonly sql: Sql;
  private readonly o: SignerLeaseOptions;
  private lease: Lease | undefined;
  /** Local time (ms) until which the held lease is surely valid. */
  private validUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private tick: Promise<void> = Promise.resolve();

  constructor(sql: Sql, o: SignerLeaseOptions) {
    super();
    checkArgs(o.holder, o.ttlMs);
    this.sql = sql;
    this.o = o;
  }

  /** The lease this master holds now, or undefined. */
  held(): Lease | undefined {
    if (this.lease && Date.now() < this.validUntil) return this.lease;
    return undefined;
  }

  /** Start taking and renewing; resolves after the first attempt. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.step();
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.step(), Math.max(50, Math.floor(this.o.ttlMs / 3)));
    this.timer.unref();
  }

  private step(): Promise<void> {
    this.tick = this.attempt().finally(() => this.schedule());
    return this.tick;
  }

  private async attempt(): Promise<void> {
    const sent = Date.now();
    const had = this.lease;
    try {
      const got = had
        ? await renewLease(this.sql, this.o.holder, had.epoch, this.o.ttlMs)
        : await acquireLease(this.sql, this.o.holder, this.o.ttlMs);
      if (!this.running) return;
      if (got) {
        this.lease = got;
        this.validUntil = sent + this.o.ttlMs;
        if (!had) {
          this.o.logger.info({ epoch: got.epoch }, 'signer lease gained');
          this.emit('gained', got);
        }
      } else if (had) {
        this.drop('lease expired or taken by another master');
        // Try again at once: if nobody took it, it is ours again (under a new epoch).
        await this.attempt();
      }
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'signer lease: database not reachable');
      if (this.lease && Date.now() >= this.validUntil)
        this.drop(`database not reachable: ${(e as Error).message}`);
    }
  }

  private drop(reason: string): void {
    const was = this.lease;
    this.lease = undefined;
    this.validUntil = 0;
    if (was) {
      this.o.logger.warn({ epoch: was.epoch, reason }, 'signer lease lost');
      this.emit('lost', reason);
    }
  }

  /** Stop renewing; with `release` (a clean shutdown) give the lease up so another master takes it now. */
  async stop(o: { release?: boolean } = {}): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.tick.catch(() => undefined);
    const had = this.lease;
    this.lease = undefined;
    this.validUntil = 0;
    if (had && o.release !== false) await releaseLease(this.sql, this.o.holder, had.epoch).catch(() => false);
  }
}
