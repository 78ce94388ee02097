import type { Snapshot, Targets } from '@tufjs/models';
import type { DelegatedRole } from '@tufjs/models/dist/role.js';
import { own } from '../codec.js';
import { metaError, isTopLevelRole, type MetaContext } from '../context.js';
import { targetPathHash } from '../hashbins.js';
import { targetPathProblem } from '../paths.js';
import type { RoleKeys } from '../verify.js';
import { checkExactVersion, checkExpiry, checkMetaFile, verifyAndDecode, type Verified } from './checks.js';

/** A role a delegator delegates by hash prefix: name, keys/threshold, hash prefixes. */
export interface BinDelegation {
  readonly name: string;
  readonly keys: RoleKeys;
  readonly prefixes: readonly string[];
}

/**
 * A delegator's delegations must be well formed before any of them is followed: role names that are
 * not top-level names (they share the metadata folder) and lowercase hex hash prefixes.
 */
export function checkDelegations(targets: Verified<Targets>, role: string): void {
  const ctx: MetaContext = { role, file: targets.file };
  const d = targets.md.signed.delegations;
  if (!d) return;
  for (const r of Object.values(d.roles ?? {})) {
    if (!r.name || isTopLevelRole(r.name))
      throw metaError('bad-metadata', ctx, `delegated role name ${JSON.stringify(r.name)} is not allowed`);
    for (const p of r.pathHashPrefixes ?? []) {
      if (!/^[0-9a-f]{0,64}$/.test(p))
        throw metaError(
          'bad-metadata',
          ctx,
          `delegated role ${r.name}: path_hash_prefix ${JSON.stringify(p)} is not lowercase hex`,
        );
    }
  }
  if (d.succinctRoles && isTopLevelRole(d.succinctRoles.namePrefix)) {
    throw metaError(
      'bad-metadata',
      ctx,
      `succinct_roles name_prefix ${JSON.stringify(d.succinctRoles.namePrefix)} is not allowed`,
    );
  }
}

/** The keys and threshold `delegator` gives role `name`, or undefined when it does not delegate it. */
export function delegatedRoleKeys(delegator: Targets, name: string): RoleKeys | undefined {
  const d = delegator.delegations;
  if (!d) return undefined;
  if (d.roles) {
    const r = own(d.roles, name);
    return r ? { keys: d.keys, keyids: r.keyIDs, threshold: r.threshold } : undefined;
  }
  if (d.succinctRoles?.isDelegatedRole(name))
    return { keys: d.keys, keyids: d.succinctRoles.keyIDs, threshold: d.succinctRoles.threshold };
  return undefined;
}

/** The roles `delegator` delegates a path-hash-prefix delegation to (targets it lists must fall inside). */
export function binDelegation(delegator: Targets, name: string): BinDelegation | undefined {
  const r = delegator.delegations?.roles ? own(delegator.delegations.roles, name) : undefined;
  if (!r?.pathHashPrefixes) return undefined;
  return { name, keys: delegatedRoleKeys(delegator, name)!, prefixes: r.pathHashPrefixes };
}

/** Every role `delegator` delegates to, in its order (all bins of a succinct delegation). */
export function delegatedRoleNames(delegator: Targets): string[] {
  const d = delegator.delegations;
  if (!d) return [];
  if (d.roles) return Object.values(d.roles).map((r) => r.name);
  return d.succinctRoles ? [...d.succinctRoles.getRoles()] : [];
}

/** Per delegator: roles by hash prefix (the bins of a big catalog), so a lookup does not scan them all. */
interface RoleIndex {
  readonly byPrefix: Map<string, number[]>;
  readonly prefixLengths: number[];
  readonly byPattern: number[];
  readonly roles: readonly DelegatedRole[];
}

const indexes = new WeakMap<Targets, RoleIndex>();

function roleIndex(delegator: Targets): RoleIndex {
  let index = indexes.get(delegator);
  if (index) return index;
  const roles = Object.values(delegator.delegations?.roles ?? {});
  const byPrefix = new Map<string, number[]>();
  const byPattern: number[] = [];
  roles.forEach((r, i) => {
    if (r.paths) byPattern.push(i);
    for (const p of r.pathHashPrefixes ?? []) {
      const list = byPrefix.get(p);
      if (list) list.push(i);
      else byPrefix.set(p, [i]);
    }
  });
  const prefixLengths = [...new Set([...byPrefix.keys()].map((p) => p.length))];
  index = { byPrefix, prefixLengths, byPattern, roles };
  indexes.set(delegator, index);
  return index;
}

