import {
  MetadataKind,
  type Metadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { metadataFileName } from '../context.js';
import { decodeSigned, parseEnvelope } from '../envelope.js';
import { isBinCount, type BinCount } from '../hashbins.js';
import { verifyThreshold, type RoleKeys } from '../verify.js';
import type { OnlineSigners } from './options.js';
import type { RepoState, SignedRole } from './state.js';

/** The latest bytes of each role, as the caller persisted them. */
export interface StoredMetadata {
  root: Uint8Array;
  timestamp: Uint8Array;
  snapshot: Uint8Array;
  targets: Uint8Array;
  bins: ReadonlyMap<string, Uint8Array>;
}

type Kind = 'root' | 'timestamp' | 'snapshot' | 'targets';
type Model<K extends Kind> = { root: Root; timestamp: Timestamp; snapshot: Snapshot; targets: Targets }[K];

function readOwn<K extends Kind>(
  bytes: Uint8Array,
  role: string,
  kind: K,
  keys: (md: Metadata<Model<K>> | undefined) => RoleKeys,
): SignedRole<Model<K>> {
  // Distrust our own disk: stored metadata is verified like a download, except for expiry
  // (a master that was down for two days must start, then refresh() re-signs what expired).
  const env = parseEnvelope(
    bytes,
    { role, file: `stored ${role}.json` },
    { maxBytes: Number.MAX_SAFE_INTEGER, type: kind as MetadataKind },
  );
  const pre = kind === 'root' ? (decodeSigned(env, kind, []) as Metadata<Model<K>>) : undefined;
  const kept = verifyThreshold(env, keys(pre));
  const md = decodeSigned(env, kind, kept) as Metadata<Model<K>>;
  return {
    md,
    file: { role, version: md.signed.version, name: metadataFileName(role, md.signed.version), bytes },
  };
}

function mismatch(
  what: string,
  hint = 'restore the metadata files and the database from the same backup',
): never {
  throw new DepotsyncError('corrupt', `tuf repository: ${what}`, { hint });
}

export function loadState(stored: StoredMetadata, online: Required<OnlineSigners>): RepoState {
  // Root is self-signed: its own root role must meet its threshold.
  const root = readOwn(stored.root, 'root', 'root', (pre) => {
    const r = pre?.signed as Root;
    return { keys: r.keys, keyids: r.roles.root?.keyIDs ?? [], threshold: r.roles.root?.threshold ?? 1 };
  });
  const r = root.md.signed;
  const top = (role: string): RoleKeys => ({
    keys: r.keys,
    keyids: r.roles[role]?.keyIDs ?? [],
    threshold: r.roles[role]?.threshold ?? 1,
  });
  const timestamp = readOwn(stored.timestamp, 'timestamp', 'timestamp', () => top('timestamp'));
  const snapshot = readOwn(stored.snapshot, 'snapshot', 'snapshot', () => top('snapshot'));
  const targets = readOwn(stored.targets, 'targets', 'targets', () => top('targets'));
  const delegations = targets.md.signed.delegations;
  const roles = Object.values(delegations?.roles ?? {});
  const binCount = roles.length as BinCount;
  if (!delegations || !isBinCount(binCount))
    mismatch(`targets.json delegates to ${roles.length} bins; expected 16, 256 or 4096`);

  const bins = new Map<string, SignedRole<Targets>>();
  for (const role of roles) {
    const bytes =
      stored.bins.get(role.name) ?? mismatch(`bin ${role.name} is missing from the stored metadata`);
    bins.set(
      role.name,
      readOwn(bytes, role.name, 'targets', () => ({
        keys: delegations.keys,
        keyids: role.keyIDs,
        threshold: role.threshold,
      })),
    );
  }
  // The stored files must be one consistent generation.
  const meta = snapshot.md.signed.meta;
  for (const [name, v] of [
    ['targets', targets.md.signed.version],
    ...[...bins].map(([n, b]) => [n, b.md.signed.version] as const),
  ] as const) {
    if (meta[`${name}.json`]?.version !== v)
      mismatch(
        `snapshot v${snapshot.md.signed.version} lists ${name} v${meta[`${name}.json`]?.version}, stored is v${v}`,
      );
  }
  if (timestamp.md.signed.snapshotMeta.version !== snapshot.md.signed.version) {
    mismatch(
      `timestamp names snapshot v${timestamp.md.signed.snapshotMeta.version}, stored is v${snapshot.md.signed.version}`,
    );
  }
  // The online signers must be the keys root and targets name, or everything they sign is refused.
  const check = (role: string, keyid: string, listed: readonly string[] | undefined) => {
    if (!listed?.includes(keyid)) {
      throw new DepotsyncError(
        'bad-input',
        `tuf repository: the ${role} signer (key ${keyid.slice(0, 8)}…) is not a ${role} key of the stored metadata`,
        {
          hint: `load the ${role} private key that matches root v${r.version}`,
        },
      );
    }
  };
  check('timestamp', online.timestamp.keyid, r.roles.timestamp?.keyIDs);
  check('snapshot', online.snapshot.keyid, r.roles.snapshot?.keyIDs);
  check('targets', online.targets.keyid, r.roles.targets?.keyIDs);
  check('bins', online.bins.keyid, roles[0]?.keyIDs);
  return { root, targets, bins, snapshot, timestamp, binCount };
}
