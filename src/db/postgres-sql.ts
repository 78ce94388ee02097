import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Sql, SqlParams, SqlRunResult, SqlValue } from './sql.js';

/**
 * A versioned PostgreSQL schema step. Versions increase but may jump: the first step of a schema can be a
 * baseline equal to several SQLite migrations, so both backends report the same schema version.
 */
export interface PostgresMigration {
  version: number;
  name: string;
  up: string;
}

export interface PostgresSqlOptions {
  logger: Logger;
  /** Applied at open (under the writer lock), newest version last; a newer database is refused. */
  migrations?: readonly PostgresMigration[];
  /** How long opening one connection may take. */
  connectTimeoutMs?: number;
  /** The server cancels a statement that runs longer (statement_timeout). */
  statementTimeoutMs?: number;
  /** How long a statement waits for a lock, the writer lock included (lock_timeout). */
  lockTimeoutMs?: number;
  /** The server ends a session left idle inside a transaction (a paused process holding the writer lock). */
  idleInTransactionTimeoutMs?: number;
  /** How long a query that lost its connection (server restart, network cut) is retried before failing. */
  retryForMs?: number;
  /** Connections in the pool. */
  maxConnections?: number;
}

export const POSTGRES_DEFAULTS = {
  connectTimeoutMs: 10_000,
  statementTimeoutMs: 60_000,
  lockTimeoutMs: 30_000,
  idleInTransactionTimeoutMs: 60_000,
  retryForMs: 5_000,
  maxConnections: 10,
} as const;

/**
 * The transaction-scoped advisory lock every writer takes first: PostgreSQL's stand-in for SQLite's
 * BEGIN IMMEDIATE, so read-then-write code in a transaction sees no concurrent writer. ('dpsync' in hex.)
 */
const WRITER_LOCK = 0x647073796e63;

/** One outermost transaction: its connection, shared by its savepoints and every query of its context. */
interface TxFrame {
  owner: PostgresSql;
  client: pg.PoolClient;
  savepoints: number;
  done: boolean;
}

/** Set on an error raised before anything of the statement reached the server (or that the server rolled back). */
const NOT_EXECUTED = Symbol('not-executed');

/**
 * The Sql interface (src/db/sql.ts) over a pg connection pool. Reads outside a transaction go to any pooled
 * connection; a transaction checks one connection out from BEGIN to COMMIT and takes the writer lock; a
 * write outside a transaction runs as its own one-statement transaction under the same lock, so writers
 * are serialized as on SQLite. Lost connections are dropped by the pool, and a statement whose connection
 * was lost before it could have taken effect is retried for `retryForMs`.
 */
export class PostgresSql implements Sql {
  readonly dialect = 'postgres' as const;
  readonly what: string;
  readonly pool: pg.Pool;
  private readonly context = new AsyncLocalStorage<TxFrame>();
  private readonly translated = new Map<string, string>();
  private readonly retryForMs: number;
  private readonly log: Logger;
  private closed = false;
  private readonly watched = new WeakSet<pg.PoolClient>();
  /** The tail of this process's queue of writers (see once). */
  private writers: Promise<void> = Promise.resolve();

  constructor(pool: pg.Pool, what: string, o: { logger: Logger; retryForMs?: number }) {
    this.pool = pool;
    this.what = what;
    this.log = o.logger;
    this.retryForMs = o.retryForMs ?? POSTGRES_DEFAULTS.retryForMs;
    // An idle pooled connection that the server ends (restart, admin shutdown) is dropped by the pool; the
    // event must be handled or Node.js ends the process.
    pool.on('error', (e) => this.log.warn({ err: e.message }, 'database connection lost while idle'));
  }

  private sql(text: string): string {
    let out = this.translated.get(text);
    if (out === undefined) {
      out = numberPlaceholders(text);
      // Statements built at run time (IN lists, batch inserts) must not grow the cache without bound.
      if (this.translated.size >= 2_000) this.translated.clear();
      this.translated.set(text, out);
    }
    return out;
  }