/** The roles `delegator` delegates `path` to, in its order, each with its `terminating` flag. */
export function rolesForTarget(delegator: Targets, path: string): { role: string; terminating: boolean }[] {
  const d = delegator.delegations;
  if (!d) return [];
  if (d.succinctRoles) return [{ role: d.succinctRoles.getRoleForTarget(path), terminating: true }];
  const index = roleIndex(delegator);
  const hits = new Set<number>();
  if (index.prefixLengths.length) {
    const hash = targetPathHash(path);
    for (const len of index.prefixLengths)
      for (const i of index.byPrefix.get(hash.slice(0, len)) ?? []) hits.add(i);
  }
  for (const i of index.byPattern) if (index.roles[i]!.isDelegatedPath(path)) hits.add(i);
  return [...hits]
    .sort((a, b) => a - b)
    .map((i) => ({ role: index.roles[i]!.name, terminating: index.roles[i]!.terminating }));
}

const keyIds = new WeakMap<Targets, Map<string, string | undefined>>();

/**
 * Identity of the keys and threshold `delegator` gives role `name` (undefined: not delegated). A copy
 * verified under other keys is not current. Cached per delegator: a catalog lookup asks per target.
 */
export function delegationKeysId(delegator: Targets, name: string): string | undefined {
  let cache = keyIds.get(delegator);
  if (!cache) keyIds.set(delegator, (cache = new Map<string, string | undefined>()));
  if (cache.has(name)) return cache.get(name);
  const k = delegatedRoleKeys(delegator, name);
  const id =
    k &&
    `${k.threshold}|${k.keyids
      .map((kid) => {
        const key = own(k.keys as Record<string, RoleKeys['keys'][string]>, kid);
        return `${kid}=${key ? `${key.keyType}/${key.scheme}/${key.keyVal.public}` : ''}`;
      })
      .join(',')}`;
  cache.set(name, id);
  return id;
}

/**
 * Client workflow 5.6 for targets.json (`delegator` = root's targets role) and for a delegated role
 * (`delegator` = its delegation): the exact file the snapshot names (mix-and-match), signed by the
 * delegator's keys and threshold, the version the snapshot names (rollback), not expired (freeze).
 */
export function verifyTargetsRole(
  role: string,
  delegator: RoleKeys,
  snapshot: Verified<Snapshot>,
  bytes: Uint8Array,
  opts: { capBytes: number; now: Date; stored?: boolean; bin?: BinDelegation; file?: string },
): Verified<Targets> {
  const meta = own(snapshot.md.signed.meta, `${role}.json`);
  if (!meta)
    throw metaError(
      'bad-metadata',
      { role, file: `${role}.json` },
      `not listed in snapshot v${snapshot.md.signed.version}`,
    );
  const file = opts.stored ? `stored ${role}.json` : (opts.file ?? `${meta.version}.${role}.json`);
  const ctx: MetaContext = { role, file };
  const maxBytes = Math.min(meta.length ?? opts.capBytes, opts.capBytes);
  if (bytes.length > maxBytes)
    throw metaError('too-large', ctx, `${bytes.length} bytes exceeds the limit of ${maxBytes} bytes`);
  checkMetaFile(bytes, meta, ctx, snapshot.file);
  const v = verifyAndDecode(bytes, ctx, 'targets', maxBytes, delegator);
  checkExactVersion(v.md.signed.version, meta.version, ctx, snapshot.file);
  checkExpiry(v.md, ctx, opts.now);
  checkDelegations(v, role);
  if (opts.bin) checkBinTargets(v.md.signed, opts.bin, ctx);
  return v;
}

/**
 * Every target a hash-prefix role lists must have a safe path (path traversal on clients), a sha256
 * (depotsync's catalog is content-addressed by it), and a path hash inside the role's prefixes (a bin
 * may only speak for what it was delegated).
 */
function checkBinTargets(t: Targets, bin: BinDelegation, ctx: MetaContext): void {
  for (const [path, target] of Object.entries(t.targets)) {
    const problem = targetPathProblem(path);
    if (problem) throw metaError('bad-path', ctx, `target path ${JSON.stringify(path)} ${problem}`);
    if (!/^[0-9a-f]{64}$/.test(target.hashes.sha256 ?? ''))
      throw metaError('bad-metadata', ctx, `target ${JSON.stringify(path)} has no valid sha256 hash`);
    if (!Number.isSafeInteger(target.length) || target.length < 0)
      throw metaError('bad-metadata', ctx, `target ${JSON.stringify(path)} has an invalid length`);
    const hash = targetPathHash(path);
    if (!bin.prefixes.some((p) => hash.startsWith(p))) {
      throw metaError(
        'bad-metadata',
        ctx,
        `target ${JSON.stringify(path)} is outside the path_hash_prefixes delegated to ${bin.name}`,
      );
    }
  }
}
