import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import { generateKeyPair, writePrivateKey, type KeyPair } from '../../src/tuf/keys.js';
import type { MetadataFile, OnlineSigners, RootChange } from '../../src/tuf/repository.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { getMetadataFile } from '../db/metadata.js';
import {
  commitOnlineKey,
  dropStagedKey,
  onlineKeyPath,
  readKeyFile,
  rootKeyFileName,
  rootKeyFiles,
  rootSignersFrom,
  stageOnlineKey,
  type KeyRole,
  type OnlineRole,
} from '../keys.js';
import { loadRepository } from '../repository.js';
import { commitSteps } from './commit.js';
import {
  checkRootRequest,
  createRootRequest,
  decodeRootRequest,
  encodeRootRequest,
  requestDigest,
  type RootRequest,
} from './request.js';
import { storedRoles, storedRoot } from './stored.js';

/**
 * Key changes on the master: `keys rotate` (a new key for one role), `root renew` (root N+1 with the
 * same keys and a new expiry), the automatic renewal of `master serve`, and `root import` (a root N+1
 * signed elsewhere). Every root N+1 is signed by a threshold of root N's keys AND of its own (TUF):
 * depots and agents that trust N walk to it. When the root keys at hand cannot meet root N's threshold
 * (root kept offline), the result is a root signing request instead (request.ts).
 *
 * Order on disk, so that a crash leaves a master that starts: a new online key is written beside the
 * current one (`*.next.pem`), the metadata naming it is committed, then it replaces the old key file
 * (recoverKeyFiles finishes this at the next start). Old root key files on the master are deleted
 * once a root that no longer lists them is committed.
 */
export type KeyChange = KeyRole | 'renew';

export interface KeyChangeOptions {
  actor: string;
  now?: () => Date;
  /** More places holding current root private keys (key files or folders), e.g. a mounted offline disk. */
  rootKeys?: readonly string[];
  /**
   * Role root: how many new root keys, and their threshold (default: as many and the same threshold as now).
   */
  newRootKeys?: number;
  newRootThreshold?: number;
  /**
   * Role root: where the new root private keys are written (default M/keys; a folder
   * elsewhere keeps them off the master).
   */
  newRootKeyDir?: string;
  /**
   * Where the signing request goes when the root keys at hand are not enough
   * (default M/root-request-v{N}.json).
   */
  requestOut?: string;
}

export interface KeyChangeResult {
  change: KeyChange;
  /**
   * 'committed': in the catalog now; 'signing-request': waits for `master root
   * sign` and `master root import`.
   */
  state: 'committed' | 'signing-request';
  rootVersion: number;
  generation: number | null;
  oldKeyIds: string[];
  newKeyIds: string[];
  /** New private key files written (root keys may be in an offline folder). */
  newKeyFiles: string[];
  request: {
    file: string;
    digest: string;
    oldSignatures: number;
    oldThreshold: number;
    newSignatures: number;
    newThreshold: number;
  } | null;
}

const pendingDir = (ctx: Pick<MasterContext, 'layout'>) => join(ctx.layout.keysDir, 'pending');
const pendingRequest = (ctx: Pick<MasterContext, 'layout'>) => join(pendingDir(ctx), 'request.json');
const pendingKey = (ctx: Pick<MasterContext, 'layout'>, role: OnlineRole) =>
  join(pendingDir(ctx), `${role}.pem`);

function positive(n: number | undefined, what: string): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isSafeInteger(n) || n < 1 || n > 32)
    throw new DepotsyncError('usage', `${what} must be an integer from 1 to 32, got ${JSON.stringify(n)}`);
  return n;
}

export async function masterFingerprint(ctx: Pick<MasterContext, 'db'>): Promise<string> {
  const v1 = await getMetadataFile(ctx.db, '1.root.json');
  if (!v1)
    throw new DepotsyncError('corrupt', 'master database has no 1.root.json', {
      hint: 'restore the master directory from a backup',
    });
  return createHash('sha256').update(v1.bytes).digest('hex');
}

/**
 * Delete root key files in the master's keys folder that `keep` does not list (retired by a committed root).
 */
function retireRootKeys(ctx: MasterContext, keep: ReadonlySet<string>): string[] {
  const gone: string[] = [];
  for (const f of rootKeyFiles(ctx.layout.keysDir)) {
    if (!keep.has(readKeyFile(f).keyid)) {
      unlinkSync(f);
      gone.push(f);
    }
  }
  return gone;
}

/**
 * True when the bins are still signed by the targets key (no bins.pem): a targets rotation moves them too.
 */
const binsShareTargetsKey = (ctx: MasterContext) => !existsSync(onlineKeyPath(ctx.layout, 'bins'));

