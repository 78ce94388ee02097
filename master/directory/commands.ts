import { optionalString, requireString } from '../../src/command/args.js';
import type { Command, CommandContext } from '../../src/command/command.js';
import { DepotsyncError } from '../../src/errors.js';
import type { MasterContext } from '../context.js';

/** `depotsync master directory set|remove|list`; master/commands.ts registers them. */
const dirOption = { dir: { type: 'string' as const } };

async function withMaster<T>(
  c: CommandContext,
  what: string,
  fn: (ctx: MasterContext, d: typeof import('./directory.js')) => Promise<T>,
): Promise<T> {
  const { openMaster } = await import('../context.js');
  const d = await import('./directory.js');
  const ctx = await openMaster(requireString(c.values, 'dir', what), c.log);
  try {
    return await fn(ctx, d);
  } finally {
    await ctx.close();
  }
}

const who = { actor: 'cli' };

function name(c: CommandContext, what: string): string {
  const n = c.positionals[0];
  if (!n) throw new DepotsyncError('usage', `${what}: give the depot's machine NAME`);
  return n;
}

export const directoryCommands: Command[] = [
  {
    path: ['master', 'directory', 'set'],
    usage: 'master directory set --dir M NAME --url https://HOST[:PORT] [--site SITE]',
    summary: 'add or change an approved depot in the signed depot directory agents use (a new generation)',
    options: { ...dirOption, url: { type: 'string' }, site: { type: 'string' } },
    positionals: [1, 1],
    async run(c) {
      const what = 'master directory set';
      const depot = name(c, what);
      const url = requireString(c.values, 'url', what);
      const site = optionalString(c.values, 'site');
      return withMaster(c, what, async (ctx, d) => {
        const r = await d.setDirectoryEntry(ctx, { name: depot, url, site }, who);
        const entry = r.directory.depots.find((e) => e.name === depot);
        return {
          json: {
            name: depot,
            url: entry?.url,
            site: entry?.site ?? null,
            directoryVersion: r.directory.version,
            generation: r.generation,
            changed: r.changed,
          },
          human: r.changed
            ? `depot ${depot} → ${entry?.url}${entry?.site ? ` (site ${entry.site})` : ''}: directory v${r.directory.version}, generation ${r.generation}`
            : `depot ${depot} is already in the directory exactly so (v${r.directory.version}); nothing changed`,
        };
      });
    },
  },
  {
    path: ['master', 'directory', 'remove'],
    usage: 'master directory remove --dir M NAME',
    summary: 'take a depot out of the signed depot directory (agents drop it at their next fetch)',
    options: dirOption,
    positionals: [1, 1],
    async run(c) {
      const what = 'master directory remove';
      const depot = name(c, what);
      return withMaster(c, what, async (ctx, d) => {
        const r = await d.removeDirectoryEntry(ctx, depot, who);
        return {
          json: {
            name: depot,
            removed: true,
            directoryVersion: r.directory.version,
            generation: r.generation,
          },
          human: `depot ${depot} removed from the directory: directory v${r.directory.version}, generation ${r.generation}`,
        };
      });
    },
  },
  {
    path: ['master', 'directory', 'masters'],
    usage: 'master directory masters --dir M',
    summary:
      "sign master.json's masterUrls into the depot directory, so depots and agents learn every master (a new generation)",
    options: dirOption,
    async run(c) {
      return withMaster(c, 'master directory masters', async (ctx, d) => {
        const r = await d.signMasterUrls(ctx, who);
        const urls = r.directory.masterUrls ?? [];
        return {
          json: {
            masterUrls: urls,
            directoryVersion: r.directory.version,
            generation: r.generation,
            changed: r.changed,
          },
          human: r.changed
            ? `depot directory v${r.directory.version} (generation ${r.generation}) lists ${urls.length ? urls.join(', ') : 'no master URLs'}`
            : `the depot directory already lists ${urls.length ? urls.join(', ') : 'no master URLs'} (v${r.directory.version}); nothing changed`,
        };
      });
    },
  },
  {
    path: ['master', 'directory', 'list'],
    usage: 'master directory list --dir M',
    summary: 'the signed depot directory: each depot, its URL, site and machine state',
    options: dirOption,
    async run(c) {
      return withMaster(c, 'master directory list', async (ctx, d) => {
        const r = await d.readDirectory(ctx);
        const lines = r.entries.map(
          (e) =>
            `${e.name.padEnd(20)} ${e.url}  ${e.site ? `site ${e.site}` : 'no site'}${e.state === 'approved' ? '' : `  (machine ${e.state}: remove it)`}`,
        );
        return {
          json: {
            directoryVersion: r.directory.version,
            generation: r.generation,
            depots: r.entries,
            masterUrls: r.directory.masterUrls ?? [],
          },
          human: [
            `depot directory v${r.directory.version} (generation ${r.generation}): ${r.entries.length} depot(s)`,
            ...(r.directory.masterUrls?.length ? [`masters: ${r.directory.masterUrls.join(', ')}`] : []),
            ...lines,
          ].join('\n'),
        };
      });
    },
  },
];
