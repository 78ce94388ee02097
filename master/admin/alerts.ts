import type { ExpiringCertificate } from './certificates.js';
import { formatBytes } from '../../src/format.js';
import type { AlertThresholds } from './config.js';
import type { DepotView } from './depot-status.js';

/**
 * Alerts are derived, never entered: each evaluation computes the set of conditions true NOW from the
 * status model; `AlertMonitor` compares it with the previous set to raise, repeat and clear. So an alert
 * clears by itself when its cause is gone.
 */
export type AlertLevel = 'warning' | 'error';
export type AlertKind =
  | 'certificate'
  | 'lagging'
  | 'silent'
  | 'failing'
  | 'low-disk'
  | 'validity'
  | 'scrub'
  | 'backup'
  | 'metadata-expiry'
  | 'operator-token'
  | 'notification';

export interface Alert {
  /** `kind:subject`: the identity that raising, repeating and clearing follow. */
  key: string;
  kind: AlertKind;
  /** The depot or machine (or 'master (server)') it is about. */
  subject: string;
  level: AlertLevel;
  message: string;
  /** When the alert was first raised (set by the monitor; absent on a fresh computation). */
  since?: string;
}

const alert = (kind: AlertKind, subject: string, level: AlertLevel, message: string): Alert => ({
  key: `${kind}:${subject}`,
  kind,
  subject,
  level,
  message,
});

export function computeAlerts(
  depots: DepotView[],
  certificates: ExpiringCertificate[],
  t: AlertThresholds,
  nowMs: number,
): Alert[] {
  const out: Alert[] = [];
  for (const c of certificates) {
    if (c.daysLeft > t.certWarningDays) continue;
    const level: AlertLevel = c.daysLeft <= t.certErrorDays ? 'error' : 'warning';
    const when =
      c.daysLeft < 0
        ? `expired on ${c.notAfter.slice(0, 10)}`
        : `expires in ${c.daysLeft} day(s) (${c.notAfter.slice(0, 10)})`;
    out.push(
      alert(
        'certificate',
        c.subject,
        level,
        `certificate of ${c.role === 'master' ? c.subject : `${c.role} ${c.subject}`} ${when}`,
      ),
    );
  }
  for (const d of depots) {
    if (d.machineState !== 'approved') continue;
    if (d.state === 'silent' && d.lastSeen) {
      const minutes = Math.floor((nowMs - Date.parse(d.lastSeen)) / 60_000);
      out.push(
        alert(
          'silent',
          d.name,
          'error',
          `depot ${d.name} has not been heard from for ${formatMinutes(minutes)} (threshold ${formatMinutes(t.silentMinutes)})`,
        ),
      );
    }
    if (
      d.state === 'never-reported' &&
      d.approvedAt &&
      nowMs - Date.parse(d.approvedAt) > t.silentMinutes * 60_000
    ) {
      out.push(
        alert(
          'silent',
          d.name,
          'error',
          `depot ${d.name} was approved ${d.approvedAt} and has never reported`,
        ),
      );
    }
    if (d.consecutiveFailures >= t.failingSyncs) {
      out.push(
        alert(
          'failing',
          d.name,
          'error',
          `depot ${d.name} failed ${d.consecutiveFailures} syncs in a row: ${d.lastError ?? 'unknown error'}`,
        ),
      );
    }
    if (
      d.servedGeneration !== null &&
      d.lagGenerations > 0 &&
      (d.lagGenerations >= t.lagGenerations || d.lagSeconds >= t.lagHours * 3600)
    ) {
      out.push(
        alert(
          'lagging',
          d.name,
          'warning',
          `depot ${d.name} is ${d.lagGenerations} generation(s) behind for ${formatMinutes(Math.floor(d.lagSeconds / 60))} (thresholds ${t.lagGenerations} generations, ${t.lagHours} h)`,
        ),
      );
    }
    const level = lowDiskLevel(d.freeDiskBytes, t.lowDiskBytes, d.bytesRemaining);
    if (level && d.freeDiskBytes !== null) {
      out.push(
        alert(
          'low-disk',
          d.name,
          level,
          `depot ${d.name} has ${formatBytes(d.freeDiskBytes)} free disk${d.bytesRemaining ? ` and ${formatBytes(d.bytesRemaining)} still to fetch` : ''}`,
        ),
      );
    }
    if (d.scrub.failed > 0) {
      out.push(
        alert(
          'scrub',
          d.name,
          'warning',
          `depot ${d.name}: scrub found ${d.scrub.failed} damaged chunk(s) (re-fetched on the next sync)`,
        ),
      );
    }
    if (d.offline && d.validUntil) {
      const hoursLeft = (Date.parse(d.validUntil) - nowMs) / 3_600_000;
      if (hoursLeft <= 0)
        out.push(
          alert(
            'validity',
            d.name,
            'error',
            `offline depot ${d.name}: its generation's validity window ended ${d.validUntil}; send it a new bundle`,
          ),
        );
      else if (hoursLeft <= t.validityWarningHours)
        out.push(
          alert(
            'validity',
            d.name,
            'warning',
            `offline depot ${d.name}: its validity window ends ${d.validUntil}; send it a new bundle`,
          ),
        );
    }
  }
  return sortAlerts(out);
}

/**
 * The low-disk rule of depots and the master: a warning under `thresholdBytes` (0 = off), an error when
 * less is free than is still needed. A master has nothing pending, so it counts a quarter of the threshold
 * as needed: its store and database must not fill up.
 */
export function lowDiskLevel(
  freeBytes: number | null,
  thresholdBytes: number,
  neededBytes: number,
): AlertLevel | undefined {
  if (thresholdBytes <= 0 || freeBytes === null || freeBytes >= Math.max(thresholdBytes, neededBytes))
    return undefined;
  return freeBytes < neededBytes ? 'error' : 'warning';
}

/** The master's own low-disk alert, on the file system of its directory (store, database, backups). */
export function masterDiskAlerts(
  freeBytes: number | null,
  t: Pick<AlertThresholds, 'lowDiskBytes'>,
): Alert[] {
  const level = lowDiskLevel(freeBytes, t.lowDiskBytes, Math.floor(t.lowDiskBytes / 4));
  if (!level || freeBytes === null) return [];
  return [
    alert(
      'low-disk',
      MASTER_DISK_SUBJECT,
      level,
      `the master has ${formatBytes(freeBytes)} free disk (threshold ${formatBytes(t.lowDiskBytes)})`,
    ),
  ];
}

export const MASTER_DISK_SUBJECT = 'master (store)';

/** Errors first, then by key. */
export function sortAlerts(alerts: Alert[]): Alert[] {
  return alerts.sort((a, b) =>
    a.level === b.level ? a.key.localeCompare(b.key) : a.level === 'error' ? -1 : 1,
  );
}

export function formatMinutes(minutes: number): string {
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  return `${Math.floor(minutes / 1440)} days`;
}

export { formatBytes } from '../../src/format.js';