  /** The frame of the transaction this context is in, if it is still open. */
  private frame(): TxFrame | undefined {
    const f = this.context.getStore();
    return f !== undefined && f.owner === this && !f.done ? f : undefined;
  }

  private async query(text: string, params: SqlParams): Promise<pg.QueryResult> {
    const frame = this.frame();
    if (frame) return this.onClient(frame.client, text, params);
    if (isReadOnly(text)) {
      return this.retrying(async () => {
        const client = await this.checkout();
        try {
          const r = await this.onClient(client, text, params);
          client.release();
          return r;
        } catch (e) {
          client.release(isConnectionError(e) ? (e as Error) : undefined);
          // A lost connection cannot have changed anything for a read: safe to run again.
          if (isConnectionError(e)) mark(e, NOT_EXECUTED);
          throw e;
        }
      });
    }
    // A write on its own is a one-statement transaction under the writer lock; until COMMIT is sent, a
    // lost connection means the server rolled it back, so it is safe to run again.
    return this.retrying(() => this.once(() => this.onClient(this.frame()!.client, text, params), true));
  }

  private async onClient(client: pg.PoolClient, text: string, params: SqlParams): Promise<pg.QueryResult> {
    try {
      return params.length === 0
        ? await client.query(this.sql(text))
        : await client.query(this.sql(text), bind(params));
    } catch (e) {
      throw withSqlState(e);
    }
  }

  private async checkout(): Promise<pg.PoolClient> {
    if (this.closed) throw new DepotsyncError('internal', `${this.what}: used after close`);
    try {
      const client = await this.pool.connect();
      if (!this.watched.has(client)) {
        // A checked-out connection that the server ends between statements reports it as an event; the
        // next statement on it fails and the connection is dropped at release.
        client.on('error', (e) => this.log.warn({ err: e.message }, 'database connection lost'));
        this.watched.add(client);
      }
      return client;
    } catch (e) {
      // Nothing was sent: any statement may be tried again.
      throw mark(withSqlState(e), NOT_EXECUTED);
    }
  }

