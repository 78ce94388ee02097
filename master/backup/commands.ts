import { requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';
import { formatBytes } from '../../src/format.js';

/** `depotsync master backup|restore`; master/commands.ts registers them. Modules load lazily. */
const dirOption = { dir: { type: 'string' as const } };

export const backupCommands: Command[] = [
  {
    path: ['master', 'backup'],
    usage: 'master backup --dir M [--json]',
    summary:
      "online backup of the master's database into M/backups/ (safe while it serves); --json: {file,bytes,removed}",
    options: dirOption,
    async run(c) {
      const { openMaster } = await import('../context.js');
      const { backupDatabase } = await import('./backup.js');
      const ctx = await openMaster(requireString(c.values, 'dir', 'master backup'), c.log);
      try {
        const r = await backupDatabase({
          db: ctx.db,
          dir: ctx.layout.backups,
          retainCount: ctx.config.backupRetainCount,
          actor: 'cli',
          log: c.log,
        });
        return {
          json: { file: r.file, bytes: r.bytes, removed: r.removed },
          human: `database backed up to ${r.file} (${formatBytes(r.bytes)}, ${r.durationMs} ms)${r.removed.length ? `; ${r.removed.length} older backup(s) removed` : ''}`,
        };
      } finally {
        await ctx.close();
      }
    },
  },
  {
    path: ['master', 'restore'],
    usage: 'master restore --dir M FILE [--json]',
    summary:
      "replace the master's database with a backup (refused while the master serves; the current one is kept aside); --json: {restored,schemaVersion,keptAside}",
    options: dirOption,
    positionals: [1, 1],
    async run(c) {
      const { restoreDatabase } = await import('./restore.js');
      const r = await restoreDatabase(
        requireString(c.values, 'dir', 'master restore'),
        c.positionals[0] as string,
        { log: c.log },
      );
      return {
        json: { restored: r.restored, schemaVersion: r.schemaVersion, keptAside: r.keptAside ?? null },
        human: `database restored from ${r.restored} (schema v${r.schemaVersion})${r.keptAside ? `; the previous database is kept in ${r.keptAside}` : ''}; start the master with: depotsync master serve`,
      };
    },
  },
];
