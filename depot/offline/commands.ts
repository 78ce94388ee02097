import { resolve } from 'node:path';
import { optionalString, requireString } from '../../src/command/args.js';
import type { CommandContext, CommandResult } from '../../src/command/command.js';
import { formatBytes } from '../../src/command/progress.js';
import { DepotsyncError } from '../../src/errors.js';

/** The offline commands of the depot role; depot/commands.ts registers them. */
export async function initOfflineCommand(c: CommandContext, hosts: string[]): Promise<CommandResult> {
  const cmd = 'depot init --offline';
  for (const online of ['master', 'token', 'parent', 'ca', 'ca-fingerprint', 'wait']) {
    if (c.values[online] !== undefined)
      throw new DepotsyncError('usage', `${cmd}: --${online} does not apply to an air-gapped depot`);
  }
  const { initOfflineDepot } = await import('./enroll.js');
  const { hostname } = await import('node:os');
  const r = await initOfflineDepot({
    dir: requireString(c.values, 'dir', cmd),
    fingerprint: requireString(c.values, 'fingerprint', cmd),
    rootFile: requireString(c.values, 'root', cmd),
    name: optionalString(c.values, 'name') ?? (hostname().split('.')[0] || 'depot'),
    listen: optionalString(c.values, 'listen'),
    hosts,
    log: c.log,
  });
  return {
    json: r,
    human: `air-gapped depot ${r.name} initialised in ${r.dir}; carry ${r.request} to the master (depotsync master approve --request FILE --out REPLY), then: depotsync depot import --dir ${r.dir} REPLY`,
  };
}

export async function importCommand(c: CommandContext): Promise<CommandResult> {
  const dir = requireString(c.values, 'dir', 'depot import');
  const { importFile } = await import('./import.js');
  const r = await importFile(dir, resolve(c.positionals[0] as string), { logger: c.log });
  if (r.kind === 'enrollment') {
    return {
      json: {
        kind: r.kind,
        enrolled: true,
        notAfter: r.validUntil,
        generation: null,
        chunksImported: 0,
        bytesImported: 0,
      },
      human: `enrollment complete: certificate valid until ${r.validUntil}; start the depot with: depotsync depot serve --dir ${dir}`,
    };
  }
  return {
    json: {
      generation: r.generation,
      chunksImported: r.chunksImported,
      bytesImported: r.bytesImported,
      chunkWireBytes: r.chunkWireBytes,
      chunkPlainBytes: r.chunkPlainBytes,
      switched: r.switched,
      validUntil: r.validUntil,
      statusFile: r.statusFile ?? null,
    },
    human: `generation ${r.generation}${r.switched ? ' (switched)' : ' (unchanged)'}: ${r.chunksImported} chunks (${formatBytes(r.chunkPlainBytes)} plain, ${formatBytes(r.chunkWireBytes)} in the file), ${formatBytes(r.bytesImported)} imported; valid until ${r.validUntil}; status file ${r.statusFile}`,
  };
}
