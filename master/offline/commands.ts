import { resolve } from 'node:path';
import { optionalString, requireString } from '../../src/command/args.js';
import type { CommandContext, CommandResult } from '../../src/command/command.js';
import { createProgress, formatBytes } from '../../src/command/progress.js';
import { parseDuration } from '../../src/config/validate.js';
import { DepotsyncError } from '../../src/errors.js';
import { openMaster, type MasterContext } from '../context.js';

/** The offline commands of the master role; master/commands.ts registers them. */
async function withMaster<T>(
  c: CommandContext,
  what: string,
  fn: (ctx: MasterContext) => Promise<T>,
): Promise<T> {
  const ctx = await openMaster(requireString(c.values, 'dir', what), c.log);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

export async function exportCommand(c: CommandContext): Promise<CommandResult> {
  const cmd = 'master export';
  const depot = requireString(c.values, 'depot', cmd);
  const out = resolve(requireString(c.values, 'out', cmd));
  const fromText = optionalString(c.values, 'from');
  const from = fromText === undefined ? undefined : Number(fromText);
  if (from !== undefined && (!Number.isSafeInteger(from) || from < 0))
    throw new DepotsyncError(
      'usage',
      `${cmd}: --from must be a generation number (0 for a full bundle), got ${JSON.stringify(fromText)}`,
    );
  const validText = optionalString(c.values, 'valid');
  const validMs = validText === undefined ? undefined : parseDuration(`${cmd} --valid`, validText);
  return withMaster(c, cmd, async (ctx) => {
    const { exportBundle } = await import('./export.js');
    let progress: ReturnType<typeof createProgress> | undefined;
    const r = await exportBundle(ctx, {
      depot,
      out,
      from,
      validMs,
      encrypt: c.values.encrypt === true,
      onProgress: (done, total) => {
        progress ??= createProgress('export', total);
        progress.update(done);
      },
    });
    progress?.finish();
    return {
      json: {
        file: r.file,
        bytes: r.bytes,
        fromGeneration: r.fromGeneration,
        toGeneration: r.toGeneration,
        chunks: r.chunks,
        deltaChunks: r.deltaChunks,
        chunkBytes: r.chunkBytes,
        chunkPlainBytes: r.chunkPlainBytes,
        chunkWireBytes: r.chunkWireBytes,
        manifests: r.manifests,
        validUntil: r.validUntil,
        encryptedFor: r.encryptedFor,
      },
      human:
        `bundle ${r.file}: ${formatBytes(r.bytes)} for depot ${depot}, generation ${r.fromGeneration} → ${r.toGeneration}` +
        `${r.base === 'last-report' ? ' (from its last status report)' : r.base === 'none' ? ' (full: no status report from it yet)' : ''}; ` +
        `${r.chunks} chunks whole and ${r.deltaChunks} as deltas (${formatBytes(r.chunkPlainBytes)} plain, ${formatBytes(r.chunkWireBytes)} as stored), ${r.manifests} manifests; valid until ${r.validUntil}` +
        `${r.encryptedFor ? `; encrypted for its certificate serial ${r.encryptedFor}` : ''}`,
    };
  });
}

export async function approveByFile(c: CommandContext): Promise<CommandResult> {
  const cmd = 'master approve --request';
  if (c.positionals.length)
    throw new DepotsyncError('usage', `${cmd}: give either MACHINE or --request FILE --out FILE, not both`);
  const request = requireString(c.values, 'request', cmd);
  const out = resolve(requireString(c.values, 'out', cmd));
  return withMaster(c, cmd, async (ctx) => {
    const { approveRequestFile } = await import('./approve-file.js');
    const r = await approveRequestFile(ctx, { request, out });
    return {
      json: {
        name: r.name,
        state: 'approved',
        serial: r.serial,
        notAfter: r.notAfter,
        file: r.file,
        bytes: r.bytes,
      },
      human: `${r.name} approved: certificate ${r.serial} valid until ${r.notAfter}; reply written to ${r.file} (carry it to the depot: depotsync depot import --dir D ${r.file})`,
    };
  });
}

export async function importStatusCommand(c: CommandContext): Promise<CommandResult> {
  const cmd = 'master import-status';
  const file = c.positionals[0] as string;
  return withMaster(c, cmd, async (ctx) => {
    const { importStatusFile } = await import('./import-status.js');
    const r = await importStatusFile(ctx, file);
    return {
      json: r,
      human:
        r.outcome === 'recorded'
          ? `status of ${r.machine} recorded: serving generation ${r.servedGeneration}${r.validUntil ? ` (valid until ${r.validUntil})` : ''}, reported ${r.reportedAt}`
          : `status file of ${r.machine} (sequence ${r.sequence}) is not newer than the last report; ignored`,
    };
  });
}
