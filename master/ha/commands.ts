import { requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';

/** `depotsync master migrate` and `master join`; master/commands.ts registers them. Modules load lazily. */
export const haCommands: Command[] = [
  {
    path: ['master', 'join'],
    usage: 'master join --dir M2 --from M1 --name NAME [--host NAME]... [--json]',
    summary:
      "provision another master of M1's PostgreSQL catalog in M2: copies the signing keys, CA and admin secrets, names the same database and shared folder, issues M2 a server certificate for its hosts; --json: {dir,name,hosts,sharedDir,copied}",
    options: {
      dir: { type: 'string' as const },
      from: { type: 'string' as const },
      name: { type: 'string' as const },
      host: { type: 'string' as const, multiple: true },
    },
    async run(c) {
      const dir = requireString(c.values, 'dir', 'master join');
      const from = requireString(c.values, 'from', 'master join');
      const name = requireString(c.values, 'name', 'master join');
      const hosts = c.values.host as string[] | undefined;
      const { joinMaster } = await import('./join.js');
      const r = await joinMaster(dir, from, { name, log: c.log, ...(hosts ? { hosts } : {}) });
      return {
        json: r,
        human: `master ${r.name} provisioned in ${r.dir} (hosts ${r.hosts.join(', ')}; shared folder ${r.sharedDir}; copied ${r.copied.join(', ')}); start it with: depotsync master serve --dir ${dir} --listen HOST:PORT`,
      };
    },
  },
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
