import { requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';
import { formatBytes } from '../../src/format.js';

/** `depotsync master deltas`; master/commands.ts registers it. Modules load lazily. */
export const deltaCommands: Command[] = [
  {
    path: ['master', 'deltas'],
    usage: 'master deltas --dir M [--compute] [--json]',
    summary:
      'version deltas against the previous deltaVersions versions of each package: how many are cached and missing (a serving master computes them in the background); --compute: compute the missing ones now; --json: {versionPairs,cached,missing,computed,kept,chosen,deltaBytes,chunkBytes,ms} (chosen: of the kept, made against bases chosen by content)',
    options: { dir: { type: 'string' as const }, compute: { type: 'boolean' as const } },
    async run(c) {
      const dir = requireString(c.values, 'dir', 'master deltas');
      const { openMaster } = await import('../context.js');
      const { buildDeltas, masterDeltaCache } = await import('./deltas.js');
      const { DeltaPool } = await import('../../src/deltas/pool.js');
      const ctx = await openMaster(dir, c.log);
      const pool = c.values.compute
        ? new DeltaPool({ workers: ctx.config.deltaWorkers, maxQueued: 1024, nice: 10 })
        : undefined;
      try {
        const t0 = Date.now();
        const r = await buildDeltas(ctx, masterDeltaCache(ctx), pool, {
          versions: ctx.config.deltaVersions,
          level: ctx.config.deltaLevel,
        });
        const ms = Date.now() - t0;
        return {
          json: { ...r, ms },
          human:
            `deltas: ${r.versionPairs} version pair(s), ${r.cached} cached, ${r.missing} missing` +
            (pool
              ? `; computed ${r.computed} (${r.kept} pay off, ${r.chosen} of them against bases chosen by content: ${formatBytes(r.deltaBytes)} for ${formatBytes(r.chunkBytes)} of chunks) in ${ms} ms`
              : ''),
        };
      } finally {
        await pool?.close();
        await ctx.close();
      }
    },
  },
];
