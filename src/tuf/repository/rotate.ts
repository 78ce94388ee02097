import { MetadataKind, type Root, type Targets } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { parseEnvelope } from '../envelope.js';
import { keyIdOf, type Signer, type TufPublicKey } from '../keys.js';
import { verifyThreshold } from '../verify.js';
import { buildBin, buildRoot, buildTopTargets, expiresAt, rootKeysOf, type MetadataFile, type RootKeys } from './build.js';
import type { OnlineSigners } from './options.js';
import { binsSigner, publish, resignTargets, signed, type RepoState, type SignedRole, type StepContext } from './state.js';

/** What changes in root N+1. Omitted parts are carried over; `{}` just renews the root's expiry. */
export interface RootChange {
  root?: { keys: readonly TufPublicKey[]; threshold: number };
  timestamp?: TufPublicKey;
  snapshot?: TufPublicKey;
  targets?: TufPublicKey;
}

function checkRootKeys(r: { keys: readonly TufPublicKey[]; threshold: number }): void {
  const n = new Set(r.keys.map(keyIdOf)).size;
  if (n !== r.keys.length || n === 0) throw new DepotsyncError('bad-input', `root keys must be one or more distinct keys, got ${r.keys.length} (${n} distinct)`);
  if (!Number.isSafeInteger(r.threshold) || r.threshold < 1 || r.threshold > n) {
    throw new DepotsyncError('bad-input', `root threshold must be an integer from 1 to ${n} (the number of root keys), got ${JSON.stringify(r.threshold)}`);
  }
}

/** Self-check with the client's verifier: `file` must meet `root`'s root-role threshold. */
export function checkRootSigned(file: MetadataFile, by: Root, which: string): void {
  const env = parseEnvelope(file.bytes, { role: 'root', file: file.name }, { maxBytes: Number.MAX_SAFE_INTEGER, type: MetadataKind.Root });
  const role = by.roles.root;
  try {
    verifyThreshold(env, { keys: by.keys, keyids: role?.keyIDs ?? [], threshold: role?.threshold ?? 1 });
  } catch (e) {
    const err = e as DepotsyncError;
    throw new DepotsyncError(err.code, `root v${env.signed.version as number} is not signed by a threshold of the ${which} root keys (v${by.version}): ${err.message}`, {
      hint: 'supply enough root private keys of both the old and the new root',
      cause: e,
    });
  }
}

export function signRoot(version: number, keys: RootKeys, ctx: StepContext, signers: readonly Signer[], allowed: Set<string>, fields: Record<string, string> = {}): SignedRole<Root> {
  checkRootKeys(keys.root);
  const usable = signers.filter((s) => allowed.has(s.keyid));
  return signed('root', buildRoot(version, expiresAt(ctx.now, ctx.opts.expiryMs.root), keys, fields), usable);
}

/**
 * Root N+1 (key rotation or renewal), signed by a threshold of the old root keys AND of the new ones,
 * so that clients holding root N can walk to N+1. Online roles whose key changed are re-signed with
 * their new signer (targets → new targets.json; snapshot → new snapshot; any → new timestamp).
 */
export function rotateRoot(
  state: RepoState,
  ctx: StepContext,
  change: RootChange,
  rootSigners: readonly Signer[],
): { state: RepoState; files: MetadataFile[]; online: OnlineSigners } {
  const old = state.root.md.signed;
  const next: RootKeys = { ...rootKeysOf(old), ...change };
  const online = ctx.online;
  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    if (online[role].keyid !== keyIdOf(next[role])) {
      throw new DepotsyncError('bad-input', `rotate root: the ${role} signer (key ${online[role].keyid.slice(0, 8)}…) does not match the ${role} key of the new root`, {
        hint: `pass the new ${role} signer along with the new ${role} key`,
      });
    }
  }
  const allowed = new Set([...(old.roles.root?.keyIDs ?? []), ...next.root.keys.map(keyIdOf)]);
  // Extra signed fields (the master's CA certificate) are carried over into every new root.
  const root = signRoot(old.version + 1, next, ctx, rootSigners, allowed, stringFields(old.unrecognizedFields));
  checkRootSigned(root.file, old, 'old');
  checkRootSigned(root.file, root.md.signed, 'new');

  const targetsRotated = keyIdOf(next.targets) !== old.roles.targets?.keyIDs[0];
  const snapshotRotated = keyIdOf(next.snapshot) !== old.roles.snapshot?.keyIDs[0];
  const timestampRotated = keyIdOf(next.timestamp) !== old.roles.timestamp?.keyIDs[0];
  if (!targetsRotated && !snapshotRotated && !timestampRotated) {
    return { state: { ...state, root }, files: [root.file], online };
  }
  const targets = targetsRotated ? resignTargets('targets', state.targets, expiresAt(ctx.now, ctx.opts.expiryMs.targets), online.targets) : undefined;
  // A new snapshot (signed with the possibly new snapshot key) and timestamp in every case.
  const out = publish(state, ctx, { root, ...(targets ? { targets } : {}) });
  return { state: out.state, files: out.files, online };
}

function stringFields(fields: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(fields ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/**
 * Rotate the key that signs the bins (it lives in targets.json's delegations, not in root): a new
 * targets.json naming the new key, every bin re-signed with it, snapshot, timestamp.
 */
export function rotateBinsKey(state: RepoState, ctx: StepContext, newBins: Signer): { state: RepoState; files: MetadataFile[] } {
  const now = ctx.now;
  const online = { ...ctx.online, bins: newBins };
  const t = state.targets.md.signed;
  const targets = signed('targets', buildTopTargets(t.version + 1, expiresAt(now, ctx.opts.expiryMs.targets), state.binCount, newBins.publicKey, t.targets), [online.targets]);
  const bins = new Map<string, SignedRole<Targets>>();
  const expires = expiresAt(now, ctx.opts.expiryMs.bins);
  for (const [name, bin] of state.bins) {
    bins.set(name, signed(name, buildBin(bin.md.signed.version + 1, expires, bin.md.signed.targets), [binsSigner(online)]));
  }
  return publish(state, { ...ctx, online }, { targets, bins });
}
