import { existsSync } from 'node:fs';
import { readJsonFile } from '../../src/config/json-file.js';
import { join } from 'node:path';
import { intOption, mergeDefaults } from '../../src/config/validate.js';
import { requireHttpsUrl } from '../../src/net/https-url.js';

/**
 * Settings of the admin surface (dashboard, sessions, alerts, webhook), units in the names. Read from the
 * optional file `M/admin.json` (unknown keys refused); every key has a default, so the file is needed
 * only to change one.
 */
export interface AlertThresholds {
  /** A machine certificate this close to expiry raises a warning (repeated every `repeatMs`). */
  certWarningDays: number;
  /** ... and this close an error. */
  certErrorDays: number;
  /** A depot this many generations behind the master is lagging beyond the threshold. */
  lagGenerations: number;
  /** A depot behind for longer than this is lagging beyond the threshold, however few generations. */
  lagHours: number;
  /** An online depot not heard from for this long is silent. */
  silentMinutes: number;
  /** Failed syncs in a row (reports with an error) before an alert. */
  failingSyncs: number;
  /** Free disk below this on a depot (0: never). */
  lowDiskBytes: number;
  /** An offline depot whose validity window ends within this many hours. */
  validityWarningHours: number;
  /** How often an alert that is still active is notified again (log, webhook). */
  repeatMs: number;
}

export interface WebhookSettings {
  /** http(s) URL receiving a JSON POST per alert change; '' = none. */
  url: string;
  timeoutMs: number;
  attempts: number;
  /** First retry delay; doubles per attempt. */
  backoffMs: number;
  /** Notifications waiting at most; older ones are dropped first (the master never blocks on a webhook). */
  maxQueue: number;
}

export interface AdminSettings {
  sessionIdleMs: number;
  sessionMaxMs: number;
  /** Failed logins per address, and per operator name, within `loginWindowMs` before logins are refused. */
  loginFailuresPerAddress: number;
  loginFailuresPerOperator: number;
  loginWindowMs: number;
  /** Dashboard live updates: how often the server looks for changes while someone watches. */
  liveIntervalMs: number;
  /** Background alert evaluation. */
  alertIntervalMs: number;
  alerts: AlertThresholds;
  webhook: WebhookSettings;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const DEFAULT_ALERTS: AlertThresholds = {
  certWarningDays: 40,
  certErrorDays: 15,
  lagGenerations: 5,
  lagHours: 6,
  silentMinutes: 60,
  failingSyncs: 3,
  lowDiskBytes: 2 * 1024 ** 3,
  validityWarningHours: 72,
  repeatMs: 24 * HOUR,
};

export const DEFAULT_WEBHOOK: WebhookSettings = {
  url: '',
  timeoutMs: 5000,
  attempts: 5,
  backoffMs: 1000,
  maxQueue: 1000,
};

export const DEFAULT_ADMIN_SETTINGS: AdminSettings = {
  sessionIdleMs: 15 * MINUTE,
  sessionMaxMs: 12 * HOUR,
  loginFailuresPerAddress: 10,
  loginFailuresPerOperator: 10,
  loginWindowMs: 15 * MINUTE,
  liveIntervalMs: 2000,
  alertIntervalMs: MINUTE,
  alerts: DEFAULT_ALERTS,
  webhook: DEFAULT_WEBHOOK,
};

const W = 'admin.json';

export function validateAdminSettings(s: AdminSettings): AdminSettings {
  intOption(W, 'sessionIdleMs', s.sessionIdleMs, 1000, 24 * HOUR);
  intOption(W, 'sessionMaxMs', s.sessionMaxMs, s.sessionIdleMs, 30 * 24 * HOUR);
  intOption(W, 'loginFailuresPerAddress', s.loginFailuresPerAddress, 1, 10_000);
  intOption(W, 'loginFailuresPerOperator', s.loginFailuresPerOperator, 1, 10_000);
  intOption(W, 'loginWindowMs', s.loginWindowMs, 1000, 24 * HOUR);
  intOption(W, 'liveIntervalMs', s.liveIntervalMs, 100, HOUR);
  intOption(W, 'alertIntervalMs', s.alertIntervalMs, 1000, 24 * HOUR);
  const a = s.alerts;
  intOption(W, 'alerts.certErrorDays', a.certErrorDays, 0, 3650);
  intOption(W, 'alerts.certWarningDays', a.certWarningDays, a.certErrorDays, 3650);
  intOption(W, 'alerts.lagGenerations', a.lagGenerations, 1, 1_000_000);
  intOption(W, 'alerts.lagHours', a.lagHours, 1, 24 * 365);
  intOption(W, 'alerts.silentMinutes', a.silentMinutes, 1, 60 * 24 * 365);
  intOption(W, 'alerts.failingSyncs', a.failingSyncs, 1, 1000);
  intOption(W, 'alerts.lowDiskBytes', a.lowDiskBytes, 0, Number.MAX_SAFE_INTEGER);
  intOption(W, 'alerts.validityWarningHours', a.validityWarningHours, 0, 24 * 365);
  intOption(W, 'alerts.repeatMs', a.repeatMs, MINUTE, 30 * 24 * HOUR);
  const w = s.webhook;
  if (w.url !== '') requireHttpsUrl(w.url, `${W}: webhook.url`, 'bad-input');
  intOption(W, 'webhook.timeoutMs', w.timeoutMs, 100, 5 * MINUTE);
  intOption(W, 'webhook.attempts', w.attempts, 1, 100);
  intOption(W, 'webhook.backoffMs', w.backoffMs, 0, HOUR);
  intOption(W, 'webhook.maxQueue', w.maxQueue, 1, 1_000_000);
  return s;
}

/** Decode settings at the border: unknown keys and wrong types are refused by name. */
export function decodeAdminSettings(value: unknown, where = W): AdminSettings {
  const top = mergeDefaults(where, DEFAULT_ADMIN_SETTINGS, value);
  const given = (value ?? {}) as Record<string, unknown>;
  return validateAdminSettings({
    ...top,
    alerts: mergeDefaults(`${where}: alerts`, DEFAULT_ALERTS, given.alerts),
    webhook: mergeDefaults(`${where}: webhook`, DEFAULT_WEBHOOK, given.webhook),
  });
}

/** Settings overridden in code (tests, the bench), section by section. */
export type AdminSettingsInput = Partial<Omit<AdminSettings, 'alerts' | 'webhook'>> & {
  alerts?: Partial<AlertThresholds>;
  webhook?: Partial<WebhookSettings>;
};

export function adminSettings(
  over: AdminSettingsInput = {},
  base: AdminSettings = DEFAULT_ADMIN_SETTINGS,
): AdminSettings {
  return validateAdminSettings({
    ...base,
    ...over,
    alerts: { ...base.alerts, ...over.alerts },
    webhook: { ...base.webhook, ...over.webhook },
  });
}

export function adminSettingsPath(masterDir: string): string {
  return join(masterDir, 'admin.json');
}

/** `M/admin.json` if present, else the defaults. */
export function loadAdminSettings(masterDir: string): AdminSettings {
  const path = adminSettingsPath(masterDir);
  if (!existsSync(path)) return adminSettings();
  const parsed = readJsonFile(path, {
    what: 'admin settings',
    badJson: () => ({
      message: `admin settings ${path} is not valid JSON`,
      hint: 'fix the file or remove it to use the defaults',
    }),
  });
  return decodeAdminSettings(parsed, path);
}
