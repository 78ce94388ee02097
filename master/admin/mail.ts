import nodemailer, { type Transporter } from 'nodemailer';
import type { Logger } from '../../src/log.js';
import type { Alert } from './alerts.js';
import type { SmtpSettings } from './mail-settings.js';
import { readPemFile, readSecretLine } from './secret-files.js';
import type { WebhookEvent } from './webhook.js';

/**
 * Alert e-mail over SMTP, beside the webhook: one message per alert change, queued and never awaited by
 * the master, retried with exponential backoff, the queue bounded (oldest dropped first). Every delivery
 * requires STARTTLS (`requireTLS`): a server that does not offer it, or whose certificate does not verify
 * against `caFile`, gets no command past EHLO, so neither the password nor an alert crosses in cleartext.
 * The outcome is counted (metrics) and the last failure kept, which turns into an alert of its own
 * (`mailAlerts`) until a message goes through again.
 */
export interface MailDeps {
  settings: SmtpSettings;
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
  onSent?: (e: WebhookEvent, attempts: number) => void;
  onFailed?: (e: WebhookEvent, err: string) => void;
}

export interface MailState {
  sent: number;
  failed: number;
  dropped: number;
  queued: number;
  lastSentAt: string | null;
  /** The last message given up, while no later one has gone through. */
  lastFailure: { at: string; error: string } | null;
}

export class MailNotifier {
  private readonly queue: WebhookEvent[] = [];
  private readonly transport: Transporter;
  private running: Promise<void> | undefined;
  private closed = false;
  sent = 0;
  failed = 0;
  dropped = 0;
  lastSentAt: string | null = null;
  lastFailure: { at: string; error: string } | null = null;

  constructor(private readonly d: MailDeps) {
    const s = d.settings;
    const pass = s.passwordFile === null ? null : readSecretLine(s.passwordFile, 'SMTP password file');
    const ca = s.caFile === null ? undefined : readPemFile(s.caFile, 'SMTP CA file');
    this.transport = nodemailer.createTransport({
      host: s.host,
      port: s.port,
      // Port 465's implicit TLS is not offered: the one supported path is STARTTLS, and it is required.
      secure: false,
      requireTLS: true,
      ...(s.user !== null && pass !== null ? { auth: { user: s.user, pass } } : {}),
      tls: { ...(ca ? { ca } : {}), minVersion: 'TLSv1.2', rejectUnauthorized: true },
      connectionTimeout: s.timeoutMs,
      greetingTimeout: s.timeoutMs,
      socketTimeout: s.timeoutMs,
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  }

  /** Queue an e-mail for an alert change; returns at once. */
  notify(e: WebhookEvent): void {
    if (this.closed) return;
    if (this.queue.length >= this.d.settings.maxQueue) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(e);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** Wait until the queue is empty (tests). */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  state(): MailState {
    return {
      sent: this.sent,
      failed: this.failed,
      dropped: this.dropped,
      queued: this.queue.length,
      lastSentAt: this.lastSentAt,
      lastFailure: this.lastFailure,
    };
  }

  /** Stop: queued e-mails are dropped; a delivery in flight gets a moment to finish, not its full timeout. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    this.transport.close();
    if (this.running)
      await Promise.race([
        this.running.catch(() => undefined),
        new Promise<void>((r) => setTimeout(r, 2000).unref()),
      ]);
  }

  private async drain(): Promise<void> {
    for (let e = this.queue.shift(); e && !this.closed; e = this.queue.shift()) await this.deliver(e);
  }

  private async deliver(e: WebhookEvent): Promise<void> {
    const { host, port, attempts, backoffMs, from, to } = this.d.settings;
    const sleep = this.d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
    const mail = alertMail(e);
    let lastError = '';
    for (let attempt = 1; attempt <= attempts && !this.closed; attempt++) {
      try {
        const info = await this.transport.sendMail({ from, to, subject: mail.subject, text: mail.text });
        const rejected = info.rejected ?? [];
        if (rejected.length > 0 && (info.accepted ?? []).length === 0)
          throw new Error(`every recipient was refused: ${rejected.map(String).join(', ')}`);
        this.sent++;
        this.lastSentAt = new Date().toISOString();
        this.lastFailure = null;
        this.d.onSent?.(e, attempt);
        return;
      } catch (err) {
        lastError = describeSmtpError(err);
      }
      this.d.log.warn(
        { smtp: `${host}:${port}`, attempt, attempts, err: lastError, alert: e.alert.key },
        'alert e-mail delivery failed',
      );
      if (attempt < attempts) await sleep(backoffMs * 2 ** (attempt - 1));
    }
    if (this.closed && !lastError) return;
    this.failed++;
    this.lastFailure = { at: new Date().toISOString(), error: lastError };
    this.d.onFailed?.(e, lastError);
    this.d.log.error(
      { smtp: `${host}:${port}`, err: lastError, alert: e.alert.key },
      'alert e-mail given up',
    );
  }
}

/** The e-mail for one alert change: the subject says enough to triage from a phone's list view. */
export function alertMail(e: WebhookEvent): { subject: string; text: string } {
  const a = e.alert;
  const what = e.event === 'cleared' ? 'cleared' : `${a.level.toUpperCase()} ${e.event}`;
  const subject = `[depotsync ${e.master}] ${what}: ${a.message}`.replace(/[\r\n]+/g, ' ').slice(0, 200);
  const text = [
    `Master:   ${e.master}`,
    `Event:    ${e.event}`,
    `Level:    ${a.level}`,
    `Alert:    ${a.key}`,
    `Subject:  ${a.subject}`,
    ...(a.since ? [`Since:    ${a.since}`] : []),
    `At:       ${e.at}`,
    '',
    a.message,
    '',
    'The dashboard (/dashboard) and `depotsync status --dir M` show every active alert.',
    '',
  ].join('\n');
  return { subject, text };
}

/** The alert shown while alert e-mail is failing (a webhook or the dashboard still show it). */
export function mailAlerts(state: MailState | undefined, settings: SmtpSettings | null): Alert[] {
  if (!state?.lastFailure || !settings) return [];
  return [
    {
      key: `notification:${MAIL_SUBJECT}`,
      kind: 'notification',
      subject: MAIL_SUBJECT,
      level: 'error',
      message: `alert e-mail to ${settings.host}:${settings.port} is failing since ${state.lastFailure.at}: ${state.lastFailure.error}`,
    },
  ];
}

export const MAIL_SUBJECT = 'alert e-mail';

/**
 * nodemailer's errors carry a code (ETLS, EAUTH, ECONNECTION, ETIMEDOUT...) and the server's answer; the
 * log and the alert get both, in one line, so the cause is readable without a debugger.
 */
export function describeSmtpError(err: unknown): string {
  const e = err as { code?: string; responseCode?: number; command?: string; message?: string };
  const why =
    e.code === 'EAUTH'
      ? 'authentication refused (check user and passwordFile)'
      : e.code === 'ETLS' || /STARTTLS/i.test(e.message ?? '')
        ? 'STARTTLS failed or not offered; nothing was sent in cleartext'
        : e.code === 'ESOCKET' && /certificate|self.signed|verify/i.test(e.message ?? '')
          ? "the server's certificate does not verify (check caFile and host)"
          : undefined;
  const msg = (e.message ?? String(err)).replace(/[\r\n]+/g, ' ');
  return why ? `${why}: ${msg}` : msg;
}
