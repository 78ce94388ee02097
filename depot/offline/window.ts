import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Root } from '@tufjs/models';
import { DepotsyncError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { BundleSigned } from '../../src/wire/bundle.js';
import {
  VALIDITY_WINDOW_MAX_BYTES,
  VALIDITY_WINDOW_SECTION,
  verifyValidityWindow,
} from '../../src/wire/validity-window.js';
import type { DepotDb } from '../db/depot-db.js';
import type { BundleFile } from './bundle-file.js';

/**
 * The validity window of the generation an offline bundle brought. The master signs
 * `validUntil` into the bundle, bound to this depot; the depot accepts that generation (its timestamp
 * judged at the bundle's signed `issuedAt`) until the window closes. Kept in the kv table; the window's
 * own signed document (src/wire/validity-window.ts) is kept as D/offline-window.json and served to this
 * depot's agents at `GET /v1/validity-window`, who check it against the master's timestamp key (see
 * the README section "Freshness across an air gap").
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

/**
 * The bundle's signed validity-window document: verified with `root`'s timestamp keys (the root that
 * verified the header) and equal, field for field, to the signed header. Threat: a window section
 * taken from another bundle (another depot, generation or window end) spliced into this one.
 */
export async function readBundleWindow(file: BundleFile, root: Root): Promise<Buffer> {
  const s = file.section('validity-window', VALIDITY_WINDOW_SECTION);
  if (!s) {
    throw new DepotsyncError('bad-metadata', `${file.what} carries no ${VALIDITY_WINDOW_SECTION}`, {
      hint: 'it was exported by an older depotsync; export it again from the master',
    });
  }
  if (s.length > VALIDITY_WINDOW_MAX_BYTES)
    throw new DepotsyncError(
      'too-large',
      `${file.what}: ${VALIDITY_WINDOW_SECTION} is ${s.length} bytes, above ${VALIDITY_WINDOW_MAX_BYTES}`,
    );
  const bytes = await file.readSection(s);
  const w = verifyValidityWindow(bytes, root, `${file.what}: ${VALIDITY_WINDOW_SECTION}`);
  const h = file.header.signed;
  const differs = (
    [
      ['depot', w.depot, h.depot],
      ['generation', w.generation, h.toGeneration],
      ['timestampVersion', w.timestampVersion, h.timestampVersion],
      ['issuedAt', w.issuedAt, h.issuedAt],
      ['validUntil', w.validUntil, h.validUntil],
    ] as const
  ).filter(([, a, b]) => a !== b);
  if (differs.length) {
    throw new DepotsyncError(
      'bad-metadata',
      `${file.what}: its validity window differs from the header in ${differs.map(([k, a, b]) => `${k} (${a} vs ${b})`).join(', ')}`,
      {
        hint: 'the bundle was assembled from pieces of different exports; export it again',
      },
    );
  }
  return bytes;
}

/** The signed window document this depot serves to its agents, or undefined when none is current. */
export async function servedWindowBytes(db: DepotDb, dir: string): Promise<Buffer | undefined> {
  if (!currentWindow(db)) return undefined;
  try {
    return await readFile(windowFile(dir));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export async function saveWindow(
  db: DepotDb,
  dir: string,
  signed: BundleSigned,
  windowJson: Uint8Array,
  now: Date,
): Promise<OfflineWindow> {
  const w: OfflineWindow = {
    generation: signed.toGeneration,
    timestampVersion: signed.timestampVersion,
    issuedAt: signed.issuedAt,
    validUntil: signed.validUntil,
    depot: signed.depot,
    importedAt: now.toISOString(),
  };
  await writeFileAtomic(windowFile(dir), windowJson);
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
  return served && served.generation === w.generation && served.timestampVersion === w.timestampVersion
    ? w
    : undefined;
}