  /** Run `op` again (short doubling pauses, up to retryForMs in all) while it fails without having taken effect. */
  private async retrying<T>(op: () => Promise<T>): Promise<T> {
    const started = Date.now();
    let pause = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (e) {
        const retry =
          !this.closed &&
          isConnectionError(e) &&
          (e as Record<symbol, unknown>)[NOT_EXECUTED] === true &&
          Date.now() - started + pause <= this.retryForMs;
        if (!retry) throw e;
        this.log.warn({ attempt, err: (e as Error).message }, 'database connection failed; retrying');
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(pause * 2, 1_000);
      }
    }
  }

  async get<T = Record<string, unknown>>(sql: string, params: SqlParams = []): Promise<T | undefined> {
    return (await this.call(sql, params)).rows[0] as T | undefined;
  }

  async all<T = Record<string, unknown>>(sql: string, params: SqlParams = []): Promise<T[]> {
    return (await this.call(sql, params)).rows as T[];
  }

  async run(sql: string, params: SqlParams = []): Promise<SqlRunResult> {
    const r = await this.call(sql, params);
    return { changes: r.command === 'SELECT' ? 0 : (r.rowCount ?? 0) };
  }

  async exec(sql: string): Promise<void> {
    await this.call(sql, []);
  }

  private async call(sql: string, params: SqlParams): Promise<pg.QueryResult> {
    try {
      return await this.query(sql, params);
    } catch (e) {
      throw fromPostgresError(e, this.what);
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const frame = this.frame();
    if (frame) {
      const name = `sp${++frame.savepoints}`;
      try {
        await this.onClient(frame.client, `SAVEPOINT ${name}`, []);
      } catch (e) {
        throw fromPostgresError(e, this.what);
      }
      try {
        const out = await fn();
        await this.onClient(frame.client, `RELEASE SAVEPOINT ${name}`, []);
        return out;
      } catch (e) {
        await this.onClient(frame.client, `ROLLBACK TO SAVEPOINT ${name}`, []).catch(() => undefined);
        throw fromPostgresError(e, this.what);
      }
    }
    try {
      return await this.once(fn, false);
    } catch (e) {
      throw fromPostgresError(e, this.what);
    }
  }

  async readTransaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.frame()) return fn();
    // No writer queue and no writer lock: a snapshot of its own on its own connection.
    const client = await this.retrying(async () => {
      const c = await this.checkout();
      try {
        await this.onClient(c, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', []);
        return c;
      } catch (e) {
        c.release(isConnectionError(e) ? (e as Error) : undefined);
        if (isConnectionError(e)) mark(e, NOT_EXECUTED);
        throw fromPostgresError(e, this.what);
      }
    });
    const own: TxFrame = { owner: this, client, savepoints: 0, done: false };
    let broken: Error | undefined;
    try {
      const out = await this.context.run(own, fn);
      await this.onClient(client, 'COMMIT', []);
      return out;
    } catch (e) {
      if (isConnectionError(e)) broken = e as Error;
      else await client.query('ROLLBACK').catch((r: Error) => (broken = r));
      throw fromPostgresError(e, this.what);
    } finally {
      own.done = true;
      client.release(broken);
    }
  }

  /**
   * One outermost transaction. Its start (connection, BEGIN, writer lock) is retried; `fn` is not (running
   * it again is the caller's decision) unless `lone` (a single statement): a connection lost before COMMIT
   * was sent means the server rolled everything back. Once COMMIT was sent the outcome is unknown and
   * nothing retries. Errors are thrown as they came (callers map them).
   */
  private async once<T>(fn: () => Promise<T>, lone: boolean): Promise<T> {
    // Writers of this process queue here without a connection: waiting on the advisory lock would hold
    // pooled connections that reads need, and the lock admits one writer at a time anyway.
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const before = this.writers;
    this.writers = before.then(() => mine);
    await before;
    try {
      return await this.onceLocked(fn, lone);
    } finally {
      done();
    }
  }

  private async onceLocked<T>(fn: () => Promise<T>, lone: boolean): Promise<T> {
    const client = await this.retrying(async () => {
      const c = await this.checkout();
      try {
        // One round trip: both statements go in one simple-protocol message.
        await this.onClient(c, `BEGIN; SELECT pg_advisory_xact_lock(${WRITER_LOCK})`, []);
        return c;
      } catch (e) {
        // A lock wait that timed out leaves the transaction aborted: end it before the connection goes back.
        let broken = isConnectionError(e) ? (e as Error) : undefined;
        if (!broken) await c.query('ROLLBACK').catch((r: Error) => (broken = r));
        c.release(broken);
        if (isConnectionError(e)) mark(e, NOT_EXECUTED);
        throw e;
      }
    });
    const own: TxFrame = { owner: this, client, savepoints: 0, done: false };
    let broken: Error | undefined;
    let committing = false;
    try {
      const out = await this.context.run(own, fn);
      committing = true;
      await this.onClient(client, 'COMMIT', []);
      return out;
    } catch (e) {
      if (isConnectionError(e)) broken = e as Error;
      else {
        try {
          await client.query('ROLLBACK');
        } catch (r) {
          broken = r as Error;
        }
      }
      if (committing && isConnectionError(e)) {
        throw new DepotsyncError(
          'network',
          `${this.what}: the connection was lost while committing; the transaction may or may not have been committed`,
          {
            hint: 'check the database server; once it is reachable, look at the current state before doing the operation again',
            cause: e,
          },
        );
      }
      if (lone && isConnectionError(e)) mark(e, NOT_EXECUTED);
      throw e;
    } finally {
      own.done = true;
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** Open the PostgreSQL catalog at `url` (postgres://user:password@host:port/database), migrated. */
export async function openPostgresSql(url: string, opts: PostgresSqlOptions): Promise<PostgresSql> {
  const what = describeUrl(url);
  const o = { ...POSTGRES_DEFAULTS, ...definedOnly(opts) };
  for (const k of Object.keys(POSTGRES_DEFAULTS) as (keyof typeof POSTGRES_DEFAULTS)[]) {
    const v = o[k];
    if (!Number.isSafeInteger(v) || v < (k === 'maxConnections' ? 1 : 0)) {
      throw new DepotsyncError(
        'bad-input',
        `openPostgresSql: option ${k} must be a ${k === 'maxConnections' ? 'positive' : 'non-negative'} integer, got ${JSON.stringify(v)}`,
      );
    }
  }
  const log = opts.logger.child({ component: 'db' });
  const pool = new pg.Pool({
    connectionString: url,
    max: o.maxConnections,
    connectionTimeoutMillis: o.connectTimeoutMs,
    statement_timeout: o.statementTimeoutMs,
    lock_timeout: o.lockTimeoutMs,
    idle_in_transaction_session_timeout: o.idleInTransactionTimeoutMs,
    keepAlive: true,
    application_name: 'depotsync',
    types: { getTypeParser: typeParser as never },
  });
  const sql = new PostgresSql(pool, what, { logger: log, retryForMs: o.retryForMs });
  try {
    await sql.get('SELECT 1 AS ok');
    if (opts.migrations) {
      const version = await applyPostgresMigrations(sql, opts.migrations, log);
      log.debug({ version }, 'database open');
    }
    return sql;
  } catch (e) {
    await sql.close().catch(() => undefined);
    throw fromPostgresError(e, what);
  }
}

function definedOnly(o: PostgresSqlOptions): Partial<Record<keyof typeof POSTGRES_DEFAULTS, number>> {
  const out: Partial<Record<keyof typeof POSTGRES_DEFAULTS, number>> = {};
  for (const k of Object.keys(POSTGRES_DEFAULTS) as (keyof typeof POSTGRES_DEFAULTS)[]) {
    const v = (o as unknown as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v as number;
  }
  return out;
}

/** "database postgres://host:port/name": what errors and logs name (never the user's password). */
export function describeUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DepotsyncError('bad-input', `database URL is not a valid URL`, {
      hint: 'write it as postgres://user:password@host:5432/database',
    });
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new DepotsyncError('bad-input', `database URL must start with postgres://, got ${u.protocol}//…`, {
      hint: 'write it as postgres://user:password@host:5432/database',
    });
  }
  return `database ${u.protocol}//${u.host}${u.pathname}`;
}

/** The schema version table; one row. */
const VERSION_TABLE = 'schema_version';

export async function postgresSchemaVersion(sql: Sql): Promise<number> {
  const t = await sql.get<{ t: string | null }>(`SELECT to_regclass('${VERSION_TABLE}')::text AS t`);
  if (!t?.t) return 0;
  const row = await sql.get<{ version: number }>(`SELECT version FROM ${VERSION_TABLE}`);
  return row?.version ?? 0;
}

/**
 * Apply every step newer than the database's version, each in one transaction under the writer lock, so
 * two masters starting at once do not both migrate (the second sees the new version and skips). A
 * database of a newer version than the code knows is refused: an older depotsync could corrupt it.
 */
export async function applyPostgresMigrations(
  sql: PostgresSql,
  migrations: readonly PostgresMigration[],
  logger: Logger,
): Promise<number> {
  const problems: string[] = [];
  migrations.forEach((m, i) => {
    if (!Number.isSafeInteger(m.version) || m.version < 1)
      problems.push(`step #${i + 1} has no valid version`);
    else if (i > 0 && m.version <= migrations[i - 1]!.version)
      problems.push(`step v${m.version} does not come after v${migrations[i - 1]!.version}`);
    if (typeof m.name !== 'string' || m.name.trim() === '') problems.push(`step v${m.version} has no name`);
  });
  if (problems.length)
    throw new DepotsyncError('internal', `${sql.what}: invalid migration list: ${problems.join('; ')}`);
  const known = migrations.at(-1)?.version ?? 0;
  const refuseNewer = (found: number): never => {
    throw new DepotsyncError(
      'conflict',
      `${sql.what}: database schema v${found} is newer than this depotsync (knows v${known})`,
      { hint: 'upgrade depotsync' },
    );
  };
  const start = await postgresSchemaVersion(sql);
  if (start > known) refuseNewer(start);
  for (const m of migrations) {
    if (m.version <= start) continue;
    const applied = await sql.transaction(async () => {
      await sql.exec(`CREATE TABLE IF NOT EXISTS ${VERSION_TABLE} (version INTEGER NOT NULL)`);
      const current = await postgresSchemaVersion(sql);
      if (current > known) refuseNewer(current);
      if (current >= m.version) return false;
      try {
        await sql.exec(m.up);
      } catch (e) {
        if (e instanceof DepotsyncError && e.code !== 'internal') throw e;
        throw new DepotsyncError(
          'internal',
          `${sql.what}: migration v${m.version} (${m.name}) failed: ${(e as Error).message}`,
          {
            hint: 'the database was left at the previous schema version; report this with the log',
            cause: e,
          },
        );
      }
      await sql.run(`DELETE FROM ${VERSION_TABLE}`);
      await sql.run(`INSERT INTO ${VERSION_TABLE} (version) VALUES (?)`, [m.version]);
      return true;
    });
    if (applied) logger.info({ version: m.version, migration: m.name }, 'database migrated');
  }
  return postgresSchemaVersion(sql);
}

/**
 * `?` → `$1, $2, …`, outside string literals ('…'), quoted identifiers ("…"), dollar-quoted bodies and
 * comments.
 */
export function numberPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      const end = closingQuote(sql, i, c);
      out += sql.slice(i, end);
      i = end;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      const stop = end < 0 ? sql.length : end + 2;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '$' && /^\$[A-Za-z_]*\$/.test(sql.slice(i)) && !/[\w$]/.test(sql[i - 1] ?? ' ')) {
      const tag = /^\$[A-Za-z_]*\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      const stop = end < 0 ? sql.length : end + tag.length;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '?') {
      out += `$${++n}`;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Index just past the quote closing the literal that opens at `start` (a doubled quote is an escaped one). */
function closingQuote(sql: string, start: number, q: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === q) {
      if (sql[i + 1] === q) i += 2;
      else return i + 1;
    } else i++;
  }
  return sql.length;
}

