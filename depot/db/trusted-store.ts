import { ROLE_NAME, isTopLevelRole, metadataFileName } from '../../src/tuf/context.js';
import { DepotsyncError } from '../../src/errors.js';
import type { TrustedStore } from '../../src/tuf/client.js';
import type { DepotDb } from './depot-db.js';

/**
 * The TUF client's trusted store in the depot database. Everything saved here was verified by the
 * client just before; each file is also kept under its consistent-snapshot name so the depot can
 * re-serve it byte for byte (a mirror serves only what it verified). The timestamp is the exception:
 * `timestamp.json` is served from the switched generation only (served.timestamp), never from here,
 * so agents never see a timestamp whose content the depot does not hold yet.
 *
 * Top-level roles (root, timestamp, snapshot, targets) are committed at once: they are the rollback
 * baseline. Bins are collected and committed together by `flush()` (one fsync instead of one per
 * bin: a first sync verifies hundreds of them); a bin lost to a crash before the flush is only
 * fetched again, because the trusted snapshot pins every bin's version.
 */
export class DbTrustedStore implements TrustedStore {
  private readonly pending = new Map<string, { bytes: Uint8Array; version: number }>();

  constructor(
    private readonly db: DepotDb,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async load(role: string): Promise<Uint8Array | undefined> {
    return this.pending.get(checkRole(role))?.bytes ?? this.db.trustedLoad(role);
  }

  async save(role: string, bytes: Uint8Array, version: number): Promise<void> {
    checkRole(role);
    if (!isTopLevelRole(role)) {
      this.pending.set(role, { bytes, version });
      return;
    }
    this.db.tx(`save trusted ${role}`, () => this.write(role, bytes, version));
  }

  async remove(role: string): Promise<void> {
    this.pending.delete(checkRole(role));
    this.db.trustedRemove(role);
  }

  /** Commit the bins saved since the last flush, in one transaction. */
  flush(): void {
    if (this.pending.size === 0) return;
    const items = [...this.pending];
    this.db.tx(`save ${items.length} trusted bins`, () => {
      for (const [role, { bytes, version }] of items) this.write(role, bytes, version);
    });
    for (const [role, item] of items) if (this.pending.get(role) === item) this.pending.delete(role);
  }

  private write(role: string, bytes: Uint8Array, version: number): void {
    this.db.trustedSave(role, version, bytes);
    if (role !== 'timestamp')
      this.db.putMetadataFile(metadataFileName(role, version), role, version, bytes, this.now());
  }
}

function checkRole(role: string): string {
  if (!ROLE_NAME.test(role))
    throw new DepotsyncError(
      'bad-path',
      `trusted metadata role ${JSON.stringify(role)} is not a plain role name`,
    );
  return role;
}
