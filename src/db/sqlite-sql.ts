import { AsyncLocalStorage } from 'node:async_hooks';
import type { Database, Statement } from 'better-sqlite3';
import { fromSqliteError } from './errors.js';
import type { Sql, SqlParams, SqlRunResult, SqlValue } from './sql.js';

/** The asynchronous context of one transaction (one object per outermost transaction, shared by its savepoints). */
type TxFrame = Record<string, never>;

/**
 * The Sql interface (src/db/sql.ts) over one better-sqlite3 connection. Statements run synchronously, so a
 * query outside a transaction is atomic by itself; a transaction owns the connection from BEGIN IMMEDIATE
 * to COMMIT, and queries from other asynchronous contexts wait until it ends (they would otherwise join it).
 */
export class SqliteSql implements Sql {
  readonly dialect = 'sqlite' as const;
  readonly what: string;
  readonly db: Database;
  private readonly file: string | undefined;
  private readonly statements = new Map<string, Statement>();
  private readonly context = new AsyncLocalStorage<TxFrame>();
  /** Set while a transaction holds the connection; resolves when it ends. */
  private busy: Promise<void> | undefined;
  /** The frame of the transaction that holds the connection (a callback left over from an earlier one does not). */
  private active: TxFrame | undefined;
  private savepoints = 0;

  constructor(db: Database, what: string, file?: string) {
    this.db = db;
    this.what = what;
    this.file = file;
  }

  private prepare(sql: string): Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /**
   * Does another context's transaction hold the connection? Callers loop `while (this.blocked()) await
   * this.busy;` and then run their statement without a further await, so nothing slips in between.
   */
  private blocked(): boolean {
    return this.busy !== undefined && this.context.getStore() !== this.active;
  }

  private call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw fromSqliteError(e, this.what, this.file);
    }
  }

  async get<T = Record<string, unknown>>(sql: string, params: SqlParams = []): Promise<T | undefined> {
    while (this.blocked()) await this.busy;
    return this.call(() => this.prepare(sql).get(...bind(params)) as T | undefined);
  }

  async all<T = Record<string, unknown>>(sql: string, params: SqlParams = []): Promise<T[]> {
    while (this.blocked()) await this.busy;
    return this.call(() => this.prepare(sql).all(...bind(params)) as T[]);
  }

  async run(sql: string, params: SqlParams = []): Promise<SqlRunResult> {
    while (this.blocked()) await this.busy;
    return this.call(() => {
      const st = this.prepare(sql);
      if (st.reader) {
        st.all(...bind(params));
        return { changes: 0 };
      }
      return { changes: st.run(...bind(params)).changes };
    });
  }

  async exec(sql: string): Promise<void> {
    while (this.blocked()) await this.busy;
    this.call(() => this.db.exec(sql));
  }

  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.begin(fn, 'BEGIN IMMEDIATE');
  }

  readTransaction<T>(fn: () => Promise<T>): Promise<T> {
    const frame = this.context.getStore();
    if (frame !== undefined && frame === this.active) return fn();
    return this.begin(fn, 'BEGIN DEFERRED', true);
  }

  /** One transaction (a savepoint when nested); `readOnly` refuses writes (query_only) until it ends. */
  private async begin<T>(fn: () => Promise<T>, begin: string, readOnly = false): Promise<T> {
    const frame = this.context.getStore();
    if (frame !== undefined && frame === this.active) {
      const name = `sp${++this.savepoints}`;
      this.call(() => this.db.exec(`SAVEPOINT ${name}`));
      try {
        const out = await fn();
        this.call(() => this.db.exec(`RELEASE ${name}`));
        return out;
      } catch (e) {
        this.call(() => this.db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`));
        throw e;
      }
    }
    while (this.blocked()) await this.busy;
    let release!: () => void;
    this.busy = new Promise<void>((resolve) => (release = resolve));
    const own: TxFrame = {};
    this.active = own;
    try {
      this.call(() => this.db.exec(begin));
      if (readOnly) this.db.pragma('query_only = ON');
      try {
        const out = await this.context.run(own, fn);
        this.call(() => this.db.exec('COMMIT'));
        return out;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw e;
      } finally {
        if (readOnly) this.db.pragma('query_only = OFF');
      }
    } finally {
      this.busy = undefined;
      this.active = undefined;
      release();
    }
  }

  async close(): Promise<void> {
    while (this.blocked()) await this.busy;
    this.db.close();
  }
}

function bind(params: SqlParams): unknown[] {
  return params.map((v: SqlValue) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
}
