import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { loadOrCreateKey, totpKeyPath } from './admin/totp-secrets.js';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { DepotsyncError } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import type { Logger } from '../src/log.js';
import { createCa, issueServerCertificate, loadCa } from '../src/pki/ca.js';
import { rootCaFields } from '../src/tuf/root-ca.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { TufRepository } from '../src/tuf/repository.js';
import { DEFAULT_MASTER_CONFIG, validateMasterConfig, type MasterConfig } from './config.js';
import { commitGeneration } from './db/commit.js';
import { openMasterDatabase } from './db/database.js';
import { recordAudit } from './db/audit.js';
import { createRoleKeys } from './keys.js';
import { masterLayout } from './layout.js';
import { expiryOf } from './repository.js';
import { publishRevocationList } from './revocations.js';

export interface InitResult {
  dir: string;
  fingerprint: string;
  rootFile: string;
  /** The root private key files (in M/keys, or in the offline folder). */
  rootKeyFiles: string[];
  rootThreshold: number;
}

/**
 * `depotsync master init`: role keys (0600), root v1 and the empty catalog (generation 1), the internal
 * CA and the master's server certificate, the database, and master.json. Prints the root fingerprint:
 * the SHA-256 of the exact bytes of 1.root.json, which depots and agents pin.
 */
export interface InitOptions {
  name?: string;
  hosts?: string[];
  log: Logger;
  config?: Partial<MasterConfig>;
  /** Root keys and the threshold of signatures root metadata needs (default 1 of 1). */
  rootKeys?: number;
  rootThreshold?: number;
  /**
   * Write the root private keys into this folder (e.g. removable media) instead of M/keys: the
   * root is offline from the start.
   */
  offlineRootDir?: string;
}

