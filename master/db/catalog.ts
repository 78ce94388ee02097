import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
import { requireNewest, requireTransaction } from './generations.js';
import { count, orUndefined, text } from './values.js';

export * from './manifests.js';
export * from './live-chunks.js';
export * from './metadata.js';
export * from './generations.js';

/**
 * The catalog: packages, their versions, and generations (a generation = a TUF snapshot version).
 * Publishing or unpublishing is: `createGeneration` then `addVersion`/`removeVersion` (and the signed
 * metadata, metadata.ts), all inside ONE `transaction` (database.ts). The version functions
 * refuse to run outside a transaction, or against a generation that is not the newest, so a generation
 * can never be seen half made. See commit.ts for the one-call form.
 */

export interface PackageVersion {
  id: number;
  name: string;
  version: string;
  manifestId: string;
  manifestSha256: string;
  manifestLength: number;
  targetPath: string;
  bin: string;
  totalBytes: number;
  chunkCount: number;
  addedGeneration: number;
  removedGeneration?: number;
  createdAt: string;
  createdBy: string;
}

export interface NewVersion {
  name: string;
  version: string;
  /** Must already be stored with putManifest; its SHA-256 and length are taken from there. */
  manifestId: string;
  targetPath: string;
  bin: string;
  totalBytes: number;
  /** Chunks in the manifest's chunk lists; defaults to the manifest's distinct chunk count. */
  chunkCount?: number;
  createdBy: string;
}

export interface GenerationChange {
  generation: number;
  kind: 'add' | 'remove';
  name: string;
  version: string;
  manifestId: string;
}

interface VersionRow {
  id: number;
  name: string;
  version: string;
  manifest_id: string;
  manifest_sha256: string;
  manifest_length: number;
  target_path: string;
  bin: string;
  total_bytes: number;
  chunk_count: number;
  added_generation: number;
  removed_generation: number | null;
  created_at: string;
  created_by: string;
}

const toVersion = (r: VersionRow): PackageVersion => {
  const v: PackageVersion = {
    id: r.id,
    name: r.name,
    version: r.version,
    manifestId: r.manifest_id,
    manifestSha256: r.manifest_sha256,
    manifestLength: r.manifest_length,
    targetPath: r.target_path,
    bin: r.bin,
    totalBytes: r.total_bytes,
    chunkCount: r.chunk_count,
    addedGeneration: r.added_generation,
    createdAt: r.created_at,
    createdBy: r.created_by,
  };
  const removed = orUndefined(r.removed_generation);
  if (removed !== undefined) v.removedGeneration = removed;
  return v;
};

const SELECT_VERSION = `SELECT v.id, p.name, v.version, v.manifest_id, v.manifest_sha256, v.manifest_length, v.target_path,
  v.bin, v.total_bytes, v.chunk_count, v.added_generation, v.removed_generation, v.created_at, v.created_by
  FROM package_versions v JOIN packages p ON p.id = v.package_id`;

