import type { Targets } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { binName, binPrefixes } from '../hashbins.js';
import { keyIdOf, type Signer, type TufPublicKey } from '../keys.js';
import {
  buildBin,
  buildSnapshot,
  buildTimestamp,
  buildTopTargets,
  expiresAt,
  metaFileFor,
  type MetadataFile,
} from './build.js';
import type { OnlineSigners, ResolvedOptions } from './options.js';
import { checkRootSigned, signRoot } from './rotate.js';
import { signed, type RepoState, type SignedRole } from './state.js';

export interface CreateRoot {
  /** The root public keys; root v1 must be signed by `threshold` of them (their signers). */
  keys: readonly TufPublicKey[];
  threshold: number;
  signers: readonly Signer[];
  /** Extra signed root fields (the master's CA certificate: src/tuf/root-ca.ts), carried across rotations. */
  fields?: Record<string, string>;
}

/** Root v1, targets v1 delegating to every bin, every bin v1 (empty), snapshot v1, timestamp v1. */
export function createState(
  root: CreateRoot,
  online: Required<OnlineSigners>,
  opts: ResolvedOptions,
): { state: RepoState; files: MetadataFile[] } {
  const now = opts.now();
  const ctx = { opts, online, now };
  const keys = {
    root: { keys: root.keys, threshold: root.threshold },
    timestamp: online.timestamp.publicKey,
    snapshot: online.snapshot.publicKey,
    targets: online.targets.publicKey,
  };
  const rootRole = signRoot(1, keys, ctx, root.signers, new Set(root.keys.map(keyIdOf)), root.fields);
  checkRootSigned(rootRole.file, rootRole.md.signed, 'initial');
  if (!root.signers.length) throw new DepotsyncError('bad-input', 'create repository: no root signers given');

  const targets = signed(
    'targets',
    buildTopTargets(1, expiresAt(now, opts.expiryMs.targets), opts.binCount, online.bins.publicKey),
    [online.targets],
  );
  const bins = new Map<string, SignedRole<Targets>>();
  const binExpires = expiresAt(now, opts.expiryMs.bins);
  const meta = { 'targets.json': metaFileFor(targets.file, opts.snapshotHashes) };
  for (const prefix of binPrefixes(opts.binCount)) {
    const name = binName(prefix);
    const bin = signed(name, buildBin(1, binExpires, {}), [online.bins]);
    bins.set(name, bin);
    Object.assign(meta, { [`${name}.json`]: metaFileFor(bin.file, opts.snapshotHashes) });
  }
  const snapshot = signed('snapshot', buildSnapshot(1, expiresAt(now, opts.expiryMs.snapshot), meta), [
    online.snapshot,
  ]);
  const timestamp = signed(
    'timestamp',
    buildTimestamp(1, expiresAt(now, opts.expiryMs.timestamp), snapshot.file),
    [online.timestamp],
  );
  const files = [
    rootRole.file,
    targets.file,
    ...[...bins.values()].map((b) => b.file),
    snapshot.file,
    timestamp.file,
  ];
  return { state: { root: rootRole, targets, bins, snapshot, timestamp, binCount: opts.binCount }, files };
}
