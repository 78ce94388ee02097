import { reloadReport, type ReloadReport } from '../../src/config/reload.js';
import type { Logger } from '../../src/log.js';
import { loadListenerCertificate, type ListenerCertificate } from '../../src/net/listener-cert.js';
import { loadAdminSettings, type AdminSettings } from '../admin/config.js';
import { loadMasterConfig, type MasterConfig } from '../config.js';
import type { MasterServer } from './serve.js';

/** master.json settings a running `master serve` applies on SIGHUP. */
export const MASTER_LIVE_SETTINGS = ['logLevel', 'tls.certFile', 'tls.keyFile'];
/**
 * admin.json settings applied live: the alert thresholds, read at every evaluation. The repeat interval
 * and the webhook are fixed when the server starts.
 */
export const ADMIN_LIVE_SETTINGS = [
  'alerts.certWarningDays',
  'alerts.certErrorDays',
  'alerts.lagGenerations',
  'alerts.lagHours',
  'alerts.silentMinutes',
  'alerts.failingSyncs',
  'alerts.lowDiskBytes',
  'alerts.validityWarningHours',
];

/** The operator certificate master.json names, checked; undefined when it names none. */
export function masterListenerCertificate(config: MasterConfig, now: Date): ListenerCertificate | undefined {
  return config.tls.certFile ? loadListenerCertificate(config.tls, now) : undefined;
}

export interface MasterReload {
  master: ReloadReport;
  admin: ReloadReport;
}

/**
 * SIGHUP for `master serve`: read master.json and admin.json again, refuse both as a whole when either
 * (or the operator certificate) does not validate, else apply the live settings and report the others.
 */
export class MasterReloader {
  private config: MasterConfig;

  constructor(
    private readonly d: {
      dir: string;
      configPath: string;
      config: MasterConfig;
      server: MasterServer;
      log: Logger;
      onLogLevel: (configured: string) => void;
      /** The operator certificate files after a reload (to follow them for changes). */
      onListenerFiles?: (tls: MasterConfig['tls']) => void;
      now?: () => Date;
    },
  ) {
    this.config = d.config;
  }

  reload(): MasterReload {
    const { server, log } = this.d;
    let next: MasterConfig;
    let admin: AdminSettings;
    let cert: ListenerCertificate | undefined;
    try {
      next = loadMasterConfig(this.d.configPath);
      admin = loadAdminSettings(this.d.dir);
      cert = masterListenerCertificate(next, (this.d.now ?? (() => new Date()))());
    } catch (e) {
      log.error(
        { err: (e as Error).message, hint: (e as { hint?: string }).hint },
        'configuration reload refused; the running settings stay',
      );
      throw e;
    }
    const master = reloadReport(this.config, next, MASTER_LIVE_SETTINGS);
    const adminReport = reloadReport(server.admin.settings, admin, ADMIN_LIVE_SETTINGS);
    this.d.onLogLevel(next.logLevel);
    server.setListenerCertificate(cert);
    this.d.onListenerFiles?.(next.tls);
    const { repeatMs } = server.admin.settings.alerts;
    Object.assign(server.admin.settings.alerts, admin.alerts, { repeatMs });
    // Only what was applied: a setting that needs a restart is reported again at the next reload.
    this.config = { ...this.config, logLevel: next.logLevel, tls: next.tls };
    log.info(
      {
        applied: [...master.applied, ...adminReport.applied.map((p) => `admin.json ${p}`)],
        needsRestart: [...master.needsRestart, ...adminReport.needsRestart.map((p) => `admin.json ${p}`)],
        ...(cert ? { certificate: { subject: cert.subject, notAfter: cert.notAfter.toISOString() } } : {}),
      },
      'configuration reloaded',
    );
    const restart = [...master.needsRestart, ...adminReport.needsRestart.map((p) => `admin.json ${p}`)];
    if (restart.length > 0)
      log.warn({ settings: restart }, 'changed settings take effect only after a restart of master serve');
    return { master, admin: adminReport };
  }
}
