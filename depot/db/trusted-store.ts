import { ROLE_NAME, metadataFileName } from '../../src/tuf/context.js';
import { DepotsyncError } from '../../src/errors.js';
import type { TrustedStore } from '../../src/tuf/client.js';
import type { DepotDb } from './depot-db.js';

/**
 * The TUF client's trusted store in the depot database. Everything saved here was verified by the
 * client just before; each file is also kept under its consistent-snapshot name so the depot can
 * re-serve it byte for byte (a mirror serves only what it verified). The timestamp is the exception:
 * `timestamp.json` is served from the switched generation only (served.timestamp), never from here,
 * so agents never see a timestamp whose content the depot does not hold yet.
 */
export class DbTrustedStore implements TrustedStore {
  constructor(
    private readonly db: DepotDb,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async load(role: string): Promise<Uint8Array | undefined> {
    return this.db.trustedLoad(checkRole(role));
  }

  async save(role: string, bytes: Uint8Array, version: number): Promise<void> {
    checkRole(role);
    this.db.tx(`save trusted ${role}`, () => {
      this.db.trustedSave(role, version, bytes);
      if (role !== 'timestamp') this.db.putMetadataFile(metadataFileName(role, version), role, version, bytes, this.now());
    });
  }

  async remove(role: string): Promise<void> {
    this.db.trustedRemove(checkRole(role));
  }
}

function checkRole(role: string): string {
  if (!ROLE_NAME.test(role)) throw new DepotsyncError('bad-path', `trusted metadata role ${JSON.stringify(role)} is not a plain role name`);
  return role;
}
