import type { Logger } from '../../src/log.js';
import { isRevoked, verifyRevocationList, type RevocationList } from '../../src/wire/revocations.js';
import type { DepotDb } from '../db/depot-db.js';

/**
 * The revocation list the depot enforces: the last one a sync verified (CA signature, no rollback).
 * The sync in this process hands it over at once (`set`); one written by another process (`depot sync`
 * while `depot serve` runs) is picked up from the database within `reloadMs`. An expired list is still
 * enforced: refusing fewer machines because the master has been unreachable would be backwards.
 */
export class RevocationGate {
  private list: RevocationList | undefined;
  private checkedAt = -Infinity;

  constructor(
    private readonly db: DepotDb,
    private readonly caPem: string,
    private readonly log: Logger,
    private readonly opts: { reloadMs?: number; clockMs?: () => number } = {},
  ) {}

  set(list: RevocationList): void {
    if (!this.list || list.version >= this.list.version) this.list = list;
  }

  current(): RevocationList | undefined {
    const t = (this.opts.clockMs ?? Date.now)();
    if (t - this.checkedAt >= (this.opts.reloadMs ?? 1000)) {
      this.checkedAt = t;
      this.reload();
    }
    return this.list;
  }

  isRevoked(serial: string): boolean {
    const list = this.current();
    return list !== undefined && isRevoked(list, serial);
  }

  private reload(): void {
    const kept = this.db.revocations();
    if (!kept || (this.list && kept.version <= this.list.version)) return;
    try {
      // Distrust our own disk: the stored list is verified again (signature) before it is used.
      this.set(verifyRevocationList(kept.bytes, this.caPem, { now: new Date(0) }));
    } catch (e) {
      this.log.error(
        { err: (e as Error).message },
        'stored revocation list does not verify; keeping the previous one',
      );
    }
  }
}
