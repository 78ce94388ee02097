import type { Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { own } from '../codec.js';
import { checkTargetPath } from '../paths.js';
import { targetInfoOf, type TargetInfo } from '../target-info.js';
import { topRoleKeys, type Verified } from './checks.js';
import type { ClientLimits } from './options.js';
import { finishRootWalk, trustRoot, verifyNextRoot } from './root.js';
import { checkFinalSnapshot, loadStoredSnapshot, snapshotMaxBytes, verifySnapshot } from './snapshot.js';
import { binForPath, binIndexOf, verifyTargetsRole, type BinIndex } from './targets.js';
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
  private index: BinIndex | undefined;
  private readonly binsV = new Map<string, Verified<Targets>>();

  constructor(
    rootBytes: Uint8Array,
    private readonly limits: ClientLimits,
    rootFile = 'root.json',
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
  bin(name: string): Verified<Targets> | undefined {
    return this.binsV.get(name);
  }

  /** 5.3.4-5.3.7: root N+1 replaces the trusted root. */
  updateRoot(bytes: Uint8Array, file: string): Verified<Root> {
    this.rootV = verifyNextRoot(this.rootV, bytes, file, this.limits.rootMaxBytes);
    return this.rootV;
  }

  /** 5.3.10-5.3.11; on an online key rotation, everything below root is forgotten (fast-forward recovery). */
  finishRootWalk(start: Root, now: Date): { onlineKeysRotated: boolean } {
    const out = finishRootWalk(start, this.rootV, now);
    if (out.onlineKeysRotated) {
      this.timestampV = this.snapshotV = this.targetsV = this.index = undefined;
      this.binsV.clear();
    }
    return out;
  }

  loadStoredTimestamp(bytes: Uint8Array): void {
    this.timestampV = loadStoredTimestamp(this.rootV.md.signed, bytes, this.limits.timestampMaxBytes);
  }

  /** 5.4; returns whether the repository published a new timestamp. */
  updateTimestamp(bytes: Uint8Array, now: Date): boolean {
    const out = verifyTimestamp(this.rootV.md.signed, this.timestampV, bytes, { maxBytes: this.limits.timestampMaxBytes, now });
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
    this.snapshotV = verifySnapshot(this.rootV.md.signed, ts, this.snapshotV, bytes, { maxBytes: this.snapshotMaxBytes(), now });
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
    const v = verifyTargetsRole('targets', topRoleKeys(this.rootV.md.signed, 'targets'), this.needSnapshot(), bytes, {
      capBytes: this.limits.targetsMaxBytes,
      now,
      stored,
    });
    const index = binIndexOf(v);
    this.targetsV = v;
    this.index = index;
    for (const name of this.binsV.keys()) if (!index.bins.has(name)) this.binsV.delete(name);
  }

  /** All bins targets.json delegates to. */
  binNames(): string[] {
    return [...this.needIndex().bins.keys()];
  }

  binIsCurrent(name: string): boolean {
    const bin = this.binsV.get(name);
    return !!bin && bin.md.signed.version === this.expectedVersion(name);
  }

  /** Bins whose trusted copy is missing or older than the snapshot says: the catalog delta to fetch. */
  staleBins(): string[] {
    return this.binNames().filter((name) => !this.binIsCurrent(name));
  }

  /** 5.6 for one bin, verified with the keys targets.json delegates it to. */
  updateBin(name: string, bytes: Uint8Array, now: Date, stored = false): void {
    const bin = this.needIndex().bins.get(name);
    if (!bin) throw new DepotsyncError('bad-metadata', `${name} metadata: not delegated by targets v${this.targetsV?.md.signed.version}`);
    this.binsV.set(name, verifyTargetsRole(name, bin.keys, this.needSnapshot(), bytes, { capBytes: this.limits.targetsMaxBytes, now, stored, bin }));
  }

  /** The bin a target path belongs to, per the signed delegations. */
  binFor(path: string): string | undefined {
    return binForPath(this.needIndex(), checkTargetPath(path));
  }

  /**
   * Look a target up: targets.json's own targets first, then its bin (which must be current).
   * Returns `{ bin }` without `target` when that bin has to be loaded first.
   */
  findTarget(path: string): { target?: TargetInfo; bin?: string; needBin?: boolean } {
    checkTargetPath(path);
    const top = own(this.needTargets().md.signed.targets, path);
    if (top) return { target: targetInfoOf(top) };
    const bin = this.binFor(path);
    if (!bin) return {};
    if (!this.binIsCurrent(bin)) return { bin, needBin: true };
    const binMd = this.binsV.get(bin);
    const t = binMd ? own(binMd.md.signed.targets, path) : undefined;
    return t ? { target: targetInfoOf(t), bin } : { bin };
  }

  private needTimestamp(): Timestamp {
    if (!this.timestampV) throw new DepotsyncError('internal', 'tuf client: no trusted timestamp yet (refresh first)');
    return this.timestampV.md.signed;
  }
  private needSnapshot(): Verified<Snapshot> {
    if (!this.snapshotV) throw new DepotsyncError('internal', 'tuf client: no trusted snapshot yet (refresh first)');
    return this.snapshotV;
  }
  private needTargets(): Verified<Targets> {
    if (!this.targetsV) throw new DepotsyncError('internal', 'tuf client: no trusted targets yet (refresh first)');
    return this.targetsV;
  }
  private needIndex(): BinIndex {
    if (!this.index) throw new DepotsyncError('internal', 'tuf client: no trusted targets yet (refresh first)');
    return this.index;
  }
}
