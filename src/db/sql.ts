/**
 * The one asynchronous SQL interface the master's catalog is written against (docs/architecture.md), with two
 * backends: SQLite (src/db/sqlite-sql.ts, the embedded default) and PostgreSQL (src/db/postgres-sql.ts, for
 * several masters on one database server).
 *
 * Portable SQL only, because the same statement runs on both:
 * - positional `?` placeholders (the PostgreSQL backend numbers them `$1, $2, …`; a `?` inside a quoted
 *   string literal is left alone);
 * - values are string, number (safe integers and doubles), bigint, Buffer/Uint8Array or null; booleans are
 *   stored as 0/1 integers and timestamps as ISO-8601 text, in both backends;
 * - rows come back with the column names as written in the statement: give computed columns a snake_case
 *   alias (`COUNT(*) AS n`), because PostgreSQL folds unquoted identifiers to lower case;
 * - integers come back as numbers on both backends (PostgreSQL's int8 and numeric included, refused when
 *   not a safe integer), blobs as Buffers;
 * - no `INSERT OR IGNORE/REPLACE` (use `ON CONFLICT (…) DO NOTHING / DO UPDATE`), no `lastInsertRowid`
 *   (use `RETURNING id`), no SQLite-only functions (strftime, json_*, group_concat, ifnull → COALESCE).
 *
 * Every failure is thrown as a DepotsyncError that names the database: a broken constraint is 'conflict',
 * an unreachable or restarting server 'network', a lock wait that ran out 'timeout', a full disk 'disk-full'.
 */
export type SqlValue = string | number | bigint | Buffer | Uint8Array | null;
export type SqlParams = readonly SqlValue[];
export type SqlDialect = 'sqlite' | 'postgres';

export interface SqlRunResult {
  /** Rows inserted, updated or deleted by the statement. */
  changes: number;
}

export interface Sql {
  readonly dialect: SqlDialect;
  /** What to name in errors and logs: "database /m/master.db", "database postgres://db1:5432/depotsync" (never a password). */
  readonly what: string;
  /** The first row, or undefined. */
  get<T = Record<string, unknown>>(sql: string, params?: SqlParams): Promise<T | undefined>;
  all<T = Record<string, unknown>>(sql: string, params?: SqlParams): Promise<T[]>;
  run(sql: string, params?: SqlParams): Promise<SqlRunResult>;
  /** Several statements separated by `;`, without parameters (schema steps). */
  exec(sql: string): Promise<void>;
  /**
   * Run `fn` in one write transaction and return its result; a throw rolls everything back.
   * Writers are serialized, as SQLite's BEGIN IMMEDIATE does (PostgreSQL: a transaction-scoped advisory
   * lock taken first), so read-then-write code inside `fn` sees no concurrent writer. Every query issued on
   * this Sql from `fn`'s asynchronous context joins the transaction (AsyncLocalStorage), so helpers need no
   * transaction handle; queries from other contexts wait (SQLite) or use another connection (PostgreSQL).
   * A nested call is a savepoint. Keep `fn` to database work: it holds the writer lock while it awaits.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Run `fn` in one read-only transaction: every query of `fn`'s context sees the same snapshot, without
   * the writer lock (SQLite: BEGIN DEFERRED with writes refused; PostgreSQL: REPEATABLE READ READ ONLY on
   * its own connection, so writers of every process go on meanwhile). A write inside it is refused. Inside
   * another transaction it simply joins that one.
   */
  readTransaction<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
