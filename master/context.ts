import { existsSync, readFileSync } from 'node:fs';
import { DepotsyncError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { loadCa, type Ca } from '../src/pki/ca.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import type { OnlineSigners } from '../src/tuf/repository.js';
import { loadMasterConfig, type MasterConfig } from './config.js';
import type { MasterDb } from './db/database.js';
import { openMasterCatalog } from './ha/catalog.js';
import { fenceByTakingLease, sharedCatalog } from './ha/signer.js';
import { OnlineKeyring, recoverKeyFiles } from './keys.js';
import { namedKeyIds } from './trust/stored.js';
import { sealPlaintextSecrets } from './admin/totp-secrets.js';
import { masterLayout, type MasterLayout } from './layout.js';

/** Everything a master command or the server works with, opened once. */
export interface MasterContext {
  layout: MasterLayout;
  config: MasterConfig;
  db: MasterDb;
  store: ChunkStore;
  signers: OnlineSigners;
  ca: Ca;
  log: Logger;
  close(): Promise<void>;
}

export async function openMaster(
  dir: string,
  log: Logger,
  opts: { now?: () => Date } = {},
): Promise<MasterContext> {
  const local = masterLayout(dir);
  if (!existsSync(local.config)) {
    throw new DepotsyncError(
      'not-found',
      `${local.dir} is not a depotsync master directory (no master.json)`,
      {
        hint: `create one with: depotsync master init --dir ${dir}`,
      },
    );
  }
  const config = loadMasterConfig(local.config);
  const layout = masterLayout(dir, config.sharedDir);
  const db = await openMasterCatalog(layout, config, { logger: log, ...(opts.now ? { now: opts.now } : {}) });
  // Several masters on one catalog: a command commits only when no other master holds the signer lease
  // (`master serve` replaces this with its own lease: master/server/serve.ts).
  if (sharedCatalog(db)) fenceByTakingLease(db, config.name, config.signerLeaseTtlMs);
  try {
    const sealed = await sealPlaintextSecrets(db);
    if (sealed > 0)
      log.info(
        { operators: sealed },
        'TOTP secrets stored in plaintext by an older version are now encrypted',
      );
  } catch (e) {
    await db.close();
    throw e;
  }
  const store = ChunkStore.open(layout.storeDir, {
    logger: log.child({ component: 'master.store' }),
    compressLevel: config.chunkCompressLevel,
  });
  await recoverKeyFiles(layout, (role) => namedKeyIds(db, role));
  const keyring = new OnlineKeyring(layout);
  keyring.current();
  const ca = loadCa(readFileSync(layout.caKey, 'utf8'), readFileSync(layout.caCert, 'utf8'));
  return {
    layout,
    config,
    db,
    store,
    // Read again when a key file changes (a rotation by another process).
    get signers() {
      return keyring.current();
    },
    ca,
    log,
    async close() {
      await store.close();
      await db.close();
    },
  };
}
