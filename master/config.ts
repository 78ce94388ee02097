import { DepotsyncError } from '../src/errors.js';
import { readJsonFile } from '../src/config/json-file.js';
import { intOption, mergeDefaults } from '../src/config/validate.js';
import { dirname } from 'node:path';
import { decodeLdapSettings, type LdapSettings } from './admin/ldap-settings.js';
import { decodeSmtpSettings, type SmtpSettings } from './admin/mail-settings.js';
import { logLevelOption } from '../src/config/reload.js';
import { decodeListenerTls, type ListenerTlsConfig } from '../src/net/listener-cert.js';
import { validateScanSettings } from './publish/scan-settings.js';
import { decodeMasterUrls } from '../src/wire/depot-directory.js';

/** The master's settings (M/master.json). Units are in the names. */
export interface MasterConfig {
  name: string;
  /** Host names and addresses the master's TLS certificate is valid for. */
  hosts: string[];
  /**
   * The https URLs of every master serving this catalog, preferred first: signed into the depot
   * directory, so depots and agents learn them without reconfiguration (docs/operations.md). [] = none
   * listed (machines use the URLs they were given).
   */
  masterUrls: string[];
  /** `master serve`'s log level ('' = info); --log-level and DEPOTSYNC_LOG_LEVEL override it. Reloaded on SIGHUP. */
  logLevel: string;
  /**
   * An operator-supplied certificate (chain) and key for the HTTPS listener instead of the internal one;
   * machines still authenticate with internal-CA certificates (docs/operations.md). '' = internal.
   */
  tls: ListenerTlsConfig;
  chunkMinBytes: number;
  chunkAvgBytes: number;
  chunkMaxBytes: number;
  /** Hashed-bin delegation: number of bins (16, 256 or 4096). */
  bins: number;
  timestampExpiryHours: number;
  /** Re-sign the timestamp when less than this remains before it expires. */
  timestampRefreshHours: number;
  snapshotExpiryDays: number;
  targetsExpiryDays: number;
  rootExpiryDays: number;
  /**
   * With root keys on the master, `master serve` renews the root when less than this remains (docs/keys.md).
   */
  rootRenewBeforeDays: number;
  revocationListExpiryDays: number;
  certificateValidDays: number;
  dropboxSettleMs: number;
  enrollPerAddressPerMinute: number;
  statusReportsPerMachinePerMinute: number;
  maxUploadBytes: number;
  /** Online backup of master.db into M/backups/ while serving, every this many hours; 0 = no schedule. */
  backupIntervalHours: number;
  /** Scheduled and one-off backups kept in the backup folder (the oldest beyond this are deleted). */
  backupRetainCount: number;
  /** Where backups go; null = M/backups. Best on other media than the master's own disk. */
  backupDir: string | null;
  /**
   * File holding the passphrase of scheduled backups (mode 0600); null = the environment variable
   * DEPOTSYNC_BACKUP_PASSPHRASE of `master serve`. Without either, scheduled backups fail and alert.
   */
  backupPassphraseFile: string | null;
  /**
   * Publishing safety: a scanner run on every publish before it enters the catalog (argv, no shell; the
   * path is appended); null = none.
   */
  publishScanCommand: string[] | null;
  publishScanTimeoutMs: number;
  /** Publish (drop folder and operator API included) files with hard links outside the source folder. */
  allowHardlinks: boolean;
  /**
   * Chunks many machines ask for at once, kept in memory by the read API (src/serve/hot-chunks.ts); 0 = none.
   */
  hotChunkBytes: number;
  /**
   * zstd level chunks are compressed at when published (kept compressed only where that saves space;
   * 0 = store and send them plain; -7..-1 are zstd's fast levels). Higher compresses more and publishes
   * slower (bench/README.md,
   * "Compressed chunks").
   */
  chunkCompressLevel: number;
  /** Memory shared by all chunk-batch responses in flight (read-ahead and socket buffers). */
  batchMemoryBytes: number;
  /**
   * While serving, every this many hours: collect chunks no live version references and prune old
   * status reports and audit entries (master/maintenance); 0 = no schedule (`master gc` still works).
   */
  gcIntervalHours: number;
  /**
   * GC spares chunks stored or re-put this recently, and chunks of versions removed this recently (depots
   * still syncing the older generation). Must be longer than the longest publish.
   */
  gcGraceHours: number;
  /** Depot status reports older than this are deleted (each depot's latest report is always kept). */
  statusRetentionDays: number;
  /**
   * Version deltas (master/deltas): computed in the background against this many previous versions of
   * each package (0 = none; deltas are then computed on request only), at this zstd level, on this many
   * worker threads at nice value `deltaNice` (19: only CPU time nothing else wants), kept up to this many bytes.
   */
  deltaVersions: number;
  deltaLevel: number;
  deltaWorkers: number;
  deltaNice: number;
  deltaCacheBytes: number;
  /** Audit log entries older than this are deleted. */
  auditRetentionDays: number;
  // Operator administration.
  /** Operator tokens expire this many days after creation or rotation (`master operator rotate`). */
  operatorTokenDays: number;
  /** An alert warns this many days before an operator token expires; 0 = no warning. */
  operatorTokenWarningDays: number;
  /** Every operator must have TOTP: one without it may only enroll it (docs/operations.md). */
  requireTotp: boolean;
  /** Alert delivery beside the log, dashboard and webhook (admin.json): e-mail over SMTP. */
  alerts: { smtp: SmtpSettings | null };
  /** Operator login through the organisation's directory, beside local operators. */
  directory: { ldap: LdapSettings | null };
  /**
   * The catalog's database: '' = SQLite in M/master.db (the default); a postgres://user:password@host/db
   * URL = PostgreSQL, shared by several masters (`master migrate` moves a catalog and sets it).
   * `passwordFile` (relative to M; mode 0600) holds the password instead of the URL; '' = the URL's.
   */
  database: { url: string; passwordFile: string };
  /**
   * Where the content every master must see lives (chunk store, delta cache, signed revocation list):
   * a folder all masters of one catalog reach; null = M itself (a single master). Relative to M.
   */
  sharedDir: string | null;
  /**
   * Several masters on one PostgreSQL catalog: how long the signer lease lasts without renewal (renewed
   * every third of it); another master takes over at most this long after the signer dies.
   */
  signerLeaseTtlMs: number;
}

