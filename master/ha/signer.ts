import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { MasterDb } from '../db/database.js';
import { acquireLease, assertLeaseHeld, currentLease, SignerLease, type LeaseState } from './lease.js';

/**
 * Refused: another master holds the signer lease (several masters on one catalog). Answered over HTTP
 * as 503 with Retry-After (the lease's time to run out), naming the signer.
 */
export class NotSignerError extends DepotsyncError {
  readonly signer: string | null;
  readonly retryAfterSeconds: number;

  constructor(holder: string, lease: LeaseState | undefined, retryAfterSeconds: number, cause?: unknown) {
    const signer = lease?.live ? lease.holder : null;
    super(
      'conflict',
      signer
        ? `master ${holder} is not the signer: master ${signer} signs now (lease epoch ${lease!.epoch}); nothing was committed`
        : `master ${holder} is not the signer and the lease is being taken over; nothing was committed`,
      {
        hint: signer ? `publish on master ${signer}, or retry later` : `retry in ${retryAfterSeconds} s`,
        ...(cause === undefined ? {} : { cause }),
      },
    );
    this.name = 'NotSignerError';
    this.signer = signer;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

function secondsLeft(lease: LeaseState | undefined, ttlMs: number): number {
  if (!lease?.live) return Math.max(1, Math.ceil(ttlMs / 3000));
  return Math.max(1, Math.ceil((Date.parse(lease.expiresAt) - Date.parse(lease.now)) / 1000));
}

async function refusal(m: MasterDb, holder: string, ttlMs: number, cause?: unknown): Promise<NotSignerError> {
  const lease = await currentLease(m.sql).catch(() => undefined);
  return new NotSignerError(holder, lease, secondsLeft(lease, ttlMs), cause);
}

/** True when `m` is a catalog several masters may share (the lease applies). */
export function sharedCatalog(m: MasterDb): boolean {
  return m.sql.dialect === 'postgres';
}

/**
 * A one-shot process (`master publish`, key rotation…) on a shared catalog: each commit takes the lease
 * inside its transaction when nobody holds it (or this master does), else refuses with NotSignerError.
 */
export function fenceByTakingLease(m: MasterDb, holder: string, ttlMs: number): void {
  m.fence = async () => {
    // Inside the commit transaction: the lease row stays locked until it commits.
    const got = await acquireLease(m.sql, holder, ttlMs);
    if (!got) throw await refusal(m, holder, ttlMs);
  };
}

/**
 * `master serve` on a shared catalog: commits only while `lease` is held, checked against the database
 * inside the commit transaction (a paused former signer finds another epoch there and commits nothing).
 */
export function fenceByLease(m: MasterDb, lease: SignerLease, holder: string, ttlMs: number): void {
  m.fence = async () => {
    const held = lease.held();
    if (!held) throw await refusal(m, holder, ttlMs);
    try {
      await assertLeaseHeld(m.sql, holder, held.epoch);
    } catch (e) {
      if (isDepotsyncError(e, 'conflict')) throw await refusal(m, holder, ttlMs, e);
      throw e;
    }
  };
}

/** Refuse early (before uploading or chunking) when another master signs; the commit checks again. */
export async function checkMaySign(m: MasterDb, holder: string, ttlMs: number, log?: Logger): Promise<void> {
  if (!m.fence) return;
  const lease = await currentLease(m.sql);
  if (lease?.live && lease.holder !== holder) {
    log?.info({ signer: lease.holder }, 'refused: another master signs');
    throw new NotSignerError(holder, lease, secondsLeft(lease, ttlMs));
  }
}
