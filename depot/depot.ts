import { existsSync, readFileSync } from 'node:fs';
import { DeltaCache } from '../src/deltas/cache.js';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { HttpClient } from '../src/net/client.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { configuredMasterUrls, loadDepotConfig, type DepotConfig, type SyncConfig } from './config.js';
import { learntMasterUrls, masterUrlMemory } from './sync/masters.js';
import { unionUrls, type UrlMemory } from '../src/net/url-picker.js';
import { DepotDb } from './db/depot-db.js';
import { recoverDepotCredentials } from './enroll/credential-files.js';
import { depotLayout, type DepotLayout } from './layout.js';
import { RevocationGate } from './serve/revocation-gate.js';
import { TokenBucket } from './sync/bandwidth.js';
import { readTrustedCa } from '../src/net/listener-cert.js';
import { resolveProxy } from '../src/net/proxy.js';
import type { SyncStore } from './sync/chunks.js';
import { SyncEngine } from './sync/engine.js';

export interface DepotCredentials {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** An open depot directory: settings, database, chunk store, HTTPS clients, sync engine. */
export interface Depot {
  layout: DepotLayout;
  config: DepotConfig;
  db: DepotDb;
  store: ChunkStore;
  creds: DepotCredentials;
  upstream: HttpClient;
  master: HttpClient;
  engine: SyncEngine;
  revocations: RevocationGate;
  /** The sync's bandwidth limit (rate 0 = none); a reload sets a new rate. */
  bandwidth: TokenBucket;
  /** zstd chunk deltas received from upstream, served again (src/deltas/cache.ts). */
  deltas: DeltaCache;
  log: Logger;
  close(): Promise<void>;
}

/** Most bytes of zstd deltas a depot keeps; the least recently received go first. */
export const DEPOT_DELTA_CACHE_BYTES = 2 * 1024 * 1024 * 1024;

export interface OpenDepotOptions {
  logger: Logger;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** Wrap the store the sync writes to (tests inject faults such as a full disk). */
  wrapStore?: (store: ChunkStore) => SyncStore;
  /** Override sync settings of depot.json for this process. */
  sync?: Partial<SyncConfig>;
  onStored?: (chunks: number, bytes: number) => void;
}

/** Read the depot's TLS material; a depot whose enrollment is not approved yet says so. */
export function readCredentials(layout: DepotLayout): DepotCredentials {
  if (!existsSync(layout.cert)) {
    if (existsSync(layout.enrollment)) {
      throw new DepotsyncError(
        'unauthorized',
        `depot ${layout.dir}: its enrollment is waiting for approval by the master operator`,
        {
          hint: 'ask the operator to approve it (depotsync master approve NAME), then run `depotsync depot serve`, which finishes the enrollment',
        },
      );
    }
    throw new DepotsyncError('not-found', `depot ${layout.dir}: no machine certificate (${layout.cert})`, {
      hint: 'run `depotsync depot init` first',
    });
  }
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw fromSystemError(e, `depot TLS file ${path}`);
    }
  };
  return { keyPem: read(layout.key), certPem: read(layout.cert), caPem: read(layout.caCert) };
}

export function openDepot(dir: string, opts: OpenDepotOptions): Depot {
  const layout = depotLayout(dir);
  const config = loadDepotConfig(layout.config);
  // A renewal cut short by a crash is finished (or dropped) by whichever command opens the depot first.
  const recovered = recoverDepotCredentials(layout);
  const creds = readCredentials(layout);
  const log = opts.logger.child({ depot: config.name });
  if (recovered !== 'none')
    log.warn({ recovered }, 'finished a certificate renewal that a crash interrupted');
  const sync = { ...config.sync, ...opts.sync };
  const db = DepotDb.open(layout.database, log);
  let store: ChunkStore;
  try {
    store = ChunkStore.open(layout.storeDir, { logger: log, gcGraceMs: config.gc.graceMs });
  } catch (e) {
    db.close();
    throw e;
  }
  const listenerCaPem = readTrustedCa(config.tls.caFile);
  const proxy = resolveProxy('depot.json', config);
  // Configured masters first, then those the signed depot directory listed at the last sync.
  const masterUrls = unionUrls(configuredMasterUrls(config), learntMasterUrls(db));
  const client = (baseUrl: string, alternateUrls: string[] = [], urlMemory?: UrlMemory) =>
    new HttpClient({
      baseUrl,
      alternateUrls,
      urlMemory,
      retryPreferredMs: sync.preferredMasterRetryMs,
      caPem: creds.caPem,
      listenerCaPem,
      proxy,
      certPem: creds.certPem,
      keyPem: creds.keyPem,
      timeoutMs: sync.timeoutMs,
      logger: log,
    });
  const upstreamIsMaster = config.masterUrl === config.upstreamUrl;
  const master = client(config.masterUrl, masterUrls.slice(1), masterUrlMemory(db));
  const upstream = upstreamIsMaster ? master : client(config.upstreamUrl);
  const revocations = new RevocationGate(db, creds.caPem, log);
  const bandwidth = new TokenBucket(config.schedule.bandwidthBytesPerSecond);
  const deltas = new DeltaCache({ dir: layout.deltasDir, maxBytes: DEPOT_DELTA_CACHE_BYTES, log });
  const engine = new SyncEngine({
    deltaCache: deltas,
    db,
    store: opts.wrapStore ? opts.wrapStore(store) : store,
    upstream,
    master,
    caPem: creds.caPem,
    fingerprint: config.fingerprint,
    config: sync,
    logger: log,
    bandwidth,
    dataDir: layout.dir,
    onRevocations: (list) => revocations.set(list),
    onMasterUrls: (urls) => {
      const added = master.addAlternateUrls(urls);
      if (added.length) log.info({ added }, 'master URLs from the signed depot directory added');
    },
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.sleep ? { sleep: opts.sleep } : {}),
    ...(opts.onStored ? { onStored: opts.onStored } : {}),
  });
  return {
    layout,
    config,
    db,
    store,
    creds,
    upstream,
    master,
    engine,
    revocations,
    bandwidth,
    deltas,
    log,
    async close() {
      upstream.close();
      if (master !== upstream) master.close();
      await store.close();
      db.close();
    },
  };
}