export async function changeKeys(
  ctx: MasterContext,
  change: KeyChange,
  o: KeyChangeOptions,
): Promise<KeyChangeResult> {
  const now = o.now ?? (() => new Date());
  const repo = await loadRepository(ctx, now);
  const roles = await storedRoles(ctx.db);
  const rootRole = roles.find((r) => r.role === 'root');
  if (!rootRole) throw new DepotsyncError('corrupt', 'master database: the root names no root role');
  const oldKeyIds =
    change === 'renew' ? rootRole.keyids : (roles.find((r) => r.role === change)?.keyids ?? []);

  if (change === 'bins') {
    const pair = generateKeyPair();
    await stageOnlineKey(ctx.layout, 'bins', pair);
    let generation: number;
    try {
      generation = await commitSteps(ctx, [repo.rotateBinsKey(pair.signer)], {
        createdBy: o.actor,
        note: 'bins key rotated',
      });
    } catch (e) {
      dropStagedKey(ctx.layout, 'bins');
      throw e;
    }
    commitOnlineKey(ctx.layout, 'bins');
    await recordAudit(ctx.db, {
      actor: o.actor,
      action: 'keys.rotate',
      target: 'bins',
      detail: { old: oldKeyIds, new: [pair.keyid], generation },
    });
    return {
      change,
      state: 'committed',
      rootVersion: repo.rootVersion,
      generation,
      oldKeyIds,
      newKeyIds: [pair.keyid],
      newKeyFiles: [onlineKeyPath(ctx.layout, 'bins')],
      request: null,
    };
  }

  // Everything else is a root N+1.
  const rootChange: RootChange = {};
  const newOnline: Partial<OnlineSigners> = {};
  let onlinePair: KeyPair | undefined;
  let newRoot: KeyPair[] = [];
  if (change === 'timestamp' || change === 'snapshot' || change === 'targets') {
    onlinePair = generateKeyPair();
    rootChange[change] = onlinePair.publicKey;
    newOnline[change] = onlinePair.signer;
  } else if (change === 'root') {
    const n = positive(o.newRootKeys, '--root-keys') ?? rootRole.keyids.length;
    const threshold = positive(o.newRootThreshold, '--root-threshold') ?? Math.min(rootRole.threshold, n);
    newRoot = Array.from({ length: n }, () => generateKeyPair());
    rootChange.root = { keys: newRoot.map((k) => k.publicKey), threshold };
  }
  // Refuses a root that could never meet its own threshold before any key is written.
  const prepared = repo.prepareRoot(rootChange);
  const oldSigners = rootSignersFrom([ctx.layout.keysDir, ...(o.rootKeys ?? [])], new Set(rootRole.keyids));

  const newKeyFiles: string[] = [];
  const rootDir = resolve(o.newRootKeyDir ?? ctx.layout.keysDir);
  if (newRoot.length) {
    mkdirSync(rootDir, { recursive: true, mode: 0o700 });
    for (const k of newRoot) {
      const file = join(rootDir, rootKeyFileName(k));
      await writePrivateKey(file, k.privateKey);
      newKeyFiles.push(file);
    }
  }
  const newKeyIds = onlinePair
    ? [onlinePair.keyid]
    : newRoot.length
      ? newRoot.map((k) => k.keyid)
      : rootRole.keyids;
  const what = change === 'renew' ? 'renew the root' : `rotate the ${change} key`;

  if (oldSigners.length >= rootRole.threshold) {
    const role = change === 'timestamp' || change === 'snapshot' || change === 'targets' ? change : undefined;
    if (role && onlinePair) await stageOnlineKey(ctx.layout, role, onlinePair);
    let generation: number;
    try {
      const steps: MetadataFile[][] = [
        repo.rotateRoot(
          rootChange,
          [...oldSigners, ...newRoot].map((k) => k.signer),
          newOnline,
        ),
      ];
      if (role === 'targets' && onlinePair && binsShareTargetsKey(ctx))
        steps.push(repo.rotateBinsKey(onlinePair.signer));
      generation = await commitSteps(ctx, steps, {
        createdBy: o.actor,
        note: `root v${repo.rootVersion}: ${what}`,
      });
    } catch (e) {
      if (role) dropStagedKey(ctx.layout, role);
      for (const f of newKeyFiles) rmSync(f, { force: true });
      throw e;
    }
    if (role) commitOnlineKey(ctx.layout, role);
    if (newRoot.length) retireRootKeys(ctx, new Set(newRoot.map((k) => k.keyid)));
    if (role) newKeyFiles.push(onlineKeyPath(ctx.layout, role));
    await recordAudit(ctx.db, {
      actor: o.actor,
      action: change === 'renew' ? 'keys.renew-root' : 'keys.rotate',
      target: change === 'renew' ? 'root' : change,
      detail: { old: oldKeyIds, new: newKeyIds, rootVersion: repo.rootVersion, generation },
    });
    ctx.log.info(
      { change, rootVersion: repo.rootVersion, generation },
      `${what}: root v${repo.rootVersion} committed`,
    );
    return {
      change,
      state: 'committed',
      rootVersion: repo.rootVersion,
      generation,
      oldKeyIds,
      newKeyIds,
      newKeyFiles,
      request: null,
    };
  }

  // Root keys kept offline: a signing request, signed already by the keys at hand (the new root keys).
  mkdirSync(pendingDir(ctx), { recursive: true, mode: 0o700 });
  for (const role of ['timestamp', 'snapshot', 'targets'] as const)
    rmSync(pendingKey(ctx, role), { force: true });
  if (onlinePair && change !== 'root' && change !== 'renew') {
    await writePrivateKey(pendingKey(ctx, change), onlinePair.privateKey);
    newKeyFiles.push(pendingKey(ctx, change));
  }
  const doc = JSON.parse(Buffer.from(prepared.bytes).toString('utf8')) as RootRequest['root'];
  const data = Buffer.from(canonicalize(doc.signed as never), 'utf8');
  doc.signatures = [...oldSigners, ...newRoot].map((k) => ({
    keyid: k.keyid,
    sig: k.signer.sign(data).toString('hex'),
  }));
  const request = createRootRequest(
    {
      master: ctx.config.name,
      rootFingerprint: await masterFingerprint(ctx),
      purpose: what,
      now: now(),
      trustedRoot: repo.rootFile.bytes,
      root: Buffer.from(JSON.stringify(doc)),
    },
    [ctx.signers.timestamp],
  );
  const out = resolve(o.requestOut ?? join(ctx.layout.dir, `root-request-v${prepared.version}.json`));
  await writeFileAtomic(pendingRequest(ctx), encodeRootRequest(request), { mode: 0o600 });
  await writeFileAtomic(out, encodeRootRequest(request));
  await recordAudit(ctx.db, {
    actor: o.actor,
    action: 'keys.root-request',
    target: change === 'renew' ? 'root' : change,
    detail: { rootVersion: prepared.version, digest: requestDigest(request), file: out },
  });
  const oldThreshold = rootRole.threshold;
  return {
    change,
    state: 'signing-request',
    rootVersion: prepared.version,
    generation: null,
    oldKeyIds,
    newKeyIds,
    newKeyFiles,
    request: {
      file: out,
      digest: requestDigest(request),
      oldSignatures: oldSigners.length,
      oldThreshold,
      newSignatures: doc.signatures.filter((s) =>
        rootChange.root ? newRoot.some((k) => k.keyid === s.keyid) : rootRole.keyids.includes(s.keyid),
      ).length,
      newThreshold: rootChange.root?.threshold ?? rootRole.threshold,
    },
  };
}

