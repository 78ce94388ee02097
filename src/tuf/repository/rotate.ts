import { MetadataKind, type Metadata, type Root, type Targets } from '@tufjs/models';
import { metadataFileName } from '../context.js';
import { DepotsyncError } from '../../errors.js';
import { decodeSigned, parseEnvelope } from '../envelope.js';
import { serializeMetadata } from '../sign.js';
import { keyIdOf, type Signer, type TufPublicKey } from '../keys.js';
import { verifyThreshold } from '../verify.js';
import {
  buildBin,
  buildRoot,
  buildTopTargets,
  expiresAt,
  rootKeysOf,
  type MetadataFile,
  type RootKeys,
} from './build.js';
import type { OnlineSigners } from './options.js';
import {
  binsSigner,
  publish,
  resignTargets,
  signed,
  type RepoState,
  type SignedRole,
  type StepContext,
} from './state.js';

/** What changes in root N+1. Omitted parts are carried over; `{}` just renews the root's expiry. */
export interface RootChange {
  root?: { keys: readonly TufPublicKey[]; threshold: number };
  timestamp?: TufPublicKey;
  snapshot?: TufPublicKey;
  targets?: TufPublicKey;
}

function checkRootKeys(r: { keys: readonly (TufPublicKey | { keyid: string })[]; threshold: number }): void {
  const n = new Set(r.keys.map((k) => ('keyid' in k ? k.keyid : keyIdOf(k)))).size;
  if (n !== r.keys.length || n === 0)
    throw new DepotsyncError(
      'bad-input',
      `root keys must be one or more distinct keys, got ${r.keys.length} (${n} distinct)`,
    );
  if (!Number.isSafeInteger(r.threshold) || r.threshold < 1 || r.threshold > n) {
    throw new DepotsyncError(
      'bad-input',
      `root threshold must be an integer from 1 to ${n} (the number of root keys), got ${JSON.stringify(r.threshold)}`,
      {
        hint: 'a root whose threshold exceeds its keys could never be signed again, and clients would be stuck on it',
      },
    );
  }
}

/** Self-check with the client's verifier: `file` must meet `root`'s root-role threshold. */
export function checkRootSigned(file: MetadataFile, by: Root, which: string): void {
  const env = parseEnvelope(
    file.bytes,
    { role: 'root', file: file.name },
    { maxBytes: Number.MAX_SAFE_INTEGER, type: MetadataKind.Root },
  );
  const role = by.roles.root;
  try {
    verifyThreshold(env, { keys: by.keys, keyids: role?.keyIDs ?? [], threshold: role?.threshold ?? 1 });
  } catch (e) {
    const err = e as DepotsyncError;
    const orphan =
      which === 'old'
        ? '; depots and agents that trust root v' +
          by.version +
          ' could not verify it (they would be orphaned)'
        : '';
    throw new DepotsyncError(
      err.code,
      `root v${env.signed.version as number} is not signed by a threshold of the ${which} root keys (v${by.version})${orphan}: ${err.message}`,
      {
        hint: 'supply enough root private keys of both the old and the new root',
        cause: e,
      },
    );
  }
}

export function signRoot(
  version: number,
  keys: RootKeys,
  ctx: StepContext,
  signers: readonly Signer[],
  allowed: Set<string>,
  fields: Record<string, string> = {},
): SignedRole<Root> {
  checkRootKeys(keys.root);
  const usable = signers.filter((s) => allowed.has(s.keyid));
  return signed('root', buildRoot(version, expiresAt(ctx.now, ctx.opts.expiryMs.root), keys, fields), usable);
}

/**
 * Root N+1 (key rotation or renewal), signed by a threshold of the old root keys AND of the new ones,
 * so that clients holding root N can walk to N+1. Online roles whose key changed are re-signed with
 * their new signer (targets → new targets.json); a new snapshot and timestamp follow in every case.
 */
export function rotateRoot(
  state: RepoState,
  ctx: StepContext,
  change: RootChange,
  rootSigners: readonly Signer[],
): { state: RepoState; files: MetadataFile[]; online: OnlineSigners } {
  const { md, allowed } = prepareRoot(state, ctx, change);
  const root = signed(
    'root',
    md,
    rootSigners.filter((s) => allowed.has(s.keyid)),
  );
  return adoptRoot(state, ctx, root);
}

/**
 * The unsigned root N+1: the current root with `change` applied and a fresh expiry, and the keyids
 * allowed to sign it (old and new root keys). Signing may happen here or on another machine.
 */
