import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { decodeManifest, type Manifest } from '../../src/content/manifest.js';
import { validatePackageName, validateVersion } from '../../src/content/paths.js';
import { DepotsyncError } from '../../src/errors.js';
import { fetchTargetWithDelta, type TargetBase } from '../../src/read/target-delta.js';
import type { ClientLimits, TargetInfo, TrustedStore } from '../../src/tuf/client.js';
import type { AgentStateStore } from '../state.js';
import type { RemoteSource } from './remote.js';
import { latestVersion } from './versions.js';
import { refreshCatalog } from './validity-window.js';

/** What to fetch: NAME, or NAME@VERSION. */
export interface PackageRef {
  name: string;
  version?: string;
}

export function parsePackageRef(text: string): PackageRef {
  const at = text.indexOf('@');
  const name = validatePackageName(at < 0 ? text : text.slice(0, at));
  if (at < 0) return { name };
  return { name, version: validateVersion(text.slice(at + 1)) };
}

/**
 * The catalog convention (master/publish/target-path.ts): a package version is the TUF target
 * `{name}@{version}.json`, whose file is the package's canonical manifest. Names and versions never
 * contain `@` or `/` (src/content/paths.ts).
 */
export function packageTargetPath(name: string, version: string): string {
  return `${name}@${version}.json`;
}

export interface ResolvedPackage {
  path: string;
  name: string;
  version: string;
  target: TargetInfo;
  manifest: Manifest;
  manifestBytes: Buffer;
  generation: number;
  rootVersion: number;
}

export interface ResolveOptions {
  remote: RemoteSource;
  store: TrustedStore;
  fingerprint?: string | undefined;
  now: () => Date;
  limits?: Partial<ClientLimits> | undefined;
  state: AgentStateStore;
  want: PackageRef;
  log: Logger;
  /** A manifest of the same package this agent holds (manifests.ts): the new one comes as a delta of it. */
  manifestBase?: TargetBase | undefined;
}

/**
 * Timestamp → snapshot → targets → bin → manifest from one source, each verified up to the pinned
 * root (TufClient: signatures, thresholds, expiry, versions against the trusted store), then:
 */
export async function resolvePackage(o: ResolveOptions): Promise<ResolvedPackage> {
  const src = o.remote.source.name;
  // The TUF update; an air-gapped depot's expired metadata only under its signed validity window.
  const { client, result: r } = await refreshCatalog({
    remote: o.remote,
    store: o.store,
    fingerprint: o.fingerprint,
    now: o.now,
    limits: o.limits,
    log: o.log,
    bins: o.want.version ? 'none' : 'stale',
  });
  checkAgainstSeen(r, o.state, src);

  const { name } = o.want;
  let version = o.want.version;
  let target: TargetInfo | undefined;
  if (version !== undefined) {
    target = await client.getTarget(packageTargetPath(name, version));
  } else {
    const prefix = `${name}@`;
    const byVersion = new Map<string, TargetInfo>();
    for (const t of client.targets()) {
      if (!t.path.startsWith(prefix) || !t.path.endsWith('.json')) continue;
      const v = t.path.slice(prefix.length, -'.json'.length);
      if (v.length > 0 && !v.includes('@')) byVersion.set(v, t);
    }
    version = latestVersion(byVersion.keys());
    target = version === undefined ? undefined : byVersion.get(version);
  }
  if (!target || version === undefined) {
    throw new DepotsyncError(
      'not-found',
      `${name}${o.want.version ? `@${o.want.version}` : ''} is not in the catalog (generation ${r.generation} from ${src})`,
      {
        hint: o.want.version
          ? 'check the name and version (depotsync master publish lists them)'
          : 'check the package name',
      },
    );
  }
  const path = packageTargetPath(name, version);
  const sha256 = target.hashes.sha256 ?? '';
  const what = `target ${path} from ${src}`;
  const { bytes } = await fetchTargetWithDelta(
    { name: `${sha256}.${path}`, length: target.length, sha256 },
    o.manifestBase,
    (base, served, max, w) => o.remote.targetDelta(base, served, max, w),
    () => o.remote.target(path, sha256, target.length),
    what,
    o.log,
  );
  verifyTargetFile(bytes, target, what);
  // The manifest is now the exact file the catalog signed; decoding checks its schema, paths (no
  // `..`, no absolute paths), sizes, and that its hash tree commits to its chunk list.
  const manifest = decodeManifest(bytes, { maxBytes: target.length, what: `manifest ${path} from ${src}` });
  // Wrong-software attack: a signed target whose manifest names another package or version.
  if (manifest.name !== name || manifest.version !== version) {
    throw new DepotsyncError(
      'bad-metadata',
      `manifest ${path} from ${src} describes ${manifest.name}@${manifest.version}, not ${name}@${version}`,
      {
        hint: 'the catalog is inconsistent; report it to the master operator',
      },
    );
  }
  return {
    path,
    name,
    version,
    target,
    manifest,
    manifestBytes: bytes,
    generation: r.generation,
    rootVersion: r.rootVersion,
  };
}

/**
 * Rollback / lagging mirror: a generation or root older than this agent has already verified. The
 * trusted store catches this too; this baseline also survives a wiped or re-keyed store. Then the
 * baseline is raised to what was just verified. (Also run by the depot directory refresh.)
 */
export function checkAgainstSeen(
  r: { generation: number; rootVersion: number },
  state: AgentStateStore,
  src: string,
): void {
  const seenGen = state.highest('generation');
  if (r.generation < seenGen) {
    throw new DepotsyncError(
      'version-rollback',
      `${src} serves catalog generation ${r.generation}, older than generation ${seenGen} this agent has already verified`,
      {
        hint: 'the depot lags behind or replays old metadata; the agent uses a fresher source',
      },
    );
  }
  const seenRoot = state.highest('root');
  if (r.rootVersion < seenRoot) {
    throw new DepotsyncError(
      'version-rollback',
      `${src} leads to root version ${r.rootVersion}, older than root ${seenRoot} this agent has already verified`,
    );
  }
  state.raise('generation', r.generation);
  state.raise('root', r.rootVersion);
}

/** Mix-and-match / arbitrary-software attack: exactly the length and SHA-256 the signed target lists. */
export function verifyTargetFile(bytes: Uint8Array, target: TargetInfo, what: string): void {
  if (bytes.length !== target.length) {
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: ${bytes.length} bytes, but the signed catalog says ${target.length}`,
      {
        hint: 'the source serves a file that is not the one the master signed; the agent tries another source',
      },
    );
  }
  const want = target.hashes.sha256;
  if (!want || !/^[0-9a-f]{64}$/.test(want))
    throw new DepotsyncError('bad-metadata', `${what}: the signed catalog lists no SHA-256 for it`);
  const got = createHash('sha256').update(bytes).digest();
  if (!timingSafeEqual(got, Buffer.from(want, 'hex'))) {
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: SHA-256 ${got.toString('hex')} does not match the signed ${want}`,
      {
        hint: 'the source serves a file that is not the one the master signed; the agent tries another source',
      },
    );
  }
}