/** Add a live version in `generation` (the newest, being made in this transaction). */
export async function addVersion(
  m: MasterDb,
  generation: number,
  input: NewVersion,
): Promise<PackageVersion> {
  requireTransaction(m, 'addVersion');
  await requireNewest(m, generation);
  const name = text(input.name, 'package name', 214);
  const version = text(input.version, 'package version', 128);
  const manifest = await m.sql.get<{ sha256: string; length: number; chunk_count: number }>(
    'SELECT sha256, length, chunk_count FROM manifests WHERE id = ?',
    [input.manifestId],
  );
  if (!manifest) {
    throw new DepotsyncError('not-found', `${name}@${version}: manifest ${input.manifestId} is not stored`, {
      hint: 'store the manifest with putManifest in the same transaction first',
    });
  }
  const live = await findVersion(m, name, version);
  if (live) {
    throw new DepotsyncError(
      'already-exists',
      `${name}@${version} is already published (generation ${live.addedGeneration})`,
      {
        hint: 'publish under a new version, or unpublish this one first',
      },
    );
  }
  const now = nowIso(m);
  await m.sql.run('INSERT INTO packages (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [
    name,
    now,
  ]);
  const inserted = await m.sql.get<{ id: number }>(
    `INSERT INTO package_versions (package_id, version, manifest_id, manifest_sha256, manifest_length, target_path, bin,
        total_bytes, chunk_count, added_generation, created_at, created_by)
       VALUES ((SELECT id FROM packages WHERE name = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    [
      name,
      version,
      input.manifestId,
      manifest.sha256,
      manifest.length,
      text(input.targetPath, 'targetPath', 1024),
      text(input.bin, 'bin', 64),
      count(input.totalBytes, 'totalBytes'),
      input.chunkCount === undefined ? manifest.chunk_count : count(input.chunkCount, 'chunkCount'),
      generation,
      now,
      text(input.createdBy, 'createdBy'),
    ],
  );
  await recordChange(m, generation, 'add', name, version, input.manifestId);
  return toVersion((await m.sql.get<VersionRow>(`${SELECT_VERSION} WHERE v.id = ?`, [inserted!.id]))!);
}

/** Unpublish the live `name@version` in `generation`. The row stays, with `removedGeneration` set. */
export async function removeVersion(
  m: MasterDb,
  generation: number,
  name: string,
  version: string,
): Promise<PackageVersion> {
  requireTransaction(m, 'removeVersion');
  await requireNewest(m, generation);
  const live = await findVersion(m, name, version);
  if (!live) {
    throw new DepotsyncError('not-found', `${name}@${version} is not published`, {
      hint: 'list packages to see what is published',
    });
  }
  if (live.addedGeneration === generation) {
    throw new DepotsyncError(
      'conflict',
      `${name}@${version} was added in this same generation ${generation}`,
    );
  }
  await m.sql.run('UPDATE package_versions SET removed_generation = ? WHERE id = ?', [generation, live.id]);
  await recordChange(m, generation, 'remove', live.name, live.version, live.manifestId);
  return { ...live, removedGeneration: generation };
}

/** Live versions, by package name then publish order; optionally only one bin or one package. */
export async function liveVersions(
  m: MasterDb,
  filter: { bin?: string; name?: string } = {},
): Promise<PackageVersion[]> {
  const where = ['v.removed_generation IS NULL'];
  const params: string[] = [];
  if (filter.bin !== undefined) {
    where.push('v.bin = ?');
    params.push(filter.bin);
  }
  if (filter.name !== undefined) {
    where.push('p.name = ?');
    params.push(filter.name);
  }
  const rows = await m.sql.all<VersionRow>(
    `${SELECT_VERSION} WHERE ${where.join(' AND ')} ORDER BY p.name, v.added_generation, v.id`,
    params,
  );
  return rows.map(toVersion);
}

/**
 * The live `name@version`, or with `version` omitted the latest: the live version published most
 * recently (version strings are not ordered; publish order is).
 */
export async function findVersion(
  m: MasterDb,
  name: string,
  version?: string,
): Promise<PackageVersion | undefined> {
  const r = await m.sql.get<VersionRow>(
    `${SELECT_VERSION} WHERE p.name = ? AND v.removed_generation IS NULL${version === undefined ? '' : ' AND v.version = ?'}
       ORDER BY v.added_generation DESC, v.id DESC LIMIT 1`,
    version === undefined ? [name] : [name, version],
  );
  return r && toVersion(r);
}

/** Every row of a package, live and removed, oldest first. */
export async function versionHistory(m: MasterDb, name: string): Promise<PackageVersion[]> {
  const rows = await m.sql.all<VersionRow>(
    `${SELECT_VERSION} WHERE p.name = ? ORDER BY v.added_generation, v.id`,
    [name],
  );
  return rows.map(toVersion);
}

/** Changes made after `generation` (exclusive), oldest first; within a generation removes come first. */
export async function changesSince(m: MasterDb, generation: number): Promise<GenerationChange[]> {
  const rows = await m.sql.all<{
    generation: number;
    kind: 'add' | 'remove';
    package: string;
    version: string;
    manifest_id: string;
  }>(
    `SELECT generation, kind, package, version, manifest_id FROM generation_changes
       WHERE generation > ? ORDER BY generation, kind DESC, package, version`,
    [generation],
  );
  return rows.map((r) => ({
    generation: r.generation,
    kind: r.kind,
    name: r.package,
    version: r.version,
    manifestId: r.manifest_id,
  }));
}

async function recordChange(
  m: MasterDb,
  generation: number,
  kind: 'add' | 'remove',
  name: string,
  version: string,
  manifestId: string,
): Promise<void> {
  await m.sql.run(
    'INSERT INTO generation_changes (generation, kind, package, version, manifest_id) VALUES (?, ?, ?, ?, ?)',
    [generation, kind, name, version, manifestId],
  );
}
