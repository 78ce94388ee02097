import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { loadDepotConfig } from '../config.js';
import { openDepot, type Depot, type OpenDepotOptions } from '../depot.js';
import { depotLayout } from '../layout.js';
import type { SyncStore } from '../sync/chunks.js';
import { SyncEngine, type SyncResult } from '../sync/engine.js';
import { pruneUnreferenced } from '../sync/prune.js';
import { BundleFile } from './bundle-file.js';
import { bundlePairsFor } from '../sync/chunk-delta.js';
import { BundleUpstream } from './bundle-upstream.js';
import { importEnrollmentReply } from './enroll.js';
import { writeStatusFile } from './status-file.js';
import { verifyBundleSignature } from './verify.js';
import { readBundleWindow, saveWindow } from './window.js';

export interface ImportResult {
  kind: 'update' | 'enrollment';
  file: string;
  /** The generation served after the import (null: an enrollment reply). */
  generation: number | null;
  chunksImported: number;
  /** Bytes read from the bundle (records as stored: compressed where the master stored them so). */
  bytesImported: number;
  /** Bytes of the chunk records (and deltas) read, as in the file. */
  chunkWireBytes: number;
  /** Plain bytes of the chunks stored. */
  chunkPlainBytes: number;
  switched: boolean;
  /** End of the validity window of the generation now served. */
  validUntil: string | null;
  statusFile?: string;
}

export interface ImportOptions {
  logger: Logger;
  now?: () => Date;
  /** The depot `depot serve` has open (the inbox); otherwise the depot is opened and closed here. */
  depot?: Depot;
  open?: Partial<OpenDepotOptions>;
  /** Wrap the store the import writes to (tests inject a full disk). */
  wrapStore?: (store: Depot['store']) => SyncStore;
  /** Verified chunk bytes per durable store call (default bundle-upstream.ts STORE_BATCH_BYTES). */
  storeBatchBytes?: number;
}

/**
 * `depot import --dir D FILE` and the inbox: an offline bundle (update) or an enrollment reply. Both
 * are bound to this depot by name and signed by the master's timestamp key (verify.ts). An update runs
 * the SAME sync engine as the online path, with the bundle as its upstream, so the TUF workflow, the
 * manifest checks, the per-chunk hash checks, the resumable chunk writes and the atomic switch are
 * the online ones; a re-run after an interruption resumes from what is stored.
 */
export async function importFile(dir: string, path: string, o: ImportOptions): Promise<ImportResult> {
  const layout = depotLayout(dir);
  const config = loadDepotConfig(layout.config);
  const file = await BundleFile.open(path);
  try {
    const s = file.header.signed;
    // Threat: a bundle or reply made for another depot (its window and identity are not ours to use).
    if (s.depot !== config.name) {
      const sealed = s.encryption
        ? ` (encrypted for its certificate serial ${s.encryption.certificateSerial})`
        : '';
      throw new DepotsyncError(
        'forbidden',
        `${file.what} is for depot ${s.depot}${sealed}, this depot is ${config.name}`,
        {
          hint: `export a bundle for ${config.name} (depotsync master export --depot ${config.name})`,
        },
      );
    }
    if (s.purpose === 'enrollment') {
      const r = await importEnrollmentReply(layout, config, file, o.logger);
      return {
        kind: 'enrollment',
        file: path,
        generation: null,
        chunksImported: 0,
        bytesImported: 0,
        chunkWireBytes: 0,
        chunkPlainBytes: 0,
        switched: false,
        validUntil: r.notAfter,
      };
    }
    const depot = o.depot ?? openDepot(dir, { logger: o.logger, ...o.open });
    try {
      return await importUpdate(depot, file, o);
    } finally {
      if (!o.depot) await depot.close();
    }
  } finally {
    await file.close();
  }
}

/**
 * An encrypted bundle: it names the certificate serial whose key its content key is
 * wrapped for; it must be this depot's current certificate, whose private key unwraps it. Nothing of
 * the bundle beyond its plaintext header is read before this.
 */
export function unlockForDepot(file: BundleFile, depot: Pick<Depot, 'creds' | 'config'>): void {
  const e = file.encryption;
  if (!e) return;
  const mine = certificateInfo(depot.creds.certPem).serial;
  if (mine !== e.certificateSerial) {
    throw new DepotsyncError(
      'forbidden',
      `${file.what} is encrypted for depot ${file.header.signed.depot}'s certificate serial ${e.certificateSerial}; this depot's certificate is serial ${mine}, whose key cannot decrypt it`,
      {
        hint: `the depot's certificate changed since the export; export the bundle again (depotsync master export --depot ${depot.config.name} --encrypt), which encrypts for the certificate on record`,
      },
    );
  }
  file.unlock(depot.creds.keyPem);
}