/** A statement that cannot change anything: runs on any pooled connection and may be retried. */
function isReadOnly(sql: string): boolean {
  const s = sql.trimStart();
  const read =
    /^(select|show|values|explain)\b/i.test(s) ||
    // A CTE that names no writing verb anywhere (a false alarm only costs the writer lock).
    (/^with\b/i.test(s) && !/\b(insert|update|delete|merge)\b/i.test(s));
  if (!read) return false;
  return !/\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b/i.test(s) && !/\binto\b/i.test(s);
}

function bind(params: SqlParams): unknown[] {
  return params.map((v: SqlValue) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
}

class UnsafeInteger extends Error {}

function safeInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new UnsafeInteger(`the value ${text} is not a safe integer (beyond ±2^53-1)`);
  }
  return n;
}

const INT8 = 20;
const NUMERIC = 1700;

/** int8 and numeric come back as numbers (refused when an integer is beyond the safe range); the rest as pg parses them. */
function typeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (format === undefined || format === 'text') {
    if (oid === INT8) return safeInteger;
    if (oid === NUMERIC) return (t: string) => (/^-?\d+$/.test(t) ? safeInteger(t) : Number(t));
  }
  return (
    format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text')
  ) as (value: string) => unknown;
}

function mark(e: unknown, flag: symbol): unknown {
  if (e !== null && typeof e === 'object') (e as Record<symbol, unknown>)[flag] = true;
  return e;
}

