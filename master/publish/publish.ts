import { createHash } from 'node:crypto';
import {
  buildManifest,
  encodeManifest,
  manifestId,
  uniqueChunkIds,
  type ChunkRef,
} from '../../src/content/manifest.js';
import { validatePackageName, validateVersion } from '../../src/content/paths.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { ingestFile } from '../../src/store/ingest.js';
import { recordAudit } from '../db/audit.js';
import { findVersion } from '../db/catalog.js';
import { commitGeneration } from '../db/commit.js';
import { checkMaySign } from '../ha/signer.js';
import type { MasterContext } from '../context.js';
import { loadRepository } from '../repository.js';
import { collectSource } from './collect.js';
import { scanPublishSource } from './scan.js';
import { targetPathOf } from './target-path.js';

export interface PublishInput {
  name: string;
  version: string;
  path: string;
  /** Who publishes (audit log): 'cli', an operator name, 'dropbox'. */
  actor: string;
  address?: string;
  /** Publish files with hard links outside the source folder (refused by default). */
  allowHardlinks?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface PublishResult {
  id: string;
  name: string;
  version: string;
  bytes: number;
  chunks: number;
  generation: number;
  newChunks: number;
  newBytes: number;
  /** True when this exact content was already published under this name and version: nothing changed. */
  unchanged: boolean;
}

/**
 * Publish (docs/architecture.md): stream the file or folder through the chunker into the store, build the
 * manifest, then in ONE SQLite transaction add the target to its bin and produce generation N+1 with the
 * changed bin, the snapshot and the timestamp re-signed (O(bins touched), not O(catalog)).
 */
export async function publish(ctx: MasterContext, input: PublishInput): Promise<PublishResult> {
  const name = validatePackageName(input.name);
  const version = validateVersion(input.version);
  // Several masters: refused before any chunking when another master signs (the commit is fenced too).
  await checkMaySign(ctx.db, ctx.config.name, ctx.config.signerLeaseTtlMs);
  const files = await collectSource(input.path, {
    allowHardlinks: input.allowHardlinks ?? ctx.config.allowHardlinks,
  });
  // Publishing safety: the configured scanner sees the content before it can enter the catalog.
  const scanned = await scanPublishSource(ctx, {
    name,
    version,
    path: input.path,
    files,
    actor: input.actor,
    address: input.address,
  });
  const total = files.reduce((n, f) => n + f.size, 0);
  const chunker = {
    minBytes: ctx.config.chunkMinBytes,
    avgBytes: ctx.config.chunkAvgBytes,
    maxBytes: ctx.config.chunkMaxBytes,
  };

  let done = 0;
  let newChunks = 0;
  let newBytes = 0;
  const entries: Array<{ path: string; mode: number; size: number; chunks: ChunkRef[] }> = [];
  for (const f of files) {
    const before = done;
    const r = await ingestFile(ctx.store, f.absPath, {
      chunker,
      onProgress: (n) => input.onProgress?.(before + n, total),
    });
    if (r.size !== f.size) {
      // The file changed while we read it: never publish a half-copied file.
      throw new DepotsyncError(
        'conflict',
        `publish ${name}@${version}: ${f.path} changed size while it was read (${f.size} → ${r.size} bytes)`,
        {
          hint: 'wait until the file is completely written, then publish again',
        },
      );
    }
    done += r.size;
    newChunks += r.newChunks;
    newBytes += r.newBytes;
    entries.push({ path: f.path, mode: f.mode, size: r.size, chunks: r.chunks });
  }
  await scanned.assertUnchanged();
  const manifest = buildManifest({ name, version, chunking: chunker, files: entries });
  const bytes = encodeManifest(manifest);
  const id = manifestId(bytes);
  const chunkIds = uniqueChunkIds(manifest);

  for (let attempt = 1; ; attempt++) {
    const existing = await findVersion(ctx.db, name, version);
    if (existing) {
      if (existing.manifestId === id) {
        return {
          id,
          name,
          version,
          bytes: manifest.totalBytes,
          chunks: chunkIds.length,
          generation: existing.addedGeneration,
          newChunks,
          newBytes,
          unchanged: true,
        };
      }
      throw new DepotsyncError(
        'conflict',
        `${name}@${version} is already published with other content (manifest ${existing.manifestId.slice(0, 16)}…)`,
        {
          hint: `published versions are immutable: publish a new version, or unpublish ${name}@${version} first`,
        },
      );
    }
    const repo = await loadRepository(ctx);
    const targetPath = targetPathOf(name, version);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const metadata = repo.addTarget(targetPath, {
      length: bytes.length,
      sha256,
      custom: { manifestId: id, name, version, bytes: manifest.totalBytes, chunks: chunkIds.length },
    });
    const timestamp = metadata.find((f) => f.role === 'timestamp');
    try {
      const committed = await commitGeneration(ctx.db, {
        generation: repo.generation,
        createdBy: input.actor,
        note: `publish ${name}@${version}`,
        ...(timestamp ? { timestampVersion: timestamp.version } : {}),
        manifests: [{ id, bytes, chunkIds }],
        add: [
          {
            name,
            version,
            manifestId: id,
            targetPath,
            bin: repo.binFor(targetPath),
            totalBytes: manifest.totalBytes,
            chunkCount: chunkIds.length,
          },
        ],
        bins: metadata
          .filter((f) => f.role.startsWith('bin-'))
          .map((f) => ({ name: f.role, version: f.version })),
        metadata: metadata.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
      });
      await recordAudit(ctx.db, {
        actor: input.actor,
        action: 'publish',
        target: `${name}@${version}`,
        detail: {
          manifestId: id,
          bytes: manifest.totalBytes,
          chunks: chunkIds.length,
          newChunks,
          newBytes,
          generation: committed.generation.generation,
        },
        ...(input.address ? { address: input.address } : {}),
      });
      return {
        id,
        name,
        version,
        bytes: manifest.totalBytes,
        chunks: chunkIds.length,
        generation: committed.generation.generation,
        newChunks,
        newBytes,
        unchanged: false,
      };
    } catch (e) {
      // Another publish committed generation N+1 first: rebuild on top of it.
      if (isDepotsyncError(e, 'conflict') && attempt < 5) continue;
      throw e;
    }
  }
}
