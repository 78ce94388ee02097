import { readJsonFile } from '../src/config/json-file.js';
import { intOption, mergeDefaults, stringOption } from '../src/config/validate.js';
import { DepotsyncError } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import { logLevelOption } from '../src/config/reload.js';
import { requireHttpsUrl } from '../src/net/https-url.js';
import { checkUrlList } from '../src/net/url-picker.js';
import { decodeListenerTls, type ListenerTlsConfig } from '../src/net/listener-cert.js';
import { proxyOption } from '../src/net/proxy.js';
import { MACHINE_NAME } from '../src/pki/names.js';
import { parseWindow } from './sync/window.js';

/** When and how fast the depot syncs (units in the names). */
export interface ScheduleConfig {
  intervalMs: number;
  /** A random 0..jitterMs is added to each interval, so depots do not all ask at once. */
  jitterMs: number;
  /** Daily window "HH:MM-HH:MM" (may cross midnight, e.g. "22:00-05:00"), or "" for any time. */
  window: string;
  /** Interpret the window in UTC instead of the machine's local time. */
  windowUtc: boolean;
  /** Received bytes per second for chunk downloads; 0 = unlimited. */
  bandwidthBytesPerSecond: number;
  /** Exponential backoff after a failed sync: first retry after about backoffBaseMs, at most backoffMaxMs. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

/** How a sync downloads. */
export interface SyncConfig {
  /** Chunk bytes asked for in one `POST /v1/chunks/batch`. */
  batchMaxBytes: number;
  /** Chunk ids in one batch (the server's limit is 4096). */
  batchMaxChunks: number;
  /** Batches downloaded at the same time. */
  concurrency: number;
  /** Manifests downloaded at the same time. */
  manifestConcurrency: number;
  /** Tries per batch before the sync fails (network errors, cut connections, damaged chunks). */
  attempts: number;
  retryDelayMs: number;
  /** Network silence after which a request fails. */
  timeoutMs: number;
  /** A sync that changed nothing reports status to the master only if the last report is older than this. */
  statusEveryMs: number;
  /**
   * With several master URLs: after a failover, the URL that answered is kept this long before the
   * preferred one is tried first again (0: always try the preferred first).
   */
  preferredMasterRetryMs: number;
  /**
   * Chunk bytes stored between two durable commits (one fdatasync and index commit each): downloads
   * stream to the disk in between. A crash re-fetches at most this much.
   */
  checkpointBytes: number;
}

/** "Distribute now": an event stream to the upstream starts a sync within seconds of a new generation. */
export interface NotifyConfig {
  /** Keep an event stream open to the upstream; the interval schedule stays as the fallback. */
  enabled: boolean;
  /**
   * Reconnect after the stream drops: about reconnectBaseMs first (with jitter),
   * doubling up to reconnectMaxMs.
   */
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /** Least time between two syncs the events start (an upstream cannot make the depot sync in a loop). */
  minGapMs: number;
  /** Silence after which the stream counts as dead (the upstream sends a heartbeat about every 20 s). */
  idleTimeoutMs: number;
}

/** When a file in D/inbox/ counts as completely copied. */
export interface InboxConfig {
  /** A file must keep its size and mtime this long before it is looked at (copy tools that preallocate). */
  settleMs: number;
  /** A file shorter than its header declares, unchanged this long, is refused as truncated. */
  stalledMs: number;
}

/** How the depot serves agents and child depots (src/serve/read-api.ts). */
export interface ServingConfig {
  /** Chunks many clients ask for at once, kept in memory (src/serve/hot-chunks.ts); 0 = none. */
  hotChunkBytes: number;
  /** Memory shared by all chunk-batch responses in flight (read-ahead and socket buffers). */
  batchMemoryBytes: number;
  /** Re-hash every chunk read from disk before serving it; a bad one is quarantined and refetched. */
  verifyOnServe: boolean;
  /** How long a re-hashed chunk is served from disk without another check (0: never trusted). */
  verifiedTtlMs: number;
}

export interface DepotConfig {
  name: string;
  /** The master: enrollment and status reports. The preferred one when there are several. */
  masterUrl: string;
  /**
   * Several masters of one catalog, in order of preference (`--master` repeated): the first is
   * `masterUrl`; requests fail over to the next (src/net/url-picker.ts). Absent when there is one.
   */
  masterUrls?: string[];
  /** Where metadata and chunks come from: the master, or a parent depot (tiers). */
  upstreamUrl: string;
  /** Hex SHA-256 of the master's 1.root.json: the only trust anchor of the catalog. */
  fingerprint: string;
  /** Where `depot serve` listens, HOST:PORT. */
  listen: string;
  /** Host names and addresses agents reach this depot under (its certificate names them). */
  hosts: string[];
  /** `depot serve`'s log level ('' = info); --log-level and DEPOTSYNC_LOG_LEVEL override it. Reloaded on SIGHUP. */
  logLevel: string;
  /**
   * An operator-supplied listener certificate (certFile, keyFile) and the CA bundle trusted for an upstream's
   * (caFile) besides the internal CA; '' = none (docs/operations.md).
   */
  tls: ListenerTlsConfig;
  /** HTTP proxy to the upstream and the master: '' = HTTPS_PROXY, 'direct' = none, or http://HOST:PORT. */
  proxy: string;
  /** Hosts reached without the proxy (NO_PROXY syntax), besides the NO_PROXY environment variable. */
  noProxy: string;
  schedule: ScheduleConfig;
  sync: SyncConfig;
  scrub: { intervalMs: number; bytesPerSecond: number };
  gc: { graceMs: number };
  /** Offline bundles arriving in D/inbox/ (depot/offline/inbox.ts). */
  inbox: InboxConfig;
  notify: NotifyConfig;
  serving: ServingConfig;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const DEFAULT_SCHEDULE: ScheduleConfig = {
  intervalMs: 15 * MINUTE,
  jitterMs: 2 * MINUTE,
  window: '',
  windowUtc: false,
  bandwidthBytesPerSecond: 0,
  backoffBaseMs: 30_000,
  backoffMaxMs: HOUR,
};

export const DEFAULT_SYNC: SyncConfig = {
  batchMaxBytes: 8 * 1024 * 1024,
  batchMaxChunks: 4096,
  concurrency: 4,
  manifestConcurrency: 4,
  attempts: 3,
  retryDelayMs: 500,
  timeoutMs: 30_000,
  statusEveryMs: 5 * MINUTE,
  preferredMasterRetryMs: 5 * MINUTE,
  checkpointBytes: 256 * 1024 * 1024,
};

export const DEFAULT_SCRUB = { intervalMs: 24 * HOUR, bytesPerSecond: 32 * 1024 * 1024 };
export const DEFAULT_GC = { graceMs: HOUR };
export const DEFAULT_INBOX: InboxConfig = { settleMs: 5_000, stalledMs: 10 * MINUTE };
export const DEFAULT_SERVING: ServingConfig = {
  hotChunkBytes: 64 * 1024 * 1024,
  batchMemoryBytes: 64 * 1024 * 1024,
  verifyOnServe: true,
  verifiedTtlMs: 0,
};
export const DEFAULT_NOTIFY: NotifyConfig = {
  enabled: true,
  reconnectBaseMs: 1000,
  reconnectMaxMs: MINUTE,
  minGapMs: 2000,
  idleTimeoutMs: MINUTE,
};

const W = 'depot.json';

export function validateDepotConfig(c: DepotConfig): DepotConfig {
  stringOption(W, 'name', c.name, MACHINE_NAME);
  requireHttpsUrl(stringOption(W, 'masterUrl', c.masterUrl), `${W}: masterUrl`, 'bad-input');
  if (c.masterUrls !== undefined) {
    checkUrlList(c.masterUrls, `${W}: masterUrls`);
    if (c.masterUrls[0] !== c.masterUrl)
      throw new DepotsyncError(
        'bad-input',
        `${W}: masterUrls must start with masterUrl ${JSON.stringify(c.masterUrl)}, got ${JSON.stringify(c.masterUrls)}`,
        { hint: 'list every master in masterUrls, the preferred first, and repeat the first as masterUrl' },
      );
    // One master is written as masterUrl alone (the format older versions read).
    if (c.masterUrls.length === 1) delete c.masterUrls;
  }
  requireHttpsUrl(stringOption(W, 'upstreamUrl', c.upstreamUrl), `${W}: upstreamUrl`, 'bad-input');
  stringOption(W, 'fingerprint', c.fingerprint, /^[0-9a-f]{64}$/);
  stringOption(W, 'listen', c.listen, /^[^\s]+:\d{1,5}$/);
  if (
    !Array.isArray(c.hosts) ||
    c.hosts.length === 0 ||
    !c.hosts.every((h) => typeof h === 'string' && h.length > 0)
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${W}: hosts must be a non-empty list of host names or addresses, got ${JSON.stringify(c.hosts)}`,
    );
  }
  logLevelOption(W, c.logLevel);
  c.tls = decodeListenerTls(W, c.tls, ['certFile', 'keyFile', 'caFile']);
  proxyOption(W, c.proxy);
  if (typeof c.noProxy !== 'string')
    throw new DepotsyncError('bad-input', `${W}: noProxy must be a string, got ${JSON.stringify(c.noProxy)}`);
  const s = c.schedule;
  intOption(W, 'schedule.intervalMs', s.intervalMs, 1000, 30 * 24 * HOUR);
  intOption(W, 'schedule.jitterMs', s.jitterMs, 0, 24 * HOUR);
  intOption(W, 'schedule.bandwidthBytesPerSecond', s.bandwidthBytesPerSecond, 0, 2 ** 40);
  if (s.bandwidthBytesPerSecond !== 0 && s.bandwidthBytesPerSecond < 16 * 1024) {
    throw new DepotsyncError(
      'bad-input',
      `${W}: schedule.bandwidthBytesPerSecond must be 0 (unlimited) or at least 16384, got ${s.bandwidthBytesPerSecond}`,
    );
  }
  intOption(W, 'schedule.backoffBaseMs', s.backoffBaseMs, 100, 24 * HOUR);
  intOption(W, 'schedule.backoffMaxMs', s.backoffMaxMs, s.backoffBaseMs, 7 * 24 * HOUR);
  if (s.window !== '') parseWindow(s.window, `${W}: schedule.window`);
  const y = c.sync;
  intOption(W, 'sync.batchMaxBytes', y.batchMaxBytes, 256 * 1024, 256 * 1024 * 1024);
  intOption(W, 'sync.batchMaxChunks', y.batchMaxChunks, 1, 4096);
  intOption(W, 'sync.concurrency', y.concurrency, 1, 64);
  intOption(W, 'sync.manifestConcurrency', y.manifestConcurrency, 1, 64);
  intOption(W, 'sync.attempts', y.attempts, 1, 100);
  intOption(W, 'sync.retryDelayMs', y.retryDelayMs, 0, HOUR);
  intOption(W, 'sync.timeoutMs', y.timeoutMs, 100, HOUR);
  intOption(W, 'sync.statusEveryMs', y.statusEveryMs, 0, 24 * HOUR);
  intOption(W, 'sync.preferredMasterRetryMs', y.preferredMasterRetryMs, 0, 24 * HOUR);
  intOption(W, 'sync.checkpointBytes', y.checkpointBytes, 64 * 1024, 16 * 1024 * 1024 * 1024);
  intOption(W, 'scrub.intervalMs', c.scrub.intervalMs, MINUTE, 365 * 24 * HOUR);
  intOption(W, 'scrub.bytesPerSecond', c.scrub.bytesPerSecond, 64 * 1024, 2 ** 40);
  intOption(W, 'gc.graceMs', c.gc.graceMs, 0, 30 * 24 * HOUR);
  intOption(W, 'inbox.settleMs', c.inbox.settleMs, 100, HOUR);
  intOption(W, 'inbox.stalledMs', c.inbox.stalledMs, c.inbox.settleMs, 7 * 24 * HOUR);
  if (typeof c.notify.enabled !== 'boolean')
    throw new DepotsyncError(
      'bad-input',
      `${W}: notify.enabled must be true or false, got ${JSON.stringify(c.notify.enabled)}`,
    );
  intOption(W, 'notify.reconnectBaseMs', c.notify.reconnectBaseMs, 100, HOUR);
  intOption(W, 'notify.reconnectMaxMs', c.notify.reconnectMaxMs, c.notify.reconnectBaseMs, 24 * HOUR);
  intOption(W, 'notify.minGapMs', c.notify.minGapMs, 0, HOUR);
  intOption(W, 'notify.idleTimeoutMs', c.notify.idleTimeoutMs, 5000, HOUR);
  intOption(W, 'serving.hotChunkBytes', c.serving.hotChunkBytes, 0, 64 * 1024 * 1024 * 1024);
  intOption(
    W,
    'serving.batchMemoryBytes',
    c.serving.batchMemoryBytes,
    4 * 1024 * 1024,
    64 * 1024 * 1024 * 1024,
  );
  if (typeof c.serving.verifyOnServe !== 'boolean') {
    throw new DepotsyncError(
      'bad-input',
      `${W}: serving.verifyOnServe must be true or false, got ${JSON.stringify(c.serving.verifyOnServe)}`,
    );
  }
  intOption(W, 'serving.verifiedTtlMs', c.serving.verifiedTtlMs, 0, HOUR);
  return c;
}

/** Settings given to `newDepotConfig`: the required ones, and any others (sections partially). */
export type DepotConfigInput = Pick<DepotConfig, 'name' | 'masterUrl' | 'fingerprint'> &
  Partial<Omit<DepotConfig, 'schedule' | 'sync' | 'scrub' | 'gc' | 'notify' | 'inbox' | 'serving'>> & {
    schedule?: Partial<ScheduleConfig>;
    sync?: Partial<SyncConfig>;
    scrub?: Partial<DepotConfig['scrub']>;
    gc?: Partial<DepotConfig['gc']>;
    inbox?: Partial<InboxConfig>;
    notify?: Partial<NotifyConfig>;
    serving?: Partial<ServingConfig>;
  };

/** Build a config from the values `depot init` knows, with defaults for the rest. */
export function newDepotConfig(v: DepotConfigInput): DepotConfig {
  return validateDepotConfig({
    upstreamUrl: v.masterUrl,
    listen: '0.0.0.0:8443',
    hosts: ['localhost', '127.0.0.1'],
    logLevel: '',
    tls: { certFile: '', keyFile: '', caFile: '' },
    proxy: '',
    noProxy: '',
    ...v,
    schedule: { ...DEFAULT_SCHEDULE, ...v.schedule },
    sync: { ...DEFAULT_SYNC, ...v.sync },
    scrub: { ...DEFAULT_SCRUB, ...v.scrub },
    gc: { ...DEFAULT_GC, ...v.gc },
    inbox: { ...DEFAULT_INBOX, ...v.inbox },
    notify: { ...DEFAULT_NOTIFY, ...v.notify },
    serving: { ...DEFAULT_SERVING, ...v.serving },
  });
}

/** Decode depot.json at the border: unknown keys and wrong types are refused by name. */
export function decodeDepotConfig(value: unknown, where = W): DepotConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DepotsyncError('bad-input', `${where}: expected a JSON object`);
  }
  const v = value as Record<string, unknown>;
  const known = [
    'name',
    'masterUrl',
    'masterUrls',
    'upstreamUrl',
    'fingerprint',
    'listen',
    'hosts',
    'logLevel',
    'tls',
    'proxy',
    'noProxy',
    'schedule',
    'sync',
    'scrub',
    'gc',
    'notify',
    'inbox',
    'serving',
  ];
  for (const k of Object.keys(v))
    if (!known.includes(k))
      throw new DepotsyncError('bad-input', `${where}: unknown setting ${JSON.stringify(k)}`);
  return validateDepotConfig({
    name: v.name as string,
    masterUrl: (v.masterUrl ?? (Array.isArray(v.masterUrls) ? v.masterUrls[0] : undefined)) as string,
    ...(v.masterUrls !== undefined ? { masterUrls: v.masterUrls as string[] } : {}),
    upstreamUrl: (v.upstreamUrl ??
      v.masterUrl ??
      (Array.isArray(v.masterUrls) ? v.masterUrls[0] : undefined)) as string,
    fingerprint: v.fingerprint as string,
    listen: (v.listen ?? '0.0.0.0:8443') as string,
    hosts: (v.hosts ?? ['localhost', '127.0.0.1']) as string[],
    logLevel: (v.logLevel ?? '') as string,
    tls: decodeListenerTls(`${where}`, v.tls, ['certFile', 'keyFile', 'caFile']),
    proxy: (v.proxy ?? '') as string,
    noProxy: (v.noProxy ?? '') as string,
    schedule: mergeDefaults(`${where}: schedule`, DEFAULT_SCHEDULE, v.schedule),
    sync: mergeDefaults(`${where}: sync`, DEFAULT_SYNC, v.sync),
    scrub: mergeDefaults(`${where}: scrub`, DEFAULT_SCRUB, v.scrub),
    gc: mergeDefaults(`${where}: gc`, DEFAULT_GC, v.gc),
    inbox: mergeDefaults(`${where}: inbox`, DEFAULT_INBOX, v.inbox),
    notify: mergeDefaults(`${where}: notify`, DEFAULT_NOTIFY, v.notify),
    serving: mergeDefaults(`${where}: serving`, DEFAULT_SERVING, v.serving),
  });
}

/** Every configured master URL, the preferred first. */
export function configuredMasterUrls(c: Pick<DepotConfig, 'masterUrl' | 'masterUrls'>): string[] {
  return c.masterUrls ?? [c.masterUrl];
}

export function loadDepotConfig(path: string): DepotConfig {
  const parsed = readJsonFile(path, {
    what: 'depot config',
    missing: {
      message: `depot config ${path}: no such file`,
      hint: 'this is not a depot directory; run `depotsync depot init --dir D ...` first',
    },
    badJson: () => ({
      message: `depot config ${path} is not valid JSON`,
      hint: 'fix the file or run `depotsync depot init` again',
    }),
  });
  return decodeDepotConfig(parsed, path);
}

export async function saveDepotConfig(path: string, c: DepotConfig): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(validateDepotConfig(c), null, 2)}\n`);
}