export async function initMaster(dir: string, opts: InitOptions): Promise<InitResult> {
  const layout = masterLayout(dir);
  const rootKeys = opts.rootKeys ?? 1;
  const rootThreshold = opts.rootThreshold ?? 1;
  if (!Number.isSafeInteger(rootKeys) || rootKeys < 1 || rootKeys > 32) {
    throw new DepotsyncError(
      'usage',
      `master init: --root-keys must be an integer from 1 to 32, got ${JSON.stringify(opts.rootKeys)}`,
    );
  }
  if (!Number.isSafeInteger(rootThreshold) || rootThreshold < 1 || rootThreshold > rootKeys) {
    throw new DepotsyncError(
      'usage',
      `master init: --root-threshold must be an integer from 1 to ${rootKeys} (the number of root keys), got ${JSON.stringify(opts.rootThreshold)}`,
      {
        hint: 'a root that needs more signatures than it has keys could never be renewed or rotated',
      },
    );
  }
  const offlineRootDir = opts.offlineRootDir ? resolve(opts.offlineRootDir) : undefined;
  if (offlineRootDir && (offlineRootDir === layout.dir || offlineRootDir.startsWith(`${layout.dir}/`))) {
    throw new DepotsyncError(
      'usage',
      `master init: --offline-root ${offlineRootDir} is inside the master directory; give a folder on other media`,
    );
  }
  if (
    offlineRootDir &&
    existsSync(offlineRootDir) &&
    readdirSync(offlineRootDir).some((f) => f.startsWith('root'))
  ) {
    throw new DepotsyncError(
      'already-exists',
      `master init: ${offlineRootDir} already holds root key files`,
      { hint: 'give an empty folder for the new root keys' },
    );
  }
  if (existsSync(layout.config)) {
    throw new DepotsyncError('already-exists', `${layout.dir} already holds a master (master.json exists)`, {
      hint: 'choose an empty directory; initialising again would replace the keys every depot and agent trusts',
    });
  }
  if (existsSync(layout.dir) && readdirSync(layout.dir).length > 0) {
    throw new DepotsyncError('already-exists', `${layout.dir} is not empty`, {
      hint: 'choose a new or empty directory for the master',
    });
  }
  const config = validateMasterConfig({
    ...DEFAULT_MASTER_CONFIG,
    ...opts.config,
    ...(opts.name ? { name: opts.name } : {}),
    ...(opts.hosts ? { hosts: opts.hosts } : {}),
  });
  for (const d of [
    layout.dir,
    layout.keysDir,
    `${layout.dir}/ca`,
    `${layout.dir}/tls`,
    layout.dropbox,
    layout.dropboxRejected,
    layout.backups,
  ]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  // The internal CA first: the signed root carries its certificate, so the root fingerprint every
  // machine is given authenticates the CA too (src/tuf/root-ca.ts).
  const caMaterial = createCa({ commonName: `${config.name} depotsync CA` });
  // TUF: root key (may go offline later) and the online timestamp, snapshot and targets keys.
  if (offlineRootDir) mkdirSync(offlineRootDir, { recursive: true, mode: 0o700 });
  const keys = await createRoleKeys(layout, {
    rootKeys,
    ...(offlineRootDir ? { rootDir: offlineRootDir } : {}),
  });
  const { repository, files } = TufRepository.create({
    root: {
      keys: keys.root.map((k) => k.publicKey),
      threshold: rootThreshold,
      signers: keys.root.map((k) => k.signer),
      fields: rootCaFields(caMaterial.certPem),
    },
    online: {
      timestamp: keys.timestamp.signer,
      snapshot: keys.snapshot.signer,
      targets: keys.targets.signer,
    },
    options: { binCount: config.bins as 16 | 256 | 4096, expiryMs: expiryOf(config) },
  });

  await writeFileAtomic(layout.caKey, caMaterial.keyPem, { mode: 0o600 });
  await writeFileAtomic(layout.caCert, caMaterial.certPem);
  const ca = loadCa(caMaterial.keyPem, caMaterial.certPem);
  const server = issueServerCertificate(ca, {
    commonName: config.name,
    dnsNames: config.hosts.filter((h) => !isIP(h)),
    ipAddresses: config.hosts.filter((h) => isIP(h)),
  });
  await writeFileAtomic(layout.serverKey, server.keyPem, { mode: 0o600 });
  await writeFileAtomic(layout.serverCert, server.certPem);
  // The key that encrypts operators' TOTP secrets in the database (kept out of it, with the other keys).
  loadOrCreateKey(totpKeyPath(layout.database));

  // Database and store; generation 1 with the initial metadata, in one transaction.
  const db = openMasterDatabase(layout.database, { logger: opts.log });
  try {
    const root = files.find((f) => f.role === 'root');
    if (!root) throw new DepotsyncError('internal', 'master init: no root metadata was produced');
    await commitGeneration(db, {
      generation: 1,
      createdBy: 'master init',
      note: 'empty catalog',
      timestampVersion: 1,
      bins: files.filter((f) => f.role.startsWith('bin-')).map((f) => ({ name: f.role, version: f.version })),
      metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
    });
    await recordAudit(db, {
      actor: 'cli',
      action: 'master.init',
      target: config.name,
      detail: { rootVersion: repository.rootVersion, rootKeys, rootThreshold, offlineRoot: !!offlineRootDir },
    });
    await writeFileAtomic(`${layout.dir}/1.root.json`, root.bytes);
    const store = ChunkStore.open(layout.storeDir, { logger: opts.log });
    await store.close();
    await publishRevocationList({ layout, config, ca, db, log: opts.log });
    await writeFileAtomic(layout.config, `${JSON.stringify(config, null, 2)}\n`);
    const fingerprint = createHash('sha256').update(root.bytes).digest('hex');
    const rootKeyFiles = (await import('./keys.js')).rootKeyFiles(offlineRootDir ?? layout.keysDir);
    return {
      dir: layout.dir,
      fingerprint,
      rootFile: `${layout.dir}/1.root.json`,
      rootKeyFiles,
      rootThreshold,
    };
  } finally {
    await db.close();
  }
}
