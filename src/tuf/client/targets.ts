import type { Snapshot, Targets } from '@tufjs/models';
import { metadataFileName, metaError, ROLE_NAME, isTopLevelRole, type MetaContext } from '../context.js';
import { targetPathHash } from '../hashbins.js';
import { targetPathProblem } from '../paths.js';
import type { RoleKeys } from '../verify.js';
import { checkExactVersion, checkExpiry, checkMetaFile, verifyAndDecode, type Verified } from './checks.js';

/** A bin as targets.json delegates it: name, keys/threshold, hash prefixes. */
export interface BinDelegation {
  readonly name: string;
  readonly keys: RoleKeys;
  readonly prefixes: readonly string[];
}

/** targets.json's hashed-bin delegations, indexed by hash prefix for O(1) lookup. */
export interface BinIndex {
  readonly bins: ReadonlyMap<string, BinDelegation>;
  readonly byPrefix: ReadonlyMap<string, string>;
  readonly prefixLengths: readonly number[];
}

export function binIndexOf(targets: Verified<Targets>): BinIndex {
  const ctx: MetaContext = { role: 'targets', file: targets.file };
  const d = targets.md.signed.delegations;
  const bins = new Map<string, BinDelegation>();
  const byPrefix = new Map<string, string>();
  const lengths = new Set<number>();
  if (!d) return { bins, byPrefix, prefixLengths: [] };
  if (d.succinctRoles) throw metaError('bad-metadata', ctx, 'succinct_roles delegations are not supported; use path_hash_prefixes');
  for (const role of Object.values(d.roles ?? {})) {
    if (!ROLE_NAME.test(role.name) || isTopLevelRole(role.name)) throw metaError('bad-metadata', ctx, `delegated role name ${JSON.stringify(role.name)} is not allowed`);
    if (!role.pathHashPrefixes?.length) throw metaError('bad-metadata', ctx, `delegated role ${role.name} has no path_hash_prefixes (only hashed-bin delegations are supported)`);
    for (const p of role.pathHashPrefixes) {
      if (!/^[0-9a-f]{1,64}$/.test(p)) throw metaError('bad-metadata', ctx, `delegated role ${role.name}: path_hash_prefix ${JSON.stringify(p)} is not lowercase hex`);
      if (byPrefix.has(p)) throw metaError('bad-metadata', ctx, `path_hash_prefix ${p} is delegated twice`);
      byPrefix.set(p, role.name);
      lengths.add(p.length);
    }
    bins.set(role.name, { name: role.name, keys: { keys: d.keys, keyids: role.keyIDs, threshold: role.threshold }, prefixes: role.pathHashPrefixes });
  }
  return { bins, byPrefix, prefixLengths: [...lengths].sort((a, b) => a - b) };
}

/** The bin a target path is delegated to, per the signed delegations (not by naming convention). */
export function binForPath(index: BinIndex, path: string): string | undefined {
  const hash = targetPathHash(path);
  for (const len of index.prefixLengths) {
    const name = index.byPrefix.get(hash.slice(0, len));
    if (name) return name;
  }
  return undefined;
}

export function targetsFileName(snapshot: Snapshot, role: string): string | undefined {
  const meta = snapshot.meta[`${role}.json`];
  return meta ? metadataFileName(role, meta.version) : undefined;
}

/**
 * Client workflow 5.6 for targets.json (`delegator` = root's targets role) and for a bin (`delegator`
 * = its delegation in targets.json): the exact file the snapshot names (mix-and-match), signed by
 * the delegator's keys and threshold, the version the snapshot names (rollback), not expired (freeze).
 */
export function verifyTargetsRole(
  role: string,
  delegator: RoleKeys,
  snapshot: Verified<Snapshot>,
  bytes: Uint8Array,
  opts: { capBytes: number; now: Date; stored?: boolean; bin?: BinDelegation },
): Verified<Targets> {
  const meta = snapshot.md.signed.meta[`${role}.json`];
  if (!meta) throw metaError('bad-metadata', { role, file: `${role}.json` }, `not listed in snapshot v${snapshot.md.signed.version}`);
  const file = opts.stored ? `stored ${role}.json` : metadataFileName(role, meta.version);
  const ctx: MetaContext = { role, file };
  const maxBytes = Math.min(meta.length ?? opts.capBytes, opts.capBytes);
  if (bytes.length > maxBytes) throw metaError('too-large', ctx, `${bytes.length} bytes exceeds the limit of ${maxBytes} bytes`);
  checkMetaFile(bytes, meta, ctx, snapshot.file);
  const v = verifyAndDecode(bytes, ctx, 'targets', maxBytes, delegator);
  checkExactVersion(v.md.signed.version, meta.version, ctx, snapshot.file);
  checkExpiry(v.md, ctx, opts.now);
  if (opts.bin) checkBinTargets(v.md.signed, opts.bin, ctx);
  return v;
}

/**
 * Every target a bin lists must have a safe path (path traversal on clients), a sha256 (TUF requires
 * hashes), and a path hash inside the bin's prefixes (a bin may only speak for what it was delegated).
 */
function checkBinTargets(t: Targets, bin: BinDelegation, ctx: MetaContext): void {
  for (const [path, target] of Object.entries(t.targets)) {
    const problem = targetPathProblem(path);
    if (problem) throw metaError('bad-path', ctx, `target path ${JSON.stringify(path)} ${problem}`);
    if (!/^[0-9a-f]{64}$/.test(target.hashes.sha256 ?? '')) throw metaError('bad-metadata', ctx, `target ${JSON.stringify(path)} has no valid sha256 hash`);
    if (!Number.isSafeInteger(target.length) || target.length < 0) throw metaError('bad-metadata', ctx, `target ${JSON.stringify(path)} has an invalid length`);
    const hash = targetPathHash(path);
    if (!bin.prefixes.some((p) => hash.startsWith(p))) {
      throw metaError('bad-metadata', ctx, `target ${JSON.stringify(path)} is outside the path_hash_prefixes delegated to ${bin.name}`);
    }
  }
}
