import { requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';
import { formatBytes } from '../../src/format.js';

/** `depotsync master gc`; master/commands.ts registers it. Modules load lazily. */
export const maintenanceCommands: Command[] = [
  {
    path: ['master', 'gc'],
    usage: 'master gc --dir M [--json]',
    summary:
      'collect chunks no live version references and prune old status reports and audit entries (refused while the master serves: it does this on its gcIntervalHours schedule); --json: {gc,retention}',
    options: { dir: { type: 'string' as const } },
    async run(c) {
      const dir = requireString(c.values, 'dir', 'master gc');
      const { acquireMasterLock } = await import('../backup/lock.js');
      const { openMaster } = await import('../context.js');
      const { runMaintenance } = await import('./schedule.js');
      // A serving master runs GC itself; refusing here keeps pack compaction out of its readers' way.
      const { existsSync } = await import('node:fs');
      const { masterLayout } = await import('../layout.js');
      const { DepotsyncError, isDepotsyncError } = await import('../../src/errors.js');
      let lock: { release(): void } | undefined;
      try {
        // No master.json: openMaster below says so (and no lock file is left in a stranger's folder).
        if (existsSync(masterLayout(dir).config)) lock = acquireMasterLock(dir, 'gc');
      } catch (e) {
        if (!isDepotsyncError(e, 'conflict')) throw e;
        throw new DepotsyncError('conflict', `master gc: ${(e as Error).message}`, {
          hint: 'a serving master collects garbage itself every gcIntervalHours (master.json); or stop it and run master gc',
          cause: e,
        });
      }
      try {
        const ctx = await openMaster(dir, c.log);
        try {
          const r = await runMaintenance(ctx, { actor: 'cli' });
          return {
            json: r,
            human:
              `gc: ${r.gc.removed} chunk(s) removed, ${formatBytes(Math.max(0, r.gc.bytesFreed))} freed, ${r.gc.liveChunks} live chunk(s) kept ` +
              `(${r.gc.packsCompacted} pack(s) compacted, ${r.gc.durationMs} ms); pruned ${r.retention.statusPruned} status report(s) ` +
              `and ${r.retention.auditPruned} audit entr${r.retention.auditPruned === 1 ? 'y' : 'ies'}`,
          };
        } finally {
          await ctx.close();
        }
      } finally {
        lock?.release();
      }
    },
  },
];
