import { createHash, timingSafeEqual } from 'node:crypto';
import PQueue from 'p-queue';
import { decodeManifest, manifestId, MANIFEST_DEFAULTS } from '../../src/content/manifest.js';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { TufClient } from '../../src/tuf/client.js';
import type { DepotDb } from '../db/depot-db.js';
import type { ByteCounter, Upstream } from './upstream.js';

/** A package version as the verified catalog lists it. */
export interface CatalogTarget {
  path: string;
  /** Consistent-snapshot served name `{sha256}.{path}`. */
  name: string;
  length: number;
  sha256: string;
}

/** Every target of the trusted catalog (all bins current), each with the sha256 TUF requires. */
export function catalogTargets(client: TufClient): CatalogTarget[] {
  const out: CatalogTarget[] = [];
  for (const t of client.targets()) {
    const sha256 = t.hashes.sha256;
    // Threat: a target we could not check byte for byte (no sha256) is never fetched or served.
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new DepotsyncError('bad-metadata', `catalog target ${JSON.stringify(t.path)}: no sha256 hash`, {
        hint: 'the master published a target without a sha256; republish it',
      });
    }
    out.push({ path: t.path, name: `${sha256}.${t.path}`, length: t.length, sha256 });
  }
  return out;
}

export interface ManifestFetchDeps {
  db: DepotDb;
  upstream: Upstream;
  counter: ByteCounter;
  concurrency: number;
  now: () => Date;
  log: Logger;
}

/**
 * Fetch the manifests the depot does not hold yet, each verified against the signed catalog before it
 * is kept: length (cap while streaming: endless data), SHA-256 (arbitrary or substituted content:
 * a malicious mirror cannot swap a manifest), then decoded at the border (decodeManifest's checks).
 * Each verified manifest is stored at once, so an interrupted sync does not fetch it again.
 */
export async function fetchManifests(
  targets: readonly CatalogTarget[],
  deps: ManifestFetchDeps,
): Promise<{ fetched: number; bytes: number }> {
  const todo = targets.filter((t) => !deps.db.hasTarget(t.name));
  const queue = new PQueue({ concurrency: deps.concurrency });
  let bytes = 0;
  let failure: unknown;
  for (const t of todo) {
    void queue.add(async () => {
      if (failure) return;
      try {
        bytes += await fetchOne(t, deps);
      } catch (e) {
        failure ??= e;
        queue.clear();
      }
    });
  }
  await queue.onIdle();
  if (failure) throw failure;
  return { fetched: todo.length, bytes };
}

async function fetchOne(t: CatalogTarget, deps: ManifestFetchDeps): Promise<number> {
  const what = `manifest ${t.path}`;
  if (t.length > MANIFEST_DEFAULTS.maxBytes) {
    throw new DepotsyncError(
      'too-large',
      `${what}: the catalog lists ${t.length} bytes, above the limit of ${MANIFEST_DEFAULTS.maxBytes}`,
    );
  }
  const bytes = await deps.upstream.target(t.name, t.length, what);
  deps.counter.add(bytes.length);
  // Threat: a mirror substituting or truncating a manifest (TUF: arbitrary installation, endless data).
  if (bytes.length !== t.length) {
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: received ${bytes.length} bytes, the signed catalog says ${t.length}`,
      { hint: 'the upstream served a different file; nothing was stored' },
    );
  }
  const digest = createHash('sha256').update(bytes).digest();
  if (!timingSafeEqual(digest, Buffer.from(t.sha256, 'hex'))) {
    throw new DepotsyncError('hash-mismatch', `${what}: its SHA-256 does not match the signed catalog`, {
      hint: 'the upstream served a different file; nothing was stored',
    });
  }
  const m = decodeManifest(bytes, { what });
  const chunkCount = m.files.reduce((n, f) => n + f.chunks.length, 0);
  deps.db.putTarget(
    {
      name: t.name,
      path: t.path,
      length: t.length,
      sha256: t.sha256,
      manifestId: manifestId(bytes),
      totalBytes: m.totalBytes,
      chunkCount,
      bytes,
    },
    deps.now(),
  );
  deps.log.debug({ target: t.path, bytes: bytes.length, chunks: chunkCount }, 'manifest stored');
  return bytes.length;
}
