import { deflateRawSync } from 'node:zlib';
import { decodeManifest, manifestChunks } from '../../src/content/manifest.js';
import { SizedBufferPool } from '../../src/store/buffer-pool.js';
import { DepotsyncError } from '../../src/errors.js';
import { metadataDelta } from '../../src/tuf/repository.js';
import { BUNDLE_LIMITS, BUNDLE_TYPE, BUNDLE_FORMAT_VERSION } from '../../src/wire/bundle.js';
import { DeltaPool } from '../../src/deltas/pool.js';
import { CachedZstdDeltas, ON_REQUEST_LEVEL } from '../../src/deltas/source.js';
import {
  DELTA_KIND,
  DELTA_SECTION,
  deltaRecords,
  encodeDeltaSection,
  type DeltaPair,
} from '../../src/wire/chunk-delta.js';
import { masterDeltaCache } from '../deltas/deltas.js';
import { bundleDeltaPairs, type BundlePair } from '../../src/content/delta-pairs.js';
import { sealFor, type BundleSeal } from './seal.js';
import {
  encodeValidityWindow,
  VALIDITY_WINDOW_FORMAT,
  VALIDITY_WINDOW_SECTION,
  VALIDITY_WINDOW_TYPE,
  type ValidityWindow,
} from '../../src/wire/validity-window.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import {
  currentGeneration,
  getManifest,
  getMetadataFile,
  latestMetadata,
  manifestChunkIds,
  rootVersions,
} from '../db/catalog.js';
import { byName } from '../db/machines.js';
import { statusHistory } from '../db/status.js';
import { readRevocationList } from '../revocations.js';
import { refreshOnce } from '../server/refresher.js';
import { writeBundle, type ByteSection, type PlannedChunk } from './writer.js';

export const EXPORT_DEFAULTS = {
  validMs: 30 * 86_400_000,
  /** Longest window an operator may sign: beyond it, revocations and key rotations arrive too late. */
  maxValidMs: 366 * 86_400_000,
} as const;

export interface ExportOptions {
  /** The depot's machine name: the bundle is bound to it. */
  depot: string;
  out: string;
  /** Generation the depot holds (0: a full bundle); default its last reported generation, else 0. */
  from?: number | undefined;
  validMs?: number | undefined;
  actor?: string;
  now?: () => Date;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  chunkSectionMaxBytes?: number;
  /** `--encrypt`: seal the sections for the depot's certificate key on record (seal.ts). */
  encrypt?: boolean;
  /** Plaintext bytes per sealed block (default bundle-crypto.ts SEAL_DEFAULTS). */
  sealBlockBytes?: number;
}

export interface ExportResult {
  file: string;
  bytes: number;
  fromGeneration: number;
  toGeneration: number;
  chunks: number;
  chunkBytes: number;
  /** Plain bytes of the chunks carried whole, and what their records hold in the file (compressed). */
  chunkPlainBytes: number;
  chunkWireBytes: number;
  manifests: number;
  metadataFiles: number;
  validUntil: string;
  /** Where `fromGeneration` came from. */
  base: 'option' | 'last-report' | 'none';
  /** Sealed for this certificate serial of the depot (`--encrypt`), else null. */
  encryptedFor: string | null;
  /** Chunks carried as deltas against chunks of the depot's generation (the rest, `chunks`, whole). */
  deltaChunks: number;
}

interface LiveRow {
  manifestId: string;
  sha256: string;
  targetPath: string;
}

/** Package versions live in `generation` (added at or before it, not removed by it), in publish order. */
export async function liveAt(ctx: Pick<MasterContext, 'db'>, generation: number): Promise<LiveRow[]> {
  const rows = await ctx.db.sql.all<{ manifest_id: string; manifest_sha256: string; target_path: string }>(
    `SELECT manifest_id, manifest_sha256, target_path FROM package_versions
       WHERE added_generation <= ? AND (removed_generation IS NULL OR removed_generation > ?) ORDER BY added_generation, id`,
    [generation, generation],
  );
  return rows.map((r) => ({
    manifestId: r.manifest_id,
    sha256: r.manifest_sha256,
    targetPath: r.target_path,
  }));
}

/**
 * `master export`: the bundle that takes depot MACHINE from generation A to the current generation B.
 * Expiring metadata is re-signed first (as the running master would), so the bundle carries a fresh
 * timestamp and revocation list. Content: root versions after 1 (key rotations cross the gap), the
 * timestamp, snapshot B, the targets roles whose versions differ from A's, the revocation list, the
 * manifests live in B but not in A, and the chunks of B that no manifest of A holds.
 */
