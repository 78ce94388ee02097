import { createHash } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
import { count, orNull, orUndefined } from './values.js';

/**
 * Signed TUF metadata files, served byte for byte from here (`GET /v1/metadata/{name}`). They live in
 * the database rather than on disk so that a generation and the metadata announcing it commit in one
 * transaction. Names follow TUF consistent snapshots: `{version}.{role}.json`, except `timestamp.json`.
 * Version-prefixed files are immutable; `timestamp.json` is replaced by each re-signing.
 */
export interface MetadataInput {
  /** 'root', 'timestamp', 'snapshot', 'targets' or a delegated role such as a hashed bin ('bin-3a'). */
  role: string;
  version: number;
  bytes: Uint8Array;
  /** The generation this file belongs to (absent for root). */
  generation?: number;
}

export interface MetadataFile {
  name: string;
  role: string;
  version: number;
  bytes: Buffer;
  sha256: string;
  length: number;
  generation?: number;
  createdAt: string;
}

export interface BinVersion {
  name: string;
  version: number;
  generation: number;
}

interface MetadataRow {
  name: string;
  role: string;
  version: number;
  bytes: Buffer;
  sha256: string;
  length: number;
  generation: number | null;
  created_at: string;
}

const ROLE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

const toFile = (r: MetadataRow): MetadataFile => {
  const f: MetadataFile = {
    name: r.name,
    role: r.role,
    version: r.version,
    bytes: r.bytes,
    sha256: r.sha256,
    length: r.length,
    createdAt: r.created_at,
  };
  const g = orUndefined(r.generation);
  if (g !== undefined) f.generation = g;
  return f;
};

export function metadataFileName(role: string, version: number): string {
  if (!ROLE.test(role))
    throw new DepotsyncError('bad-input', `metadata role ${JSON.stringify(role)} is not a valid role name`);
  return role === 'timestamp' ? 'timestamp.json' : `${count(version, `${role} version`, 1)}.${role}.json`;
}

/**
 * Store one signed metadata file. Storing the same bytes again is a success. Refused: different bytes
 * under an existing name (a signed file never changes), and a version not newer than the newest stored
 * for the role (the master itself must never roll a role back).
 */
export async function putMetadataFile(m: MasterDb, input: MetadataInput): Promise<MetadataFile> {
  const name = metadataFileName(input.role, input.version);
  const version = count(input.version, `${input.role} version`, 1);
  const bytes = Buffer.from(input.bytes.buffer, input.bytes.byteOffset, input.bytes.byteLength);
  const latest = await latestMetadata(m, input.role);
  if (latest && latest.version === version) {
    if (latest.bytes.equals(bytes)) return latest;
    throw new DepotsyncError(
      'conflict',
      `metadata ${name} version ${version} is already stored with different bytes`,
      {
        hint: 'sign a new version instead of replacing a published one',
      },
    );
  }
  if (latest && latest.version > version) {
    throw new DepotsyncError(
      'version-rollback',
      `metadata ${name}: version ${version} is older than the stored version ${latest.version}`,
      {
        hint: 'the signer must start from the newest stored version',
      },
    );
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const row = [name, input.role, version, bytes, sha256, bytes.length, orNull(input.generation), nowIso(m)];
  if (input.role === 'timestamp') {
    await m.sql.run(
      `INSERT INTO metadata_files (name, role, version, bytes, sha256, length, generation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, bytes = excluded.bytes, sha256 = excluded.sha256,
           length = excluded.length, generation = excluded.generation, created_at = excluded.created_at`,
      row,
    );
  } else {
    await m.sql.run(
      'INSERT INTO metadata_files (name, role, version, bytes, sha256, length, generation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      row,
    );
  }
  return (await getMetadataFile(m, name))!;
}

export async function getMetadataFile(m: MasterDb, name: string): Promise<MetadataFile | undefined> {
  const r = await m.sql.get<MetadataRow>('SELECT * FROM metadata_files WHERE name = ?', [name]);
  return r && toFile(r);
}

/** The newest stored version of a role's metadata. */
export async function latestMetadata(m: MasterDb, role: string): Promise<MetadataFile | undefined> {
  const r = await m.sql.get<MetadataRow>(
    'SELECT * FROM metadata_files WHERE role = ? ORDER BY version DESC LIMIT 1',
    [role],
  );
  return r && toFile(r);
}

/** Every root version, oldest first (agents walk the chain from their pinned root). */
export async function rootVersions(m: MasterDb): Promise<number[]> {
  return (
    await m.sql.all<{ version: number }>(
      "SELECT version FROM metadata_files WHERE role = 'root' ORDER BY version",
    )
  ).map((r) => r.version);
}

/** Record that bin `name` is now at `version`, signed in `generation`. Versions only move forward. */
export async function setBinVersion(
  m: MasterDb,
  name: string,
  version: number,
  generation: number,
): Promise<BinVersion> {
  if (!ROLE.test(name))
    throw new DepotsyncError('bad-input', `bin name ${JSON.stringify(name)} is not a valid role name`);
  const v = count(version, `bin ${name} version`, 1);
  const old = await m.sql.get<{ version: number }>('SELECT version FROM bins WHERE name = ?', [name]);
  if (old && old.version > v) {
    throw new DepotsyncError(
      'version-rollback',
      `bin ${name}: version ${v} is older than the recorded version ${old.version}`,
    );
  }
  await m.sql.run(
    'INSERT INTO bins (name, version, generation) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version, generation = excluded.generation',
    [name, v, generation],
  );
  return { name, version: v, generation };
}

/**
 * Every bin at its recorded version with its signed file (undefined if missing), by bin name, in one query:
 * a query per bin costs a round trip each on a database server, hundreds per publish.
 */
export async function currentBinFiles(
  m: MasterDb,
): Promise<{ name: string; version: number; file: MetadataFile | undefined }[]> {
  const rows = await m.sql.all<MetadataRow & { bin: string; bin_version: number; file: string | null }>(
    `SELECT b.name AS bin, b.version AS bin_version, f.name AS file, f.* FROM bins b
       LEFT JOIN metadata_files f ON f.name = b.version || '.' || b.name || '.json' ORDER BY b.name`,
  );
  return rows.map((r) => ({
    name: r.bin,
    version: r.bin_version,
    file: r.file === null ? undefined : toFile(r),
  }));
}

export async function binVersions(m: MasterDb): Promise<BinVersion[]> {
  return m.sql.all<BinVersion>('SELECT name, version, generation FROM bins ORDER BY name');
}
