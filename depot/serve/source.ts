import type { ChunkReader } from '../../src/serve/chunk-reader.js';
import type { ReadApiSource } from '../../src/serve/read-api.js';
import type { DepotDb } from '../db/depot-db.js';

/**
 * What the depot serves through the shared read API: the switched generation's `timestamp.json`, every
 * verified metadata file by its consistent-snapshot name (immutable, so serving one of a generation
 * being fetched is harmless: no served timestamp points at it yet), the manifests it keeps, the
 * revocation list byte for byte, and chunks from the store (re-hashed before serving).
 */
export function depotReadSource(db: DepotDb, chunks: ChunkReader): ReadApiSource {
  return {
    metadata(name: string): Buffer | undefined {
      if (name === 'timestamp.json') return db.served()?.timestamp;
      return db.metadataFile(name);
    },
    target(name: string): Buffer | undefined {
      return db.targetBytes(name);
    },
    revocations(): Buffer | undefined {
      return db.revocations()?.bytes;
    },
    latestRootVersion: () => db.latestRootVersion(),
    chunks,
  };
}
