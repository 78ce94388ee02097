import type { Sql } from '../../src/db/sql.js';

/** One table as the database itself describes it (not as the code thinks it is). */
export interface TableInfo {
  name: string;
  /** In declaration order. */
  columns: { name: string; notNull: boolean }[];
  primaryKey: string[];
  /** Tables this one references (itself excluded). */
  references: string[];
  /** The identity (SQLite: rowid alias) column filled when omitted, if any. */
  identity: string | undefined;
}

/** Bookkeeping tables that are not part of the catalog. */
const INTERNAL = new Set(['schema_version']);

/** Every catalog table of the database, by name, read from the database's own catalog. */
export async function describeTables(sql: Sql): Promise<TableInfo[]> {
  return sql.dialect === 'sqlite' ? describeSqlite(sql) : describePostgres(sql);
}

async function describeSqlite(sql: Sql): Promise<TableInfo[]> {
  const tables = await sql.all<{ name: string; ddl: string }>(
    "SELECT name, sql AS ddl FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  );
  const out: TableInfo[] = [];
  for (const t of tables) {
    if (INTERNAL.has(t.name)) continue;
    const cols = await sql.all<{ name: string; not_null: number; pk: number; type: string }>(
      `SELECT name, "notnull" AS not_null, pk, type FROM pragma_table_info('${t.name.replace(/'/g, "''")}') ORDER BY cid`,
    );
    const fks = await sql.all<{ ref: string }>(
      `SELECT DISTINCT "table" AS ref FROM pragma_foreign_key_list('${t.name.replace(/'/g, "''")}')`,
    );
    const pk = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
    const rowidAlias =
      pk.length === 1 && pk[0]!.type.toUpperCase() === 'INTEGER' && !/WITHOUT\s+ROWID/i.test(t.ddl);
    out.push({
      name: t.name,
      // A primary key column is NOT NULL on PostgreSQL whatever it says; SQLite allows NULL in some.
      columns: cols.map((c) => ({ name: c.name, notNull: c.not_null === 1 || c.pk > 0 })),
      primaryKey: pk.map((c) => c.name),
      references: fks.map((f) => f.ref).filter((r) => r !== t.name),
      identity: rowidAlias ? pk[0]!.name : undefined,
    });
  }
  return out;
}

async function describePostgres(sql: Sql): Promise<TableInfo[]> {
  const cols = await sql.all<{
    table_name: string;
    column_name: string;
    is_nullable: string;
    is_identity: string;
  }>(
    `SELECT c.table_name AS table_name, c.column_name AS column_name, c.is_nullable AS is_nullable,
            c.is_identity AS is_identity
       FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
      WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
      ORDER BY c.table_name, c.ordinal_position`,
  );
  const pks = await sql.all<{ table_name: string; column_name: string }>(
    `SELECT cl.relname AS table_name, a.attname AS column_name
       FROM pg_constraint con
       JOIN pg_class cl ON cl.oid = con.conrelid
       JOIN pg_namespace n ON n.oid = cl.relnamespace
       JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) ON TRUE
       JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum
      WHERE con.contype = 'p' AND n.nspname = current_schema()
      ORDER BY cl.relname, k.ord`,
  );
  const fks = await sql.all<{ table_name: string; ref: string }>(
    `SELECT DISTINCT cl.relname AS table_name, ref.relname AS ref
       FROM pg_constraint con
       JOIN pg_class cl ON cl.oid = con.conrelid
       JOIN pg_class ref ON ref.oid = con.confrelid
       JOIN pg_namespace n ON n.oid = cl.relnamespace
      WHERE con.contype = 'f' AND n.nspname = current_schema()`,
  );
  const byName = new Map<string, TableInfo>();
  for (const c of cols) {
    if (INTERNAL.has(c.table_name)) continue;
    let t = byName.get(c.table_name);
    if (!t) {
      t = { name: c.table_name, columns: [], primaryKey: [], references: [], identity: undefined };
      byName.set(c.table_name, t);
    }
    t.columns.push({ name: c.column_name, notNull: c.is_nullable === 'NO' });
    if (c.is_identity === 'YES') t.identity = c.column_name;
  }
  for (const p of pks) byName.get(p.table_name)?.primaryKey.push(p.column_name);
  for (const f of fks) {
    const t = byName.get(f.table_name);
    if (t && f.ref !== f.table_name) t.references.push(f.ref);
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The tables in an order where every table comes after the tables it references (copying, loading). */
export function foreignKeyOrder(tables: readonly TableInfo[]): TableInfo[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const done = new Set<string>();
  const out: TableInfo[] = [];
  const visit = (t: TableInfo, path: Set<string>) => {
    if (done.has(t.name)) return;
    if (path.has(t.name)) throw new Error(`foreign keys form a cycle through ${t.name}`);
    path.add(t.name);
    for (const r of [...t.references].sort()) {
      const dep = byName.get(r);
      if (dep) visit(dep, path);
    }
    path.delete(t.name);
    done.add(t.name);
    out.push(t);
  };
  for (const t of tables) visit(t, new Set());
  return out;
}