export const DEFAULT_MASTER_CONFIG: MasterConfig = {
  name: 'master',
  hosts: ['localhost', '127.0.0.1'],
  masterUrls: [],
  logLevel: '',
  tls: { certFile: '', keyFile: '' },
  chunkMinBytes: 16 * 1024,
  chunkAvgBytes: 64 * 1024,
  chunkMaxBytes: 256 * 1024,
  bins: 256,
  timestampExpiryHours: 24,
  timestampRefreshHours: 12,
  snapshotExpiryDays: 30,
  targetsExpiryDays: 365,
  rootExpiryDays: 365,
  rootRenewBeforeDays: 60,
  revocationListExpiryDays: 7,
  certificateValidDays: 365,
  dropboxSettleMs: 10_000,
  enrollPerAddressPerMinute: 30,
  statusReportsPerMachinePerMinute: 30,
  maxUploadBytes: 64 * 1024 * 1024 * 1024,
  backupIntervalHours: 24,
  backupRetainCount: 7,
  backupDir: null,
  backupPassphraseFile: null,
  publishScanCommand: null,
  publishScanTimeoutMs: 10 * 60_000,
  allowHardlinks: false,
  // As the read API's defaults (src/serve/read-api.ts; not imported: it would load the HTTP
  // stack into every master command).
  hotChunkBytes: 64 * 1024 * 1024,
  chunkCompressLevel: 1,
  batchMemoryBytes: 64 * 1024 * 1024,
  gcIntervalHours: 24,
  gcGraceHours: 6,
  statusRetentionDays: 31,
  deltaVersions: 2,
  deltaLevel: 19,
  deltaWorkers: 2,
  deltaNice: 19,
  deltaCacheBytes: 16 * 1024 * 1024 * 1024,
  auditRetentionDays: 365,
  // Operator administration.
  operatorTokenDays: 90,
  operatorTokenWarningDays: 14,
  requireTotp: false,
  alerts: { smtp: null },
  directory: { ldap: null },
  database: { url: '', passwordFile: '' },
  sharedDir: null,
  signerLeaseTtlMs: 6000,
};