export async function exportBundle(ctx: MasterContext, o: ExportOptions): Promise<ExportResult> {
  const now = o.now ?? (() => new Date());
  const machine = await byName(ctx.db, o.depot);
  if (!machine)
    throw new DepotsyncError('not-found', `master export: no machine named ${JSON.stringify(o.depot)}`, {
      hint: 'the depot enrolls first (depotsync depot init --offline, then master approve --request)',
    });
  if (machine.role !== 'depot')
    throw new DepotsyncError(
      'bad-input',
      `master export: ${o.depot} is ${machine.role === 'agent' ? 'an agent' : machine.role}, not a depot`,
    );
  if (machine.state !== 'approved')
    throw new DepotsyncError(
      'forbidden',
      `master export: depot ${o.depot} is ${machine.state}; bundles go only to approved depots`,
    );
  const validMs = o.validMs ?? EXPORT_DEFAULTS.validMs;
  if (!Number.isSafeInteger(validMs) || validMs < 60_000 || validMs > EXPORT_DEFAULTS.maxValidMs) {
    throw new DepotsyncError('usage', `master export: --valid must be from 1m to 366d, got ${validMs} ms`);
  }
  // Before any work: a depot with no certificate on record has no key to encrypt for.
  const seal: BundleSeal | undefined = o.encrypt ? sealFor(machine, o.sealBlockBytes) : undefined;

  await refreshOnce(ctx, now);
  const to = await currentGeneration(ctx.db);
  const reported = (await statusHistory(ctx.db, o.depot, 1))[0]?.servedGeneration;
  const base: ExportResult['base'] =
    o.from !== undefined ? 'option' : reported !== undefined ? 'last-report' : 'none';
  const from = o.from ?? reported ?? 0;
  if (!Number.isSafeInteger(from) || from < 0 || from > to) {
    throw new DepotsyncError(
      'usage',
      `master export: --from ${from} is not a generation of this master (0 to ${to})`,
      { hint: '--from 0 makes a full bundle' },
    );
  }

  // 1. Metadata A → B.
  const toSnapshot = await latestMetadata(ctx.db, 'snapshot');
  const timestamp = await latestMetadata(ctx.db, 'timestamp');
  if (!toSnapshot || !timestamp || toSnapshot.version !== to)
    throw new DepotsyncError('corrupt', `master database: generation ${to} has no snapshot v${to}`);
  const fromSnapshot = from > 0 ? await getMetadataFile(ctx.db, `${from}.snapshot.json`) : undefined;
  if (from > 0 && !fromSnapshot)
    throw new DepotsyncError('not-found', `master export: generation ${from} has no snapshot on record`, {
      hint: 'export a full bundle with --from 0',
    });
  const roots = await rootVersions(ctx.db);
  const rootVersion = roots[roots.length - 1] ?? 1;
  const names = metadataDelta({
    ...(fromSnapshot ? { fromSnapshot: fromSnapshot.bytes } : {}),
    fromRootVersion: 1,
    toSnapshot: toSnapshot.bytes,
    toRootVersion: rootVersion,
  });
  const sections: ByteSection[] = [];
  for (const name of names) {
    const file = name === 'timestamp.json' ? timestamp : await getMetadataFile(ctx.db, name);
    if (!file)
      throw new DepotsyncError('corrupt', `master database lacks metadata ${name}`, {
        hint: 'restore the master directory from a backup',
      });
    sections.push({ kind: 'metadata', name, bytes: file.bytes });
  }
  const metadataFiles = sections.length;
  const issued = now();
  const validUntil = new Date(issued.getTime() + validMs).toISOString();
  const tsVersion = timestamp.version;
  // The window again as a small document of its own, for the agents the depot serves (validity-window.ts).
  const windowDoc: ValidityWindow = {
    _type: VALIDITY_WINDOW_TYPE,
    formatVersion: VALIDITY_WINDOW_FORMAT,
    depot: o.depot,
    generation: to,
    timestampVersion: tsVersion,
    issuedAt: issued.toISOString(),
    validUntil,
  };
  sections.push({
    kind: 'validity-window',
    name: VALIDITY_WINDOW_SECTION,
    bytes: encodeValidityWindow(windowDoc, [ctx.signers.timestamp]),
  });

  // 2. Revocation list.
  const revocations = readRevocationList(ctx.layout);
  if (revocations) sections.push({ kind: 'revocations', name: 'revocations.json', bytes: revocations });

  // 3. Manifests and 4. chunks a depot at A lacks.
  const had = from > 0 ? await liveAt(ctx, from) : [];
  const hadTargets = new Set(had.map((v) => `${v.sha256}.${v.targetPath}`));
  const hadChunks = new Set<string>();
  for (const v of had) for (const id of await manifestChunkIds(ctx.db, v.manifestId)) hadChunks.add(id);
  const chunks: PlannedChunk[] = [];
  const planned = new Set<string>();
  let chunkBytes = 0;
  let manifests = 0;
  const live = await liveAt(ctx, to);
  for (const v of live) {
    const bytes = await getManifest(ctx.db, v.manifestId);
    if (!bytes) throw new DepotsyncError('corrupt', `master database lacks manifest ${v.manifestId}`);
    const name = `${v.sha256}.${v.targetPath}`;
    if (!hadTargets.has(name)) {
      // Stored compressed when that is smaller: a manifest's chunk list is base64 (6 bits a byte).
      const deflated = deflateRawSync(bytes, { level: 9 });
      sections.push(
        deflated.length < bytes.length
          ? { kind: 'manifest', name, bytes: deflated, encoding: 'deflate' }
          : { kind: 'manifest', name, bytes },
      );
      manifests++;
    }
    for (const c of manifestChunks(decodeManifest(bytes, { what: `manifest ${v.targetPath}` }))) {
      if (hadChunks.has(c.id) || planned.has(c.id)) continue;
      planned.add(c.id);
      chunks.push({ id: c.id, length: c.length });
      chunkBytes += c.length;
    }
  }

  // 5. Chunks that replace chunks of generation A go as deltas against them (chunk-deltas section):
  //    a 4 KiB edit then costs about 4 KiB instead of the ~64 KiB chunk around it, as online.
  let deltas: { chunks: number; bytes: number } | undefined;
  if (from > 0 && chunks.length > 0) {
    // The manifests' bytes are read first (the catalog is asynchronous); decoded on demand by `load`.
    const versions = async (rows: LiveRow[]) => {
      const out = [];
      for (const v of rows) {
        const b = await getManifest(ctx.db, v.manifestId);
        out.push({
          name: `${v.sha256}.${v.targetPath}`,
          path: v.targetPath,
          load: () => (b ? decodeManifest(b, { what: `manifest ${v.targetPath}` }) : undefined),
        });
      }
      return out;
    };
    const section = await deltaSection(
      ctx,
      bundleDeltaPairs(
        await versions(had),
        await versions(live.filter((v) => !hadTargets.has(`${v.sha256}.${v.targetPath}`))),
      ),
    );
    if (section) {
      sections.push({ kind: 'chunk-deltas', name: DELTA_SECTION, bytes: section.bytes });
      const sent = section.targets;
      const whole = chunks.filter((c) => !sent.has(c.id));
      deltas = { chunks: chunks.length - whole.length, bytes: section.bytes.length };
      chunks.splice(0, chunks.length, ...whole);
    }
  }

  // Chunks go as the store holds them (compressed where that paid at publish): the table of contents
  // commits to their stored lengths, read from the index before any chunk is read.
  const forms = ctx.store.storedForms(chunks.map((c) => c.id));
  let chunkPlainBytes = 0;
  let chunkWireBytes = 0;
  chunks.forEach((c, i) => {
    const f = forms[i];
    if (f && f.plainLength === c.length) c.stored = { encoding: f.encoding, length: f.length };
    chunkPlainBytes += c.length;
    chunkWireBytes += c.stored?.length ?? c.length;
  });
  const bytes = await writeBundle({
    out: o.out,
    head: {
      _type: BUNDLE_TYPE,
      formatVersion: BUNDLE_FORMAT_VERSION,
      purpose: 'update',
      depot: o.depot,
      fromGeneration: from,
      toGeneration: to,
      timestampVersion: tsVersion,
      rootVersion,
      issuedAt: issued.toISOString(),
      validUntil,
    },
    byteSections: sections,
    chunks,
    // Back-to-back records in 1 MiB runs into recycled buffers, each chunk re-hashed (never export a
    // damaged chunk); a run's buffer is reused once its records are written.
    readChunks: (ids) =>
      ctx.store.readMany(ids, {
        verify: true,
        stored: true,
        runBytes: 1024 * 1024,
        aheadRuns: 8,
        pool: new SizedBufferPool(64 * 1024, 1024 * 1024, 32 * 1024 * 1024),
      }),
    signers: [ctx.signers.timestamp],
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.chunkSectionMaxBytes ? { chunkSectionMaxBytes: o.chunkSectionMaxBytes } : {}),
    ...(seal ? { seal } : {}),
  });
  await recordAudit(ctx.db, {
    actor: o.actor ?? 'cli',
    action: 'offline.export',
    target: o.depot,
    detail: {
      from,
      to,
      bytes,
      chunks: chunks.length,
      validUntil,
      encryptedFor: seal?.encryption.certificateSerial ?? null,
    },
  });
  ctx.log.info(
    {
      depot: o.depot,
      from,
      to,
      bytes,
      chunks: chunks.length,
      deltaChunks: deltas?.chunks ?? 0,
      deltaBytes: deltas?.bytes ?? 0,
      manifests,
      file: o.out,
      encryptedFor: seal?.encryption.certificateSerial,
    },
    'offline bundle exported',
  );
  return {
    file: o.out,
    bytes,
    fromGeneration: from,
    toGeneration: to,
    chunks: chunks.length,
    deltaChunks: deltas?.chunks ?? 0,
    chunkBytes,
    chunkPlainBytes,
    chunkWireBytes,
    manifests,
    metadataFiles,
    validUntil,
    base,
    encryptedFor: seal?.encryption.certificateSerial ?? null,
  };
}

