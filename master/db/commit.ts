import {
  addVersion,
  createGeneration,
  removeVersion,
  type Generation,
  type NewVersion,
  type PackageVersion,
} from './catalog.js';
import { transaction, type MasterDb } from './database.js';
import { putManifest, type ManifestInput } from './manifests.js';
import { putMetadataFile, setBinVersion, type MetadataFile, type MetadataInput } from './metadata.js';

/**
 * One generation in one call and one transaction: manifests, removals, additions, bin versions and the
 * signed metadata (changed bins, snapshot, timestamp). Either all of it commits or none of it does.
 *
 * Meant for a publisher that signs asynchronously: read the catalog, build and sign the metadata for
 * generation N+1 outside any transaction, then commit with `generation: N+1`; if another publish won the
 * race this throws 'conflict' and nothing is written.
 */
export interface GenerationCommit {
  /** The generation number the metadata was built for (compare-and-set); default current+1. */
  generation?: number;
  createdBy: string;
  note?: string;
  timestampVersion?: number;
  /** `generation` may skip numbers (a version epoch after a restore). */
  skip?: boolean;
  manifests?: ManifestInput[];
  remove?: { name: string; version: string }[];
  add?: Omit<NewVersion, 'createdBy'>[];
  bins?: { name: string; version: number }[];
  /** Stored in order, after the catalog changes; `generation` is filled in except for root. */
  metadata?: MetadataInput[];
}

export interface CommittedGeneration {
  generation: Generation;
  removed: PackageVersion[];
  added: PackageVersion[];
  metadata: MetadataFile[];
}

export async function commitGeneration(m: MasterDb, c: GenerationCommit): Promise<CommittedGeneration> {
  const result = await transaction(m, async (): Promise<CommittedGeneration> => {
    // First: the fencing check locks the signer lease until this transaction ends.
    if (m.fence) await m.fence();
    for (const manifest of c.manifests ?? []) await putManifest(m, manifest);
    const generation = await createGeneration(m, {
      createdBy: c.createdBy,
      ...(c.note === undefined ? {} : { note: c.note }),
      ...(c.generation === undefined ? {} : { generation: c.generation }),
      ...(c.timestampVersion === undefined ? {} : { timestampVersion: c.timestampVersion }),
      ...(c.skip ? { skip: true } : {}),
    });
    const n = generation.generation;
    // Removals first, so one generation can replace a version (unpublish X@1, publish X@1 again).
    const removed: PackageVersion[] = [];
    for (const r of c.remove ?? []) removed.push(await removeVersion(m, n, r.name, r.version));
    const added: PackageVersion[] = [];
    for (const a of c.add ?? []) added.push(await addVersion(m, n, { ...a, createdBy: c.createdBy }));
    for (const b of c.bins ?? []) await setBinVersion(m, b.name, b.version, n);
    const metadata: MetadataFile[] = [];
    for (const f of c.metadata ?? []) {
      metadata.push(
        await putMetadataFile(
          m,
          f.role === 'root' || f.generation !== undefined ? f : { ...f, generation: n },
        ),
      );
    }
    return { generation, removed, added, metadata };
  });
  const { generation, added, removed, metadata } = result;
  m.logger.info(
    {
      generation: generation.generation,
      added: added.length,
      removed: removed.length,
      metadata: metadata.length,
    },
    'generation committed',
  );
  return result;
}
