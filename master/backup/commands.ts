import { optionalString, requireString } from '../../src/command/args.js';
import type { Command } from '../../src/command/command.js';
import { DepotsyncError } from '../../src/errors.js';
import { formatBytes } from '../../src/format.js';

/** `depotsync master backup|restore`; master/commands.ts registers them. Modules load lazily. */
export const backupCommands: Command[] = [
  {
    path: ['master', 'backup'],
    usage: 'master backup --dir M [--passphrase-file FILE] [--out DIR] [--json]',
    summary:
      'encrypted backup of the whole master (database, store, keys, CA, configuration) into M/backups/ or --out DIR, safe while it serves; the passphrase from --passphrase-file or DEPOTSYNC_BACKUP_PASSPHRASE; --json: {file,bytes,files,removed}',
    options: {
      dir: { type: 'string' as const },
      'passphrase-file': { type: 'string' as const },
      out: { type: 'string' as const },
    },
    async run(c) {
      const { openMaster } = await import('../context.js');
      const { backupOpenMaster } = await import('./run.js');
      const ctx = await openMaster(requireString(c.values, 'dir', 'master backup'), c.log);
      try {
        const r = await backupOpenMaster(ctx, {
          actor: 'cli',
          passphraseFile: optionalString(c.values, 'passphrase-file'),
          dir: optionalString(c.values, 'out'),
        });
        return {
          json: { file: r.file, bytes: r.bytes, files: r.files, removed: r.removed },
          human: `master backed up to ${r.file} (${r.files} files, ${formatBytes(r.bytes)}, ${r.durationMs} ms)${r.removed.length ? `; ${r.removed.length} older backup(s) removed` : ''}`,
        };
      } finally {
        await ctx.close();
      }
    },
  },
  {
    path: ['master', 'restore'],
    usage:
      'master restore --dir M [--passphrase-file FILE] [--fingerprint FP] [--version-step N] FILE [--json]',
    summary:
      'a whole master from an encrypted backup into a new or empty folder M, with versions moved past what the fleet saw; --fingerprint checks it is the master the fleet pins; --json: {dir,fingerprint,backupCreatedAt,files,fromGeneration,generation}',
    options: {
      dir: { type: 'string' as const },
      'passphrase-file': { type: 'string' as const },
      fingerprint: { type: 'string' as const },
      'version-step': { type: 'string' as const },
    },
    positionals: [1, 1],
    async run(c) {
      const { restoreMaster } = await import('./restore.js');
      const { readPassphrase } = await import('./backup.js');
      const stepText = optionalString(c.values, 'version-step');
      const step = stepText === undefined ? undefined : Number(stepText);
      if (step !== undefined && (!Number.isSafeInteger(step) || step < 1 || step > 2 ** 40))
        throw new DepotsyncError(
          'usage',
          `master restore: --version-step must be a positive integer, got ${stepText}`,
        );
      const fingerprint = optionalString(c.values, 'fingerprint');
      const r = await restoreMaster(
        requireString(c.values, 'dir', 'master restore'),
        c.positionals[0] as string,
        {
          passphrase: readPassphrase(optionalString(c.values, 'passphrase-file')),
          log: c.log,
          ...(fingerprint ? { expectFingerprint: fingerprint } : {}),
          ...(step ? { versionStep: step } : {}),
        },
      );
      return {
        json: {
          dir: r.dir,
          fingerprint: r.fingerprint,
          backupCreatedAt: r.backupCreatedAt,
          files: r.files,
          fromGeneration: r.epoch.fromGeneration,
          generation: r.epoch.generation,
        },
        human: `master ${r.masterName} restored into ${r.dir} from the backup of ${r.backupCreatedAt} (${r.files} files); generation ${r.epoch.fromGeneration} → ${r.epoch.generation} (versions advanced by ${r.epoch.versionStep}); start it with: depotsync master serve --dir ${r.dir}`,
      };
    },
  },
];