/** Most bytes of delta records in a bundle (one byte section, read whole by the importer). */
const DELTA_SECTION_MAX_BYTES = BUNDLE_LIMITS.byteSectionMaxBytes - 1024 * 1024;

/**
 * The chunk-deltas section for `pairs` (src/wire/chunk-delta.ts): a record for each pair whose delta
 * is smaller than the chunk, up to DELTA_SECTION_MAX_BYTES; the other chunks go whole in chunk
 * sections. Undefined when no pair is worth a delta.
 */
async function deltaSection(
  ctx: MasterContext,
  pairs: readonly BundlePair[],
): Promise<{ bytes: Buffer; targets: Set<string> } | undefined> {
  if (pairs.length === 0) return undefined;
  const load = (id: string) => ctx.store.get(id, { verify: true }).catch(() => undefined);
  // zstd deltas: the ones `master serve` computed in the background, else computed here at a fast level.
  const pool = new DeltaPool({ workers: 2, maxQueued: 1024, nice: 10 });
  const zstd = new CachedZstdDeltas(masterDeltaCache(ctx), pool, ON_REQUEST_LEVEL);
  try {
    const stored = async (id: string) => {
      const s = await ctx.store.getStored(id, { verify: false });
      return s.encoding === 'zstd' ? s.data : undefined;
    };
    return await deltaRecordsOf(pairs, load, zstd, stored);
  } finally {
    await pool.close();
  }
}

