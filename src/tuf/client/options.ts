import { DepotsyncError } from '../../errors.js';

/** Per-role download caps (endless-data attack) and loop bounds. Defaults are TUF's client defaults. */
export interface ClientLimits {
  rootMaxBytes: number;
  timestampMaxBytes: number;
  snapshotMaxBytes: number;
  targetsMaxBytes: number;
  /** Root versions walked per update (a client far behind catches up over several updates). */
  maxRootRotations: number;
  /** Bins fetched at the same time. */
  binConcurrency: number;
  /** Delegated roles visited in one target search (the specification's bound on delegation graphs). */
  maxDelegations: number;
}

export const DEFAULT_CLIENT_LIMITS: Readonly<ClientLimits> = {
  rootMaxBytes: 512_000,
  timestampMaxBytes: 16_384,
  snapshotMaxBytes: 2_000_000,
  targetsMaxBytes: 5_000_000,
  maxRootRotations: 32,
  binConcurrency: 8,
  maxDelegations: 32,
};

export function resolveLimits(given: Partial<ClientLimits> = {}): ClientLimits {
  const out = { ...DEFAULT_CLIENT_LIMITS };
  for (const [k, v] of Object.entries(given)) {
    if (!(k in out))
      throw new DepotsyncError(
        'bad-input',
        `tuf client: unknown limit ${JSON.stringify(k)} (expected one of ${Object.keys(out).join(', ')})`,
      );
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new DepotsyncError(
        'bad-input',
        `tuf client: ${k} must be a positive integer, got ${JSON.stringify(v)}`,
      );
    }
    out[k as keyof ClientLimits] = v;
  }
  return out;
}
