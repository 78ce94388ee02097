import { requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';

/** `depotsync master migrate`; master/commands.ts registers it. Modules load lazily. */
export const haCommands: Command[] = [
  {
    path: ['master', 'migrate'],
    usage: 'master migrate --dir M --to postgres://USER:PASSWORD@HOST:PORT/DB | --to sqlite [--json]',
    summary:
      "move a stopped master's catalog into an empty PostgreSQL database (or back into M/master.db with --to sqlite), verified by row counts and a hash of the signed metadata; master.json then names the database; --json: {from,to,tables,metadataSha256,keptSqlite,durationMs}",
    options: { dir: { type: 'string' as const }, to: { type: 'string' as const } },
    async run(c) {
      const dir = requireString(c.values, 'dir', 'master migrate');
      const to = requireString(c.values, 'to', 'master migrate');
      const { migrateBackend } = await import('../db/migrate-backend.js');
      const r = await migrateBackend(dir, to, { logger: c.log });
      const rows = r.tables.reduce((n, t) => n + t.rows, 0);
      return {
        json: r,
        human:
          `catalog moved from ${r.from} to ${r.to}: ${r.tables.length} tables, ${rows} rows, signed metadata sha256 ${r.metadataSha256} on both sides (${r.durationMs} ms)` +
          (r.keptSqlite ? `; the SQLite file is kept as ${r.keptSqlite}` : ''),
      };
    },
  },
];