async function deltaRecordsOf(
  pairs: readonly BundlePair[],
  load: (id: string) => Promise<Buffer | undefined>,
  zstd: CachedZstdDeltas,
  stored: (id: string) => Promise<Buffer | undefined>,
): Promise<{ bytes: Buffer; targets: Set<string> } | undefined> {
  const included = new Set<number>();
  const targets = new Set<string>();
  const records: Buffer[] = [];
  let size = 0;
  let i = 0;
  const opts = {
    zstd: (p: DeltaPair, t: Buffer, b: Buffer) => zstd.frame(p.target, p.bases, t, b),
    // Asked only so a zstd delta must also beat the chunk's stored frame; a pair answered with that
    // frame (kind 4) leaves its chunk to the chunk sections, which carry stored forms.
    stored: (id: string) => stored(id),
  };
  for await (const r of deltaRecords(pairs, load, opts)) {
    const index = i++;
    const p = pairs[index]!;
    const isDelta = r.record[32] === DELTA_KIND.delta || r.record[32] === DELTA_KIND.zstd;
    if (!isDelta || size + r.record.length > DELTA_SECTION_MAX_BYTES) continue;
    included.add(index);
    targets.add(p.target);
    records.push(r.record);
    size += r.record.length;
  }
  if (included.size === 0) return undefined;
  return { bytes: encodeDeltaSection(pairs.length, included, records), targets };
}
