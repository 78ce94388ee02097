import { DepotsyncError } from '../src/errors.js';
import { TufRepository, type StoredMetadata } from '../src/tuf/repository.js';
import { currentGeneration } from './db/catalog.js';
import { currentBinFiles, latestMetadata } from './db/metadata.js';
import type { MasterContext } from './context.js';

/**
 * The TUF repository rebuilt from the newest signed files in the database. Loaded fresh for each change
 * (a `master publish` in another process may have moved the catalog on), and re-verified on the way
 * in: the master distrusts its own disk too.
 */
export async function loadRepository(
  ctx: Pick<MasterContext, 'db' | 'signers' | 'config'>,
  now?: () => Date,
): Promise<TufRepository> {
  const m = ctx.db;
  const role = async (r: string): Promise<Buffer> => {
    const f = await latestMetadata(m, r);
    if (!f)
      throw new DepotsyncError('corrupt', `master database has no ${r} metadata`, {
        hint: 'restore the master directory from a backup',
      });
    return f.bytes;
  };
  const bins = new Map<string, Uint8Array>();
  for (const b of await currentBinFiles(m)) {
    if (!b.file) throw new DepotsyncError('corrupt', `master database lacks ${b.version}.${b.name}.json`);
    bins.set(b.name, b.file.bytes);
  }
  const stored: StoredMetadata = {
    root: await role('root'),
    timestamp: await role('timestamp'),
    snapshot: await role('snapshot'),
    targets: await role('targets'),
    bins,
  };
  const repo = TufRepository.load(stored, ctx.signers, {
    expiryMs: expiryOf(ctx.config),
    renewBeforeMs: {
      timestamp: ctx.config.timestampRefreshHours * 3_600_000,
      root: ctx.config.rootRenewBeforeDays * 86_400_000,
    },
    ...(now ? { now } : {}),
  });
  const gen = await currentGeneration(m);
  if (repo.generation !== gen) {
    throw new DepotsyncError(
      'corrupt',
      `master database: catalog generation ${gen} but snapshot v${repo.generation}`,
    );
  }
  return repo;
}

export function expiryOf(config: MasterContext['config']) {
  const day = 86_400_000;
  return {
    timestamp: config.timestampExpiryHours * 3_600_000,
    snapshot: config.snapshotExpiryDays * day,
    targets: config.targetsExpiryDays * day,
    bins: config.targetsExpiryDays * day,
    root: config.rootExpiryDays * day,
  };
}