/** Freshness, rollback and base checks of an update bundle, with messages that say what to do. */
function checkUpdate(file: BundleFile, depot: Depot, now: Date): void {
  const s = file.header.signed;
  // Freeze attack across the air gap: the window the master signed is the limit.
  if (now.getTime() >= Date.parse(s.validUntil)) {
    throw new DepotsyncError(
      'expired',
      `${file.what}: its validity window closed at ${s.validUntil} (now ${now.toISOString()})`,
      {
        hint: `export a fresh bundle (depotsync master export --depot ${s.depot})`,
      },
    );
  }
  const served = depot.db.served();
  const g = served?.generation ?? 0;
  // Rollback attack: never go back to an older generation (or an older timestamp of the same one).
  if (
    s.toGeneration < g ||
    (served && s.toGeneration === g && s.timestampVersion < served.timestampVersion)
  ) {
    throw new DepotsyncError(
      'version-rollback',
      `${file.what} brings generation ${s.toGeneration} (timestamp v${s.timestampVersion}), older than generation ${g} (timestamp v${served?.timestampVersion}) this depot serves`,
      {
        hint: 'it is an old bundle; import the newest one, or export a new one',
      },
    );
  }
  if (s.fromGeneration > g) {
    throw new DepotsyncError(
      'conflict',
      `${file.what} starts at generation ${s.fromGeneration}, but this depot serves generation ${g || 'nothing yet'}`,
      {
        hint: `export a bundle for it with: depotsync master export --depot ${s.depot} --from ${g}`,
      },
    );
  }
}

async function importUpdate(depot: Depot, file: BundleFile, o: ImportOptions): Promise<ImportResult> {
  const now = o.now ?? (() => new Date());
  const s = file.header.signed;
  const root = depot.db.trustedLoad('root');
  if (!root)
    throw new DepotsyncError('not-found', `depot ${depot.layout.dir}: no trusted root`, {
      hint: 'run depotsync depot init first',
    });
  unlockForDepot(file, depot);
  const signedBy = await verifyBundleSignature(file, root);
  checkUpdate(file, depot, now());
  const windowJson = await readBundleWindow(file, signedBy);
  const issuedAt = new Date(s.issuedAt);
  const engine = new SyncEngine({
    db: depot.db,
    store: o.wrapStore ? o.wrapStore(depot.store) : depot.store,
    upstream: new BundleUpstream(file, depot.db.served()?.generation ?? 0, o.storeBatchBytes, () =>
      bundlePairsFor(depot.db),
    ),
    caPem: depot.creds.caPem,
    fingerprint: depot.config.fingerprint,
    config: depot.config.sync,
    logger: depot.log,
    now,
    // Judged as of the export (signed), while the window is open: see window.ts.
    verifyAt: () => issuedAt,
    dataDir: depot.layout.dir,
    onRevocations: (list) => depot.revocations.set(list),
    deltaCache: depot.deltas,
  });
  let r: SyncResult;
  try {
    r = await engine.sync();
  } catch (e) {
    await writeStatusFile({ ...depot, name: depot.config.name }, { chunks: 0, bytes: 0, now: now() }).catch(
      () => undefined,
    );
    throw e;
  }
  const w = await saveWindow(depot.db, depot.layout.dir, s, windowJson, now());
  const status = await writeStatusFile(
    { ...depot, name: depot.config.name },
    { chunks: r.chunksFetched, bytes: r.bytesFetched, now: now() },
  );
  if (r.switched) {
    await engine
      .exclusive('gc', () => pruneUnreferenced(depot, { graceMs: depot.config.gc.graceMs }))
      .catch((e: unknown) => {
        depot.log.error({ err: (e as Error).message }, 'garbage collection after the import failed');
      });
  }
  depot.log.info(
    { file: file.path, generation: r.generation, chunks: r.chunksFetched, validUntil: w.validUntil },
    'offline bundle imported',
  );
  return {
    kind: 'update',
    file: file.path,
    generation: r.generation,
    chunksImported: r.chunksFetched,
    bytesImported: r.bytesFetched,
    chunkWireBytes: r.chunkWireBytes,
    chunkPlainBytes: r.chunkPlainBytes,
    switched: r.switched,
    validUntil: w.validUntil,
    statusFile: status.file,
  };
}
