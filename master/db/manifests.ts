import { createHash } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
import { transaction } from '../../src/db/transaction.js';
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
export function putManifest(m: MasterDb, input: ManifestInput): ManifestInfo {
  const id = hex64(input.id, 'manifest id');
  const bytes = Buffer.from(input.bytes.buffer, input.bytes.byteOffset, input.bytes.byteLength);
  const existing = m.db.prepare('SELECT * FROM manifests WHERE id = ?').get(id) as ManifestRow | undefined;
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
  return transaction(m.db, () => {
    const seq = m.db
      .prepare(
        'INSERT INTO manifests (id, sha256, length, bytes, chunk_count, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(id, sha256, bytes.length, bytes, chunks.size, nowIso(m)).lastInsertRowid;
    const ref = m.db.prepare('INSERT INTO chunk_refs (manifest_seq, chunk_id) VALUES (?, ?)');
    for (const c of chunks) ref.run(seq, Buffer.from(c, 'hex'));
    return toInfo(m.db.prepare('SELECT * FROM manifests WHERE seq = ?').get(seq) as ManifestRow);
  });
}

export function getManifest(m: MasterDb, id: string): Buffer | undefined {
  const r = m.db.prepare('SELECT bytes FROM manifests WHERE id = ?').get(id) as { bytes: Buffer } | undefined;
  return r?.bytes;
}

export function getManifestInfo(m: MasterDb, id: string): ManifestInfo | undefined {
  const r = m.db.prepare('SELECT * FROM manifests WHERE id = ?').get(id) as ManifestRow | undefined;
  return r && toInfo(r);
}

/** For `GET /v1/targets/{sha256}.{name}`: the manifest whose canonical bytes hash to `sha256`. */
export function getManifestBySha256(m: MasterDb, sha256: string): { id: string; bytes: Buffer } | undefined {
  const r = m.db.prepare('SELECT id, bytes FROM manifests WHERE sha256 = ? LIMIT 1').get(sha256) as
    { id: string; bytes: Buffer } | undefined;
  return r;
}

/** The distinct chunk ids of one manifest, sorted. */
export function manifestChunkIds(m: MasterDb, id: string): string[] {
  const rows = m.db
    .prepare(
      'SELECT r.chunk_id FROM chunk_refs r JOIN manifests m ON m.seq = r.manifest_seq WHERE m.id = ? ORDER BY r.chunk_id',
    )
    .all(id) as { chunk_id: Buffer }[];
  return rows.map((r) => r.chunk_id.toString('hex'));
}