export function prepareRoot(
  state: RepoState,
  ctx: StepContext,
  change: RootChange,
): { md: Metadata<Root>; allowed: Set<string> } {
  const old = state.root.md.signed;
  const next: RootKeys = { ...rootKeysOf(old), ...change };
  checkRootKeys(next.root);
  const allowed = new Set([...(old.roles.root?.keyIDs ?? []), ...next.root.keys.map(keyIdOf)]);
  // Extra signed fields (the master's CA certificate) are carried over into every new root.
  const fields = stringFields(old.unrecognizedFields);
  return {
    md: buildRoot(old.version + 1, expiresAt(ctx.now, ctx.opts.expiryMs.root), next, fields),
    allowed,
  };
}

/** A signed root N+1 as bytes (e.g. signed offline): parsed, its valid signatures kept, re-serialised. */
export function signedRootFromBytes(bytes: Uint8Array, what: string): SignedRole<Root> {
  const env = parseEnvelope(
    bytes,
    { role: 'root', file: what },
    { maxBytes: Number.MAX_SAFE_INTEGER, type: MetadataKind.Root },
  );
  const md = decodeSigned(
    env,
    'root',
    env.signatures.map((s) => s.keyid),
  );
  return {
    md,
    file: {
      role: 'root',
      version: md.signed.version,
      name: metadataFileName('root', md.signed.version),
      bytes: serializeMetadata(md),
    },
  };
}

/**
 * Make a signed root N+1 current. Refused unless it is exactly N+1 and meets the thresholds of the
 * current root's keys (clients that trust N could not walk to it: they would be orphaned) and of its
 * own keys, and unless the online signers are the keys it names. Then re-signs what its key changes need.
 */
export function adoptRoot(
  state: RepoState,
  ctx: StepContext,
  root: SignedRole<Root>,
): { state: RepoState; files: MetadataFile[]; online: OnlineSigners } {
  const old = state.root.md.signed;
  const neu = root.md.signed;
  if (neu.version !== old.version + 1) {
    throw new DepotsyncError(
      'bad-input',
      `root v${neu.version} cannot follow the current root v${old.version}: clients walk the chain one version at a time`,
      {
        hint: 'make a new signing request from the current root',
      },
    );
  }
  checkRootKeys({
    keys: neu.roles.root?.keyIDs.map((k) => ({ keyid: k })) ?? [],
    threshold: neu.roles.root?.threshold ?? 0,
  });
  checkRootSigned(root.file, old, 'old');
  checkRootSigned(root.file, neu, 'new');
  const online = ctx.online;
  const next = rootKeysOf(neu);
  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    if (online[role].keyid !== keyIdOf(next[role])) {
      throw new DepotsyncError(
        'bad-input',
        `rotate root: the ${role} signer (key ${online[role].keyid.slice(0, 8)}…) does not match the ${role} key of the new root`,
        {
          hint: `pass the new ${role} signer along with the new ${role} key`,
        },
      );
    }
  }
  const targetsRotated = keyIdOf(next.targets) !== old.roles.targets?.keyIDs[0];
  const targets = targetsRotated
    ? resignTargets('targets', state.targets, expiresAt(ctx.now, ctx.opts.expiryMs.targets), online.targets)
    : undefined;
  // A new snapshot (signed with the possibly new snapshot key) and timestamp in every case: the root
  // travels with a new generation, which is what depots pick up and re-serve as a whole.
  const out = publish(state, ctx, { root, ...(targets ? { targets } : {}) });
  return { state: out.state, files: out.files, online };
}

function stringFields(fields: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(fields ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}

/**
 * Rotate the key that signs the bins (it lives in targets.json's delegations, not in root): a new
 * targets.json naming the new key, every bin re-signed with it, snapshot, timestamp.
 */
export function rotateBinsKey(
  state: RepoState,
  ctx: StepContext,
  newBins: Signer,
): { state: RepoState; files: MetadataFile[] } {
  const now = ctx.now;
  const online = { ...ctx.online, bins: newBins };
  const t = state.targets.md.signed;
  const targets = signed(
    'targets',
    buildTopTargets(
      t.version + 1,
      expiresAt(now, ctx.opts.expiryMs.targets),
      state.binCount,
      newBins.publicKey,
      t.targets,
    ),
    [online.targets],
  );
  const bins = new Map<string, SignedRole<Targets>>();
  const expires = expiresAt(now, ctx.opts.expiryMs.bins);
  for (const [name, bin] of state.bins) {
    bins.set(
      name,
      signed(name, buildBin(bin.md.signed.version + 1, expires, bin.md.signed.targets), [binsSigner(online)]),
    );
  }
  return publish(state, { ...ctx, online }, { targets, bins });
}
