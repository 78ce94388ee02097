import { DepotsyncError } from '../../errors.js';
import { DEFAULT_BIN_COUNT, isBinCount, type BinCount } from '../hashbins.js';
import type { Signer } from '../keys.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** How long each role's metadata is valid after it is signed. */
export interface ExpiryMs {
  root: number;
  targets: number;
  bins: number;
  snapshot: number;
  timestamp: number;
}

/**
 * Defaults: timestamp 24 h (freeze attacks are noticed within a day; the master re-signs it on a
 * schedule), snapshot 7 days, targets and bins 90 days (online keys, re-signed by `refresh()`), root
 * 1 year (its keys may be offline; renew with `rotateRoot({}, signers)`).
 */
export const DEFAULT_EXPIRY_MS: Readonly<ExpiryMs> = {
  root: 365 * DAY_MS,
  targets: 90 * DAY_MS,
  bins: 90 * DAY_MS,
  snapshot: 7 * DAY_MS,
  timestamp: 1 * DAY_MS,
};

/** `refresh()` re-signs a role when less than this remains before it expires. */
export const DEFAULT_RENEW_BEFORE_MS: Readonly<ExpiryMs> = {
  root: 30 * DAY_MS,
  targets: 30 * DAY_MS,
  bins: 30 * DAY_MS,
  snapshot: 3 * DAY_MS,
  timestamp: 12 * HOUR_MS,
};

/** The keys the master keeps online. Bins are signed by `bins`, or by the targets key when absent. */
export interface OnlineSigners {
  timestamp: Signer;
  snapshot: Signer;
  targets: Signer;
  bins?: Signer;
}

export interface RepositoryOptions {
  binCount?: BinCount;
  expiryMs?: Partial<ExpiryMs>;
  renewBeforeMs?: Partial<ExpiryMs>;
  /**
   * Also put length and sha256 of targets.json and every bin into the snapshot
   * (default false: versions only).
   */
  snapshotHashes?: boolean;
  now?: () => Date;
}

export interface ResolvedOptions {
  binCount: BinCount;
  expiryMs: ExpiryMs;
  renewBeforeMs: ExpiryMs;
  snapshotHashes: boolean;
  now: () => Date;
}

function durations(
  name: string,
  defaults: Readonly<ExpiryMs>,
  given: Partial<ExpiryMs> | undefined,
): ExpiryMs {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(given ?? {})) {
    if (!(k in defaults))
      throw new DepotsyncError(
        'bad-input',
        `tuf repository: ${name}.${k} is not a role (expected root, targets, bins, snapshot or timestamp)`,
      );
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1000) {
      throw new DepotsyncError(
        'bad-input',
        `tuf repository: ${name}.${k} must be an integer number of milliseconds >= 1000, got ${JSON.stringify(v)}`,
      );
    }
    out[k as keyof ExpiryMs] = v;
  }
  return out;
}

export function resolveOptions(opts: RepositoryOptions = {}): ResolvedOptions {
  const binCount = opts.binCount ?? DEFAULT_BIN_COUNT;
  if (!isBinCount(binCount)) {
    throw new DepotsyncError(
      'bad-input',
      `tuf repository: binCount must be 16, 256 or 4096, got ${JSON.stringify(binCount)}`,
    );
  }
  const expiryMs = durations('expiryMs', DEFAULT_EXPIRY_MS, opts.expiryMs);
  const renewBeforeMs = durations('renewBeforeMs', DEFAULT_RENEW_BEFORE_MS, opts.renewBeforeMs);
  for (const k of Object.keys(expiryMs) as (keyof ExpiryMs)[]) {
    if (renewBeforeMs[k] >= expiryMs[k]) {
      throw new DepotsyncError(
        'bad-input',
        `tuf repository: renewBeforeMs.${k} (${renewBeforeMs[k]}) must be less than expiryMs.${k} (${expiryMs[k]})`,
      );
    }
  }
  return {
    binCount,
    expiryMs,
    renewBeforeMs,
    snapshotHashes: opts.snapshotHashes ?? false,
    now: opts.now ?? (() => new Date()),
  };
}
