import { createHash } from 'node:crypto';
import { Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp, type Key } from '@tufjs/models';
import { Delegations } from '@tufjs/models/dist/delegations.js';
import { DelegatedRole, Role } from '@tufjs/models/dist/role.js';
import { metadataFileName, tufDate } from '../context.js';
import { binName, binPrefixes, type BinCount } from '../hashbins.js';
import { keyIdOf, toModelKey, type Signer, type TufPublicKey } from '../keys.js';
import { serializeMetadata, signMetadata, type AnyMetadata } from '../sign.js';

/**
 * Builders for each role's `signed` part with `@tufjs/models`, and the signed, serialised file.
 * Pure functions: the repository class decides versions and expiries.
 */
export const SPEC_VERSION = '1.0.31';

/** One metadata file for the caller to write (and serve): role, version, consistent-snapshot name, bytes. */
export interface MetadataFile {
  readonly role: string;
  readonly version: number;
  readonly name: string;
  readonly bytes: Uint8Array;
}

export function expiresAt(now: Date, ms: number): string {
  return tufDate(new Date(Math.floor(now.getTime() / 1000) * 1000 + ms));
}

export function signAndSerialize(role: string, md: AnyMetadata, signers: readonly Signer[]): MetadataFile {
  signMetadata(md, signers);
  return {
    role,
    version: md.signed.version,
    name: metadataFileName(role, md.signed.version),
    bytes: serializeMetadata(md),
  };
}

export interface RootKeys {
  root: { keys: readonly TufPublicKey[]; threshold: number };
  timestamp: TufPublicKey;
  snapshot: TufPublicKey;
  targets: TufPublicKey;
}

/** `fields`: extra signed root fields (the master's CA certificate, src/tuf/root-ca.ts), kept across rotations. */
export function buildRoot(
  version: number,
  expires: string,
  k: RootKeys,
  fields: Record<string, string> = {},
): Metadata<Root> {
  const keys: Record<string, Key> = {};
  const roleOf = (list: readonly TufPublicKey[], threshold: number) => {
    const keyIDs = [...new Set(list.map((pub) => keyIdOf(pub)))];
    for (const pub of list) keys[keyIdOf(pub)] = toModelKey(pub);
    return new Role({ keyIDs, threshold });
  };
  const roles = {
    root: roleOf(k.root.keys, k.root.threshold),
    timestamp: roleOf([k.timestamp], 1),
    snapshot: roleOf([k.snapshot], 1),
    targets: roleOf([k.targets], 1),
  };
  return new Metadata(
    new Root({
      version,
      specVersion: SPEC_VERSION,
      expires,
      keys,
      roles,
      consistentSnapshot: true,
      unrecognizedFields: fields,
    }),
  );
}

/** The keys of the root's top-level roles, as TUF public keys (to carry them over into N+1). */
export function rootKeysOf(root: Root): RootKeys {
  const pub = (keyid: string): TufPublicKey => {
    const key = root.keys[keyid];
    if (!key) throw new Error(`root v${root.version} names key ${keyid} but does not list it`);
    return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: key.keyVal.public ?? '' } };
  };
  const one = (role: string) => pub(root.roles[role]?.keyIDs[0] ?? '');
  const rootRole = root.roles.root;
  return {
    root: { keys: (rootRole?.keyIDs ?? []).map(pub), threshold: rootRole?.threshold ?? 1 },
    timestamp: one('timestamp'),
    snapshot: one('snapshot'),
    targets: one('targets'),
  };
}

/**
 * targets.json: delegates every path to a hashed bin (terminating); its own targets are the few
 * top-level ones (top-targets.ts).
 */
export function buildTopTargets(
  version: number,
  expires: string,
  binCount: BinCount,
  binsKey: TufPublicKey,
  ownTargets: Record<string, TargetFile> = {},
): Metadata<Targets> {
  const keyid = keyIdOf(binsKey);
  const roles: Record<string, DelegatedRole> = {};
  for (const prefix of binPrefixes(binCount)) {
    const name = binName(prefix);
    roles[name] = new DelegatedRole({
      name,
      keyIDs: [keyid],
      threshold: 1,
      terminating: true,
      pathHashPrefixes: [prefix],
    });
  }
  const delegations = new Delegations({ keys: { [keyid]: toModelKey(binsKey) }, roles });
  return new Metadata(
    new Targets({ version, specVersion: SPEC_VERSION, expires, targets: ownTargets, delegations }),
  );
}

export function buildBin(
  version: number,
  expires: string,
  targets: Record<string, TargetFile>,
): Metadata<Targets> {
  return new Metadata(new Targets({ version, specVersion: SPEC_VERSION, expires, targets }));
}

export function metaFileFor(file: MetadataFile, withHashes: boolean): MetaFile {
  if (!withHashes) return new MetaFile({ version: file.version });
  const sha256 = createHash('sha256').update(file.bytes).digest('hex');
  return new MetaFile({ version: file.version, length: file.bytes.length, hashes: { sha256 } });
}

export function buildSnapshot(
  version: number,
  expires: string,
  meta: Record<string, MetaFile>,
): Metadata<Snapshot> {
  return new Metadata(new Snapshot({ version, specVersion: SPEC_VERSION, expires, meta }));
}

/** timestamp.json names the snapshot by version, length and sha256 (mix-and-match protection). */
export function buildTimestamp(
  version: number,
  expires: string,
  snapshot: MetadataFile,
): Metadata<Timestamp> {
  return new Metadata(
    new Timestamp({ version, specVersion: SPEC_VERSION, expires, snapshotMeta: metaFileFor(snapshot, true) }),
  );
}
