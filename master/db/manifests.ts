import { createHash } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import { nowIso, transaction, type MasterDb } from './database.js';
import { hex64 } from './values.js';

/**
 * Package manifests (canonical bytes, the TUF target file content) and the chunk ids each one
 * references. The caller computes the manifest id (BLAKE3 of the canonical bytes, src/content);
 * this module computes the SHA-256 and length that TUF lists for the target.
 */
export interface ManifestInput {
  id: string;
  bytes: Uint8Array;
  /** Every chunk id the manifest references (hex); duplicates are fine. */
  chunkIds: Iterable<string>;
}

export interface ManifestInfo {
  id: string;
  sha256: string;
  length: number;
  /** Distinct chunk ids referenced. */
  chunkCount: number;
  createdAt: string;
}

interface ManifestRow {
  seq: number;
  id: string;
  sha256: string;
  length: number;
  bytes: Buffer;
  chunk_count: number;
  created_at: string;
}

const toInfo = (r: ManifestRow): ManifestInfo => ({
  id: r.id,
  sha256: r.sha256,
  length: r.length,
  chunkCount: r.chunk_count,
  createdAt: r.created_at,
});

/**
 * Store a manifest and its chunk references. Content addressing makes "already stored with the same
 * bytes" a success; the same id with different bytes is refused (a hash collision or a caller bug).
 */
export async function putManifest(m: MasterDb, input: ManifestInput): Promise<ManifestInfo> {
  const id = hex64(input.id, 'manifest id');
  const bytes = Buffer.from(input.bytes.buffer, input.bytes.byteOffset, input.bytes.byteLength);
  // The check and the insert in one transaction: another writer storing the same id in between would
  // otherwise make this fail on the unique index instead of succeeding.
  return transaction(m, async () => {
    const existing = await m.sql.get<ManifestRow>('SELECT * FROM manifests WHERE id = ?', [id]);
    if (existing) {
      if (!existing.bytes.equals(bytes)) {
        throw new DepotsyncError('conflict', `manifest ${id}: already stored with different bytes`, {
          hint: 'a manifest id must be the BLAKE3 hash of its canonical bytes; check the publisher',
        });
      }
      return toInfo(existing);
    }
    const chunks = new Set<string>();
    for (const c of input.chunkIds) chunks.add(hex64(c, `manifest ${id}: chunk id`));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const row = await m.sql.get<ManifestRow>(
      'INSERT INTO manifests (id, sha256, length, bytes, chunk_count, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *',
      [id, sha256, bytes.length, bytes, chunks.size, nowIso(m)],
    );
    for (const c of chunks) {
      await m.sql.run('INSERT INTO chunk_refs (manifest_seq, chunk_id) VALUES (?, ?)', [
        row!.seq,
        Buffer.from(c, 'hex'),
      ]);
    }
    return toInfo(row!);
  });
}

export async function getManifest(m: MasterDb, id: string): Promise<Buffer | undefined> {
  const r = await m.sql.get<{ bytes: Buffer }>('SELECT bytes FROM manifests WHERE id = ?', [id]);
  return r?.bytes;
}

export async function getManifestInfo(m: MasterDb, id: string): Promise<ManifestInfo | undefined> {
  const r = await m.sql.get<ManifestRow>('SELECT * FROM manifests WHERE id = ?', [id]);
  return r && toInfo(r);
}

/** For `GET /v1/targets/{sha256}.{name}`: the manifest whose canonical bytes hash to `sha256`. */
export async function getManifestBySha256(
  m: MasterDb,
  sha256: string,
): Promise<{ id: string; bytes: Buffer } | undefined> {
  return m.sql.get<{ id: string; bytes: Buffer }>(
    'SELECT id, bytes FROM manifests WHERE sha256 = ? LIMIT 1',
    [sha256],
  );
}

/** The distinct chunk ids of one manifest, sorted. */
export async function manifestChunkIds(m: MasterDb, id: string): Promise<string[]> {
  const rows = await m.sql.all<{ chunk_id: Buffer }>(
    'SELECT r.chunk_id FROM chunk_refs r JOIN manifests m ON m.seq = r.manifest_seq WHERE m.id = ? ORDER BY r.chunk_id',
    [id],
  );
  return rows.map((r) => r.chunk_id.toString('hex'));
}