export interface ImportResult {
  rootVersion: number;
  generation: number;
  purpose: string;
  digest: string;
}

/**
 * `master root import`: adopt root N+1 from a signed request. Refused when the request is for another
 * master, is not the one pending here (altered, or an old one), or does not meet root N's threshold
 * and its own (depots and agents could not walk to it).
 */
export async function importRootRequest(
  ctx: MasterContext,
  file: string,
  o: { actor: string; now?: () => Date },
): Promise<ImportResult> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fromSystemError(e, `root signing request ${file}`);
  }
  const what = `root signing request ${file}`;
  const r = decodeRootRequest(bytes, what);
  const fingerprint = await masterFingerprint(ctx);
  if (r.rootFingerprint !== fingerprint || r.master !== ctx.config.name) {
    throw new DepotsyncError(
      'bad-input',
      `${what} is for master ${JSON.stringify(r.master)} (root fingerprint ${r.rootFingerprint.slice(0, 16)}…), not this master ${JSON.stringify(ctx.config.name)} (${fingerprint.slice(0, 16)}…)`,
      {
        hint: 'import it on the master that wrote it',
      },
    );
  }
  if (!existsSync(pendingRequest(ctx))) {
    throw new DepotsyncError('not-found', `${what}: no root signing request is pending on this master`, {
      hint: 'it was imported already, or replaced; make a new one',
    });
  }
  const pending = decodeRootRequest(readFileSync(pendingRequest(ctx)), 'pending root signing request');
  if (
    canonicalize(pending.root.signed) !== canonicalize(r.root.signed) ||
    pending.trustedRoot !== r.trustedRoot
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: its root is not the one this master asked to be signed (digest ${requestDigest(r)}, pending ${requestDigest(pending)}); the file was altered or is an older request`,
      {
        hint: 'sign the pending request (digest shown by depotsync master keys status) and import that one',
      },
    );
  }
  const checked = checkRootRequest(r, what);
  const now = o.now ?? (() => new Date());
  const repo = await loadRepository(ctx, now);
  if (checked.next.signed.version !== repo.rootVersion + 1) {
    throw new DepotsyncError(
      'conflict',
      `${what}: it makes root v${checked.next.signed.version}, but this master is at root v${repo.rootVersion} already`,
      {
        hint: 'make a new request from the current root',
      },
    );
  }
  const newOnline: Partial<OnlineSigners> = {};
  const staged: OnlineRole[] = [];
  let targetsPair: KeyPair | undefined;
  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    if (!existsSync(pendingKey(ctx, role))) continue;
    const pair = readKeyFile(pendingKey(ctx, role));
    newOnline[role] = pair.signer;
    if (role === 'targets') targetsPair = pair;
    await stageOnlineKey(ctx.layout, role, pair);
    staged.push(role);
  }
  let generation: number;
  try {
    const steps: MetadataFile[][] = [repo.adoptRoot(checked.rootBytes, newOnline)];
    if (targetsPair && binsShareTargetsKey(ctx)) steps.push(repo.rotateBinsKey(targetsPair.signer));
    generation = await commitSteps(ctx, steps, {
      createdBy: o.actor,
      note: `root v${repo.rootVersion}: ${r.purpose} (signed offline)`,
    });
  } catch (e) {
    for (const role of staged) dropStagedKey(ctx.layout, role);
    throw e;
  }
  for (const role of staged) commitOnlineKey(ctx.layout, role);
  retireRootKeys(ctx, new Set(checked.next.signed.roles.root?.keyIDs ?? []));
  rmSync(pendingDir(ctx), { recursive: true, force: true });
  await recordAudit(ctx.db, {
    actor: o.actor,
    action: 'keys.root-import',
    target: 'root',
    detail: { rootVersion: repo.rootVersion, generation, purpose: r.purpose, digest: requestDigest(r) },
  });
  return { rootVersion: repo.rootVersion, generation, purpose: r.purpose, digest: requestDigest(r) };
}

/** The pending request on this master, if any: its root version, purpose and digest. */
export function pendingRootRequest(
  ctx: Pick<MasterContext, 'layout'>,
): { rootVersion: number; purpose: string; digest: string; createdAt: string } | null {
  if (!existsSync(pendingRequest(ctx))) return null;
  const r = decodeRootRequest(readFileSync(pendingRequest(ctx)), 'pending root signing request');
  return {
    rootVersion: (r.root.signed.version as number) ?? 0,
    purpose: r.purpose,
    digest: requestDigest(r),
    createdAt: r.createdAt,
  };
}

/**
 * The serve loop's renewal: with a threshold of root keys on the master, root N+1 (same keys, new
 * expiry) once less than `rootRenewBeforeDays` remain. Synchronous, so it lands before the alerts
 * evaluated right after it. Returns the new root version, or undefined when nothing was due or possible.
 */
export async function renewRootIfDue(ctx: MasterContext, now: () => Date): Promise<number | undefined> {
  // Cheap checks first (this runs on every refresh): the stored root's expiry, then the key files.
  const stored = JSON.parse((await storedRoot(ctx.db)).bytes.toString('utf8')) as {
    signed: { expires: string; roles: { root?: { keyids: string[]; threshold: number } } };
  };
  const leftMs = Date.parse(stored.signed.expires) - now().getTime();
  if (leftMs >= ctx.config.rootRenewBeforeDays * 86_400_000) return undefined;
  const role = stored.signed.roles.root;
  if (!role) return undefined;
  const signers = rootSignersFrom([ctx.layout.keysDir], new Set(role.keyids));
  if (signers.length < role.threshold) return undefined;
  const repo = await loadRepository(ctx, now);
  const generation = await commitSteps(
    ctx,
    [
      repo.rotateRoot(
        {},
        signers.map((k) => k.signer),
      ),
    ],
    { createdBy: 'system', note: `root v${repo.rootVersion}: renewed before expiry` },
  );
  await recordAudit(ctx.db, {
    actor: 'system',
    action: 'keys.renew-root',
    target: 'root',
    detail: { rootVersion: repo.rootVersion, generation, expires: repo.rootExpires.toISOString() },
  });
  ctx.log.info(
    { rootVersion: repo.rootVersion, generation, expires: repo.rootExpires.toISOString() },
    'root renewed before expiry',
  );
  return repo.rootVersion;
}
