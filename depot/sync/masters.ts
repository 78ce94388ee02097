import type { Logger } from '../../src/log.js';
import type { UrlMemory, UrlPickerState } from '../../src/net/url-picker.js';
import type { TufClient } from '../../src/tuf/client.js';
import { own } from '../../src/tuf/codec.js';
import { targetInfoOf } from '../../src/tuf/target-info.js';
import { DEPOT_DIRECTORY_TARGET, directoryFromTarget } from '../../src/wire/depot-directory.js';
import type { DepotDb } from '../db/depot-db.js';
import { KV } from './status-report.js';

/**
 * The master URLs the signed depot directory lists (master.json `masterUrls`), read from the
 * targets.json the TUF client has just verified; [] when it lists none. A malformed directory is
 * logged and ignored: the sync itself does not depend on it.
 */
export function signedMasterUrls(client: TufClient, log: Logger): string[] {
  const targets = client.trusted.targets;
  if (!targets) return [];
  const t = own(targets.md.signed.targets, DEPOT_DIRECTORY_TARGET);
  if (!t) return [];
  try {
    return directoryFromTarget(targetInfoOf(t), `${DEPOT_DIRECTORY_TARGET} of the catalog`).masterUrls ?? [];
  } catch (e) {
    log.warn(
      { err: (e as Error).message },
      'the signed depot directory is unreadable; master URLs not learnt',
    );
    return [];
  }
}

/** The master URLs learnt from the last verified catalog (kept in the depot's database). */
export function learntMasterUrls(db: DepotDb): string[] {
  try {
    const v = JSON.parse(db.getKv(KV.masterUrls) ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((u): u is string => typeof u === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * The master client's choice among several URLs, kept in the database: a `depot sync` run after a
 * failover starts with the URL that answered last, and returns to the preferred one on the usual
 * schedule (src/net/url-picker.ts).
 */
export function masterUrlMemory(db: DepotDb): UrlMemory {
  return {
    load() {
      try {
        const v = JSON.parse(db.getKv(KV.masterUrlState) ?? 'null') as Partial<UrlPickerState> | null;
        return typeof v?.active === 'string' && typeof v.preferredFailedAt === 'number'
          ? { active: v.active, preferredFailedAt: v.preferredFailedAt }
          : undefined;
      } catch {
        return undefined;
      }
    },
    save(state) {
      db.setKv(KV.masterUrlState, JSON.stringify(state));
    },
  };
}

/** Remember the signed list; true when it changed. */
export function rememberMasterUrls(db: DepotDb, urls: readonly string[]): boolean {
  const value = JSON.stringify(urls);
  if ((db.getKv(KV.masterUrls) ?? '[]') === value) return false;
  db.setKv(KV.masterUrls, value);
  return true;
}
