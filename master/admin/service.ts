import { statfsSync } from 'node:fs';
import type { MasterContext } from '../context.js';
import { listAudit, type AuditEntry } from '../db/audit.js';
import { AlertMonitor } from './alert-monitor.js';
import { masterDiskAlerts, sortAlerts } from './alerts.js';
import { ownCertificates, type OwnCertificate } from './certificates.js';
import { loadAdminSettings, type AdminSettings } from './config.js';
import { DirectoryLogin } from './ldap-login.js';
import { LoginLimiter } from './login-limit.js';
import { mailAlerts, MailNotifier } from './mail.js';
import { masterMetrics, type MasterMetrics } from './metrics.js';
import { listSessions } from './sessions.js';
import { buildFleetStatus, type FleetStatus, type StatusOptions } from './status-model.js';
import { WebhookNotifier } from './webhook.js';

/**
 * Everything of the admin surface that lives as long as the master app: settings, the status model,
 * the alert monitor (and webhook), metrics, and the login limiters. Built once by `createMasterApp`;
 * `start()` (from `startMasterServer`) runs the background alert evaluation.
 */
export interface AdminServiceDeps {
  ctx: MasterContext;
  /** Default: `M/admin.json`, or the defaults. */
  settings?: AdminSettings;
  /** Status clock (default: the database clock). */
  now?: () => Date;
  /** Milliseconds clock of the login limiters (default: from `now`). */
  clockMs?: () => number;
  /** Webhook transport (tests). */
  fetch?: typeof fetch;
  /** Free bytes on the master directory's file system, null when unknown (default: statfs; tests inject). */
  freeDiskBytes?: () => number | null;
}

/** Free bytes available to the master on the file system of `dir`; null when it cannot be read. */
export function statfsFreeBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** The signer as the status API shows it. */
export interface SignerView {
  /** This master's name. */
  self: string;
  /** The master that signs now; null while the lease is being taken over. */
  signer: string | null;
  /** True when this master signs. */
  signing: boolean;
  epoch: number | null;
}

export class AdminService {
  readonly settings: AdminSettings;
  readonly monitor: AlertMonitor;
  readonly webhook: WebhookNotifier | undefined;
  /** Alert e-mail, when master.json has `alerts.smtp`. */
  readonly mail: MailNotifier | undefined;
  /** Operator login through LDAP, when master.json has `directory.ldap`. */
  readonly directory: DirectoryLogin | undefined;
  readonly metrics: MasterMetrics;
  /**
   * Which master signs (several masters on one catalog; `master serve` sets it): shown in
   * `GET /v1/admin/status` and the `depotsync_master_signer` gauge. Unset: this master, always.
   */
  signer: (() => Promise<SignerView>) | undefined;
  signing: (() => boolean) | undefined;
  readonly addressLimiter: LoginLimiter;
  readonly operatorLimiter: LoginLimiter;
  readonly now: () => Date;
  private readonly own: OwnCertificate[];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly d: AdminServiceDeps) {
    const { ctx } = d;
    this.settings = d.settings ?? loadAdminSettings(ctx.layout.dir);
    this.now = d.now ?? ctx.db.now;
    const clockMs = d.clockMs ?? (() => this.now().getTime());
    const log = ctx.log.child({ component: 'master.admin' });
    this.own = ownCertificates(ctx.layout);
    this.webhook = this.settings.webhook.url
      ? new WebhookNotifier({ settings: this.settings.webhook, log, ...(d.fetch ? { fetch: d.fetch } : {}) })
      : undefined;
    const smtp = ctx.config.alerts.smtp;
    this.mail = smtp ? new MailNotifier({ settings: smtp, log }) : undefined;
    const ldap = ctx.config.directory.ldap;
    this.directory = ldap ? new DirectoryLogin(ldap) : undefined;
    if (smtp)
      log.info({ smtp: `${smtp.host}:${smtp.port}`, to: smtp.to }, 'alert e-mail on (STARTTLS required)');
    if (ldap) log.info({ url: ldap.url }, 'directory login on (LDAP over TLS)');
    this.monitor = new AlertMonitor({
      db: ctx.db,
      log,
      masterName: ctx.config.name,
      repeatMs: this.settings.alerts.repeatMs,
      webhook: this.webhook,
      mail: this.mail,
      operatorTokenWarningDays: ctx.config.operatorTokenWarningDays,
    });
    this.addressLimiter = new LoginLimiter({
      maxFailures: this.settings.loginFailuresPerAddress,
      windowMs: this.settings.loginWindowMs,
      clockMs,
    });
    this.operatorLimiter = new LoginLimiter({
      maxFailures: this.settings.loginFailuresPerOperator,
      windowMs: this.settings.loginWindowMs,
      clockMs,
    });
    this.metrics = masterMetrics({
      fleet: () => this.status({ packages: false }),
      monitor: this.monitor,
      sessions: async () => (await listSessions(ctx.db, this.sessionTimes)).length,
      signing: () => (this.signing ? this.signing() : true),
      deliveries: () => ({
        ...(this.webhook ? { webhook: this.webhook } : {}),
        ...(this.mail ? { mail: this.mail } : {}),
      }),
    });
  }

  get sessionTimes(): { idleMs: number; maxMs: number } {
    return { idleMs: this.settings.sessionIdleMs, maxMs: this.settings.sessionMaxMs };
  }

  /**
   * The fleet status with alerts passed through the monitor (so each carries
   * `since`, and changes are announced).
   */
  async status(opts: Omit<StatusOptions, 'nowMs'> = {}): Promise<FleetStatus> {
    const nowMs = this.now().getTime();
    const s = await buildFleetStatus(
      {
        db: this.d.ctx.db,
        settings: this.settings,
        masterName: this.d.ctx.config.name,
        ownCertificates: this.own,
      },
      { ...opts, nowMs },
    );
    const free = this.d.freeDiskBytes ? this.d.freeDiskBytes() : statfsFreeBytes(this.d.ctx.layout.dir);
    const conditions = sortAlerts([
      ...s.alerts,
      ...masterDiskAlerts(free, this.settings.alerts),
      ...mailAlerts(this.mail?.state(), this.d.ctx.config.alerts.smtp),
    ]);
    s.alerts = (await this.monitor.evaluate(conditions, nowMs)).active;
    s.summary.alerts = {
      warning: s.alerts.filter((a) => a.level === 'warning').length,
      error: s.alerts.filter((a) => a.level === 'error').length,
    };
    return s;
  }

  async audit(limit = 20): Promise<AuditEntry[]> {
    return (await listAudit(this.d.ctx.db, { limit })).entries;
  }

  /** Evaluate alerts now and then every `alertIntervalMs` (never overlapping; failures logged, not fatal). */
  start(): void {
    if (this.timer) return;
    // Never overlapping: a tick that finds the previous one still running skips.
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      try {
        await this.status({ packages: false });
      } catch (e) {
        this.d.ctx.log.error(
          { err: (e as Error).message, component: 'master.alerts' },
          'alert evaluation failed',
        );
      } finally {
        running = false;
      }
    };
    void tick();
    this.timer = setInterval(() => void tick(), this.settings.alertIntervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.webhook?.close();
    await this.mail?.close();
  }
}
