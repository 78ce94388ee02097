import type { Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { own } from '../codec.js';
import { roleFileName } from '../context.js';
import { checkTargetPath } from '../paths.js';
import { targetInfoOf, type TargetInfo } from '../target-info.js';
import { topRoleKeys, type Verified } from './checks.js';
import type { ClientLimits } from './options.js';
import { finishRootWalk, trustRoot, verifyNextRoot } from './root.js';
import { checkFinalSnapshot, loadStoredSnapshot, snapshotMaxBytes, verifySnapshot } from './snapshot.js';
import {
  binDelegation,
  delegatedRoleKeys,
  delegatedRoleNames,
  delegationKeysId,
  rolesForTarget,
  verifyTargetsRole,
} from './targets.js';
import { loadStoredTimestamp, verifyTimestamp } from './timestamp.js';

/**
 * The metadata a client trusts, and the TUF client workflow's checks as state transitions (no I/O:
 * the updater fetches, this verifies). Each update either succeeds and replaces the trusted role,
 * or throws and leaves every trusted role as it was.
 */
export class TrustedMetadata {
  private rootV: Verified<Root>;
  private timestampV: Verified<Timestamp> | undefined;
  private snapshotV: Verified<Snapshot> | undefined;
  private targetsV: Verified<Targets> | undefined;
  /** Delegated roles by delegator and name, with the identity of the keys they were verified under. */
  private readonly delegated = new Map<string, { name: string; v: Verified<Targets>; keysId: string }>();
  /** The copy of each delegated role verified last, by name: what that role delegates further. */
  private readonly lastByName = new Map<string, Verified<Targets>>();

  constructor(
    rootBytes: Uint8Array,
    private readonly limits: ClientLimits,
    rootFile = 'root.json',
    private readonly requireConsistentSnapshot = true,
  ) {
    this.rootV = trustRoot(rootBytes, rootFile, limits.rootMaxBytes);
  }

  get root(): Verified<Root> {
    return this.rootV;
  }
  get timestamp(): Verified<Timestamp> | undefined {
    return this.timestampV;
  }
  get snapshot(): Verified<Snapshot> | undefined {
    return this.snapshotV;
  }
  get targets(): Verified<Targets> | undefined {
    return this.targetsV;
  }
  /** 5.3.4-5.3.7: root N+1 replaces the trusted root. */
  updateRoot(bytes: Uint8Array, file: string): Verified<Root> {
    this.rootV = verifyNextRoot(this.rootV, bytes, file, this.limits.rootMaxBytes);
    return this.rootV;
  }

  /** 5.3.10-5.3.11; on an online key rotation, everything below root is forgotten (fast-forward recovery). */
  finishRootWalk(start: Root, now: Date): { onlineKeysRotated: boolean } {
    const out = finishRootWalk(start, this.rootV, now, this.requireConsistentSnapshot);
    if (out.onlineKeysRotated) {
      this.timestampV = this.snapshotV = this.targetsV = undefined;
      this.delegated.clear();
      this.lastByName.clear();
    }
    return out;
  }

  loadStoredTimestamp(bytes: Uint8Array): void {
    this.timestampV = loadStoredTimestamp(this.rootV.md.signed, bytes, this.limits.timestampMaxBytes);
  }

  /** 5.4; returns whether the repository published a new timestamp. */
  updateTimestamp(bytes: Uint8Array, now: Date): boolean {
    const out = verifyTimestamp(this.rootV.md.signed, this.timestampV, bytes, {
      maxBytes: this.limits.timestampMaxBytes,
      now,
    });
    this.timestampV = out.timestamp;
    return out.changed;
  }

  loadStoredSnapshot(bytes: Uint8Array): void {
    this.snapshotV = loadStoredSnapshot(this.rootV.md.signed, bytes, this.limits.snapshotMaxBytes);
  }

  /** True when the trusted snapshot is the one the trusted timestamp names (nothing to download). */
  snapshotIsCurrent(): boolean {
    return !!this.snapshotV && this.snapshotV.md.signed.version === this.needTimestamp().snapshotMeta.version;
  }

  snapshotMaxBytes(): number {
    return snapshotMaxBytes(this.needTimestamp(), this.limits.snapshotMaxBytes);
  }

  /** 5.5 */
  updateSnapshot(bytes: Uint8Array, now: Date): void {
    const ts = this.needTimestamp();
    this.snapshotV = verifySnapshot(this.rootV.md.signed, ts, this.snapshotV, bytes, {
      maxBytes: this.snapshotMaxBytes(),
      now,
    });
  }

  checkFinalSnapshot(now: Date): void {
    checkFinalSnapshot(this.needSnapshot(), this.needTimestamp(), now);
  }

  /** Version of a targets role in the trusted snapshot (what a current copy must have). */
  expectedVersion(role: string): number | undefined {
    return this.needSnapshot().md.signed.meta[`${role}.json`]?.version;
  }

  targetsIsCurrent(): boolean {
    return !!this.targetsV && this.targetsV.md.signed.version === this.expectedVersion('targets');
  }

  /** 5.6 for targets.json (downloaded, or `stored` from the trusted store). */
  updateTargets(bytes: Uint8Array, now: Date, stored = false): void {
    const keys = topRoleKeys(this.rootV.md.signed, 'targets');
    this.targetsV = verifyTargetsRole('targets', keys, this.needSnapshot(), bytes, {
      capBytes: this.limits.targetsMaxBytes,
      now,
      stored,
      file: this.fileName('targets'),
    });
    // Copies verified under keys targets.json no longer gives are dropped by isCurrent's key check.
  }

  /** The name to request a role's metadata under (consistent snapshot or not, role name quoted). */
  fileName(role: string): string {
    const version = role === 'root' ? this.rootV.md.signed.version + 1 : (this.expectedVersion(role) ?? 0);
    return roleFileName(role, version, this.rootV.md.signed.consistentSnapshot);
  }

  /** All roles targets.json delegates to directly (depotsync's hashed bins). */
  binNames(): string[] {
    return delegatedRoleNames(this.needTargets().md.signed);
  }

  binIsCurrent(name: string): boolean {
    return this.isCurrent(name, 'targets');
  }

  /** Bins whose trusted copy is missing or older than the snapshot says: the catalog delta to fetch. */
  staleBins(): string[] {
    return this.binNames().filter((name) => !this.binIsCurrent(name));
  }

  /** 5.6 for one role targets.json delegates to. */
  updateBin(name: string, bytes: Uint8Array, now: Date, stored = false): void {
    this.updateDelegated(name, 'targets', bytes, now, stored);
  }

  /** A role's trusted copy as delegated by `parent` (targets.json by default). */
  bin(name: string, parent = 'targets'): Verified<Targets> | undefined {
    return this.delegated.get(delegationKey(name, parent))?.v;
  }

  /** The delegator's metadata: targets.json or a trusted delegated role. */
  private delegator(parent: string): Targets | undefined {
    if (parent === 'targets') return this.targetsV?.md.signed;
    return this.lastByName.get(parent)?.md.signed;
  }

  /** Trusted, at the version the snapshot names, and verified under the keys its delegator gives now. */
  isCurrent(name: string, parent: string): boolean {
    const e = this.delegated.get(delegationKey(name, parent));
    if (!e || e.v.md.signed.version !== this.expectedVersion(name)) return false;
    const d = this.delegator(parent);
    return !!d && delegationKeysId(d, name) === e.keysId;
  }

  /** 5.6 for a delegated role, verified with the keys and threshold `parent` delegates it with. */
  updateDelegated(name: string, parent: string, bytes: Uint8Array, now: Date, stored = false): void {
    const d = this.delegator(parent);
    const keys = d && delegatedRoleKeys(d, name);
    if (!d || !keys) throw new DepotsyncError('bad-metadata', `${name} metadata: not delegated by ${parent}`);
    const v = verifyTargetsRole(name, keys, this.needSnapshot(), bytes, {
      capBytes: this.limits.targetsMaxBytes,
      now,
      stored,
      bin: binDelegation(d, name),
      file: this.fileName(name),
    });
    this.delegated.set(delegationKey(name, parent), { name, v, keysId: delegationKeysId(d, name)! });
    this.lastByName.set(name, v);
  }

  /** The bin a target path belongs to, per targets.json's delegations (the first one that matches). */
  binFor(path: string): string | undefined {
    return rolesForTarget(this.needTargets().md.signed, checkTargetPath(path))[0]?.role;
  }

  /**
   * Look a target up by the specification's preorder depth-first search over the delegation graph
   * (5.6.7): a role's own targets first, then its delegations for the path in their order; a
   * terminating delegation ends the search of the roles after it; at most `maxDelegations` roles are
   * visited. Returns `{ need }` when a role on the way has to be loaded first (the caller loads it and
   * asks again), else the target (if any) and the role that lists it.
   */
  findTarget(path: string): FoundTarget {
    checkTargetPath(path);
    const stack: { role: string; parent: string }[] = [{ role: 'targets', parent: 'root' }];
    const visited = new Set<string>();
    let budget = this.limits.maxDelegations;
    while (budget > 0 && stack.length) {
      const { role, parent } = stack.pop()!;
      const key = delegationKey(role, parent);
      if (visited.has(key)) continue;
      let md: Targets;
      if (role === 'targets') md = this.needTargets().md.signed;
      else if (this.isCurrent(role, parent)) md = this.bin(role, parent)!.md.signed;
      else return { need: { role, parent } };
      const t = own(md.targets, path);
      if (t) return { target: targetInfoOf(t), role, parent };
      visited.add(key);
      budget--;
      const children: { role: string; parent: string }[] = [];
      for (const c of rolesForTarget(md, path)) {
        children.push({ role: c.role, parent: role });
        if (c.terminating) {
          stack.length = 0;
          break;
        }
      }
      stack.push(...children.reverse());
    }
    return {};
  }

  private needTimestamp(): Timestamp {
    if (!this.timestampV)
      throw new DepotsyncError('internal', 'tuf client: no trusted timestamp yet (refresh first)');
    return this.timestampV.md.signed;
  }
  private needSnapshot(): Verified<Snapshot> {
    if (!this.snapshotV)
      throw new DepotsyncError('internal', 'tuf client: no trusted snapshot yet (refresh first)');
    return this.snapshotV;
  }
  private needTargets(): Verified<Targets> {
    if (!this.targetsV)
      throw new DepotsyncError('internal', 'tuf client: no trusted targets yet (refresh first)');
    return this.targetsV;
  }
}

/** A target search's answer: the target and the role listing it, or a role to load first. */
export interface FoundTarget {
  target?: TargetInfo;
  role?: string;
  parent?: string;
  need?: { role: string; parent: string };
}

const delegationKey = (name: string, parent: string) => `${parent}\u0000${name}`;
