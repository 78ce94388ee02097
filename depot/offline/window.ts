import { join } from 'node:path';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { BundleSigned } from '../../src/wire/bundle.js';
import type { DepotDb } from '../db/depot-db.js';

/**
 * The validity window of the generation an offline bundle brought (issue 7 item 3). The master signs
 * `validUntil` into the bundle, bound to this depot; the depot accepts that generation (its timestamp
 * judged at the bundle's signed `issuedAt`) until the window closes. Kept in the kv table; the signed
 * header itself is kept as D/offline-window.json so agents of this depot can check the window against
 * the master's timestamp key (see the README section "Freshness across an air gap").
 */
export interface OfflineWindow {
  generation: number;
  timestampVersion: number;
  issuedAt: string;
  validUntil: string;
  depot: string;
  importedAt: string;
}

const KEY = 'offlineWindow';

export function windowFile(dir: string): string {
  return join(dir, 'offline-window.json');
}

export async function saveWindow(db: DepotDb, dir: string, signed: BundleSigned, headerJson: Uint8Array, now: Date): Promise<OfflineWindow> {
  const w: OfflineWindow = {
    generation: signed.toGeneration,
    timestampVersion: signed.timestampVersion,
    issuedAt: signed.issuedAt,
    validUntil: signed.validUntil,
    depot: signed.depot,
    importedAt: now.toISOString(),
  };
  await writeFileAtomic(windowFile(dir), headerJson);
  db.setKv(KEY, JSON.stringify(w));
  return w;
}

/** The window of the generation served now; none once an online sync (or nothing) replaced it. */
export function currentWindow(db: DepotDb): OfflineWindow | undefined {
  const raw = db.getKv(KEY);
  if (!raw) return undefined;
  let w: OfflineWindow;
  try {
    w = JSON.parse(raw) as OfflineWindow;
  } catch {
    return undefined;
  }
  const served = db.served();
  return served && served.generation === w.generation && served.timestampVersion === w.timestampVersion ? w : undefined;
}