export function validateMasterConfig(c: MasterConfig): MasterConfig {
  const w = 'master.json';
  logLevelOption(w, c.logLevel);
  c.masterUrls = decodeMasterUrls(c.masterUrls, `${w}: masterUrls`);
  c.tls = decodeListenerTls(w, c.tls);
  if (![16, 256, 4096].includes(c.bins))
    throw new DepotsyncError('bad-input', `${w}: bins must be 16, 256 or 4096, got ${c.bins}`);
  intOption(w, 'timestampExpiryHours', c.timestampExpiryHours, 1, 24 * 365);
  intOption(w, 'timestampRefreshHours', c.timestampRefreshHours, 0, c.timestampExpiryHours - 1);
  intOption(w, 'rootExpiryDays', c.rootExpiryDays, 2, 3650);
  intOption(w, 'rootRenewBeforeDays', c.rootRenewBeforeDays, 1, c.rootExpiryDays - 1);
  intOption(w, 'certificateValidDays', c.certificateValidDays, 1, 3650);
  intOption(w, 'dropboxSettleMs', c.dropboxSettleMs, 0, 24 * 3_600_000);
  intOption(w, 'backupIntervalHours', c.backupIntervalHours, 0, 24 * 365);
  intOption(w, 'backupRetainCount', c.backupRetainCount, 1, 1000);
  for (const k of ['backupDir', 'backupPassphraseFile'] as const) {
    const v = c[k];
    if (v !== null && (typeof v !== 'string' || v === ''))
      throw new DepotsyncError('bad-input', `${w}: ${k} must be a path or null, got ${JSON.stringify(v)}`);
  }
  if (typeof c.allowHardlinks !== 'boolean') {
    throw new DepotsyncError(
      'bad-input',
      `${w}: allowHardlinks must be true or false, got ${JSON.stringify(c.allowHardlinks)}`,
    );
  }
  if (c.publishScanCommand !== null)
    validateScanSettings(w, { command: c.publishScanCommand, timeoutMs: c.publishScanTimeoutMs });
  // The same ranges as depot.json's serving section (depot/config.ts).
  intOption(w, 'hotChunkBytes', c.hotChunkBytes, 0, 64 * 1024 * 1024 * 1024);
  // zstd's fast levels (-7..-1) down to the store's MIN_FAST_LEVEL, kept literal so config needs no addon.
  intOption(w, 'chunkCompressLevel', c.chunkCompressLevel, -7, 19);
  intOption(w, 'batchMemoryBytes', c.batchMemoryBytes, 4 * 1024 * 1024, 64 * 1024 * 1024 * 1024);
  intOption(w, 'gcIntervalHours', c.gcIntervalHours, 0, 24 * 365);
  intOption(w, 'gcGraceHours', c.gcGraceHours, 1, 24 * 365);
  intOption(w, 'statusRetentionDays', c.statusRetentionDays, 1, 3650);
  intOption(w, 'deltaVersions', c.deltaVersions, 0, 16);
  intOption(w, 'deltaLevel', c.deltaLevel, 1, 19);
  intOption(w, 'deltaWorkers', c.deltaWorkers, 1, 64);
  intOption(w, 'deltaNice', c.deltaNice, 0, 19);
  intOption(w, 'deltaCacheBytes', c.deltaCacheBytes, 0, 1024 * 1024 * 1024 * 1024);
  intOption(w, 'auditRetentionDays', c.auditRetentionDays, 1, 36500);
  // Operator administration.
  intOption(w, 'operatorTokenDays', c.operatorTokenDays, 1, 3650);
  intOption(w, 'operatorTokenWarningDays', c.operatorTokenWarningDays, 0, c.operatorTokenDays - 1);
  intOption(w, 'signerLeaseTtlMs', c.signerLeaseTtlMs, 1000, 600_000);
  if (c.sharedDir !== null && (typeof c.sharedDir !== 'string' || c.sharedDir === ''))
    throw new DepotsyncError(
      'bad-input',
      `${w}: sharedDir must be a folder path or null, got ${JSON.stringify(c.sharedDir)}`,
    );
  if (typeof c.requireTotp !== 'boolean') {
    throw new DepotsyncError(
      'bad-input',
      `${w}: requireTotp must be true or false, got ${JSON.stringify(c.requireTotp)}`,
    );
  }
  return c;
}

export function loadMasterConfig(path: string): MasterConfig {
  const parsed = readJsonFile(path, { what: 'master config' });
  const c = mergeDefaults('master.json', DEFAULT_MASTER_CONFIG, parsed);
  return validateMasterConfig({ ...c, ...decodeSections(c, dirname(path)) });
}

/** The nested sections, each decoded by its owner (unknown keys refused by name). */
function decodeSections(
  c: MasterConfig,
  masterDir: string,
): Pick<MasterConfig, 'alerts' | 'directory' | 'database'> {
  const alerts = mergeDefaults('master.json: alerts', DEFAULT_MASTER_CONFIG.alerts, c.alerts);
  const directory = mergeDefaults('master.json: directory', DEFAULT_MASTER_CONFIG.directory, c.directory);
  const database = mergeDefaults('master.json: database', DEFAULT_MASTER_CONFIG.database, c.database);
  if (database.url !== '' && !/^postgres(ql)?:\/\/[^/]+\/[^/?#]+/.test(database.url)) {
    throw new DepotsyncError(
      'bad-input',
      'master.json: database.url must be empty (SQLite in the master folder) or postgres://user:password@host:port/database',
    );
  }
  if (typeof database.passwordFile !== 'string' || (database.passwordFile !== '' && database.url === '')) {
    throw new DepotsyncError(
      'bad-input',
      'master.json: database.passwordFile must be a file path, and only with database.url',
    );
  }
  return {
    database,
    alerts: { smtp: decodeSmtpSettings('master.json: alerts.smtp', alerts.smtp, masterDir) },
    directory: { ldap: decodeLdapSettings('master.json: directory.ldap', directory.ldap, masterDir) },
  };
}