/**
 * Errors the server reports for a statement it did not run or rolled back because it is going away keep
 * NOT_EXECUTED, so a lone read or write is tried again after a restart.
 */
function withSqlState(e: unknown): unknown {
  const code = (e as { code?: unknown })?.code;
  if (code === '57P01' || code === '57P02' || code === '57P03') mark(e, NOT_EXECUTED);
  // pg refuses a query on a connection it already knows is broken, before sending anything.
  if (/not queryable|Client was closed/i.test((e as Error)?.message ?? '')) mark(e, NOT_EXECUTED);
  return e;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** The connection (or the server behind it) went away, as opposed to the statement being wrong. */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof DepotsyncError) return false;
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true;
    if (/^(08...|57P0[123])$/.test(code)) return true;
  }
  const message = (e as Error)?.message ?? '';
  return /Connection terminated|connection timeout|timeout expired|not queryable|Client was closed|server closed the connection/i.test(
    message,
  );
}

/** Map an error of pg (SQLSTATE in `code`) or of the socket to a typed error naming the database. */
export function fromPostgresError(e: unknown, what: string): DepotsyncError {
  if (e instanceof DepotsyncError) return e;
  if (e instanceof UnsafeInteger) {
    return new DepotsyncError('too-large', `${what}: ${e.message}`, {
      hint: 'read the value as text (CAST … AS TEXT) or keep it within the safe integer range',
      cause: e,
    });
  }
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : String(e);
  if (code === '28P01' || code === '28000') {
    return new DepotsyncError('unauthorized', `${what}: the server refused the login (${message})`, {
      hint: 'check the user name and password in database.url in master.json',
      cause: e,
    });
  }
  if (code === '3D000') {
    return new DepotsyncError('not-found', `${what}: no such database (${message})`, {
      hint: 'create it first (createdb, owned by the user in database.url) or correct database.url',
      cause: e,
    });
  }
  if (code.startsWith('23')) return new DepotsyncError('conflict', `${what}: ${message}`, { cause: e });
  if (code === '40001') {
    return new DepotsyncError('conflict', `${what}: ${message}`, { hint: 'try again', cause: e });
  }
  if (code === '53100') {
    return new DepotsyncError('disk-full', `${what}: the database server has no space left (${message})`, {
      hint: 'free disk space on the database server; the last committed state is intact',
      cause: e,
    });
  }
  if (code === '57014' || code === '55P03' || code === '25P03' || code === '40P01') {
    return new DepotsyncError('timeout', `${what}: ${message}`, {
      hint: 'another master or a long statement held the database; try again, and check for stuck sessions (pg_stat_activity)',
      cause: e,
    });
  }
  if (/timeout exceeded when trying to connect/i.test(message)) {
    return new DepotsyncError('timeout', `${what}: every pooled connection stayed busy (${message})`, {
      hint: 'the database is slow or overloaded; try again, or raise maxConnections',
      cause: e,
    });
  }
  if (code === '25P02') {
    return new DepotsyncError('internal', `${what}: ${message}`, {
      hint: 'a statement failed inside the transaction and the code went on; run statements that may fail in a nested transaction (savepoint)',
      cause: e,
    });
  }
  if (isConnectionError(e)) {
    return new DepotsyncError('network', `${what}: cannot reach the database server (${message})`, {
      hint: 'check that PostgreSQL is running and reachable at the host and port of database.url',
      cause: e,
    });
  }
  return new DepotsyncError('internal', `${what}: ${message}`, { cause: e });
}
