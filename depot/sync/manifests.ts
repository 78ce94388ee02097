import PQueue from 'p-queue';
import { decodeManifest, manifestId, MANIFEST_DEFAULTS } from '../../src/content/manifest.js';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { checkSignedTarget, fetchTargetWithDelta } from '../../src/read/target-delta.js';
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
): Promise<{ fetched: number; bytes: number; plainBytes: number; viaDelta: number }> {
  const todo = targets.filter((t) => !deps.db.hasTarget(t.name));
  // Two waves: one manifest of each package first, then the other versions, which can then come as
  // deltas against it (a new depot, or one that missed several releases).
  const seen = new Set<string>();
  const waves: CatalogTarget[][] = [[], []];
  for (const t of [...todo].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    const pkg = packagePrefix(t.path);
    const later = pkg !== undefined && seen.has(pkg);
    if (pkg !== undefined) seen.add(pkg);
    waves[later ? 1 : 0]!.push(t);
  }
  const queue = new PQueue({ concurrency: deps.concurrency });
  let bytes = 0;
  let plainBytes = 0;
  let viaDelta = 0;
  let failure: unknown;
  for (const wave of waves) {
    for (const t of wave) {
      void queue.add(async () => {
        if (failure) return;
        try {
          const one = await fetchOne(t, deps);
          bytes += one.wireBytes;
          plainBytes += t.length;
          if (one.viaDelta) viaDelta++;
        } catch (e) {
          failure ??= e;
          queue.clear();
        }
      });
    }
    await queue.onIdle();
    if (failure) throw failure;
  }
  return { fetched: todo.length, bytes, plainBytes, viaDelta };
}

/**
 * The manifest this depot stored last of the same package (`{name}@…`), which the new one usually
 * repeats almost entirely: the base of a manifest delta. Paths outside that convention get none.
 */
function deltaBase(t: CatalogTarget, db: DepotDb): { name: string; bytes: Buffer } | undefined {
  const pkg = packagePrefix(t.path);
  return pkg === undefined ? undefined : db.latestTargetWithPrefix(pkg, t.name);
}

/** `{name}@` of a target path `{name}@{version}.json`; undefined outside that convention. */
function packagePrefix(path: string): string | undefined {
  const at = path.indexOf('@');
  return at > 0 ? path.slice(0, at + 1) : undefined;
}

async function fetchOne(
  t: CatalogTarget,
  deps: ManifestFetchDeps,
): Promise<{ wireBytes: number; viaDelta: boolean }> {
  const what = `manifest ${t.path}`;
  if (t.length > MANIFEST_DEFAULTS.maxBytes) {
    throw new DepotsyncError(
      'too-large',
      `${what}: the catalog lists ${t.length} bytes, above the limit of ${MANIFEST_DEFAULTS.maxBytes}`,
    );
  }
  const up = deps.upstream;
  const get = up.targetDelta?.bind(up);
  const fetched = await fetchTargetWithDelta(
    t,
    get ? deltaBase(t, deps.db) : undefined,
    get,
    () => (up.targetCounted ? up.targetCounted(t.name, t.length, what) : up.target(t.name, t.length, what)),
    what,
    deps.log,
  );
  deps.counter.add(fetched.wireBytes);
  const bytes = fetched.bytes;
  // Threat: a mirror substituting or truncating a manifest (TUF: arbitrary installation, endless data).
  try {
    checkSignedTarget(bytes, t, what);
  } catch (e) {
    throw new DepotsyncError('hash-mismatch', (e as Error).message, {
      hint: 'the upstream served a different file; nothing was stored',
      cause: e,
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
  deps.log.debug(
    {
      target: t.path,
      bytes: bytes.length,
      wireBytes: fetched.wireBytes,
      viaDelta: fetched.viaDelta,
      chunks: chunkCount,
    },
    'manifest stored',
  );
  return fetched;
}
