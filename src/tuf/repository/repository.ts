import type { Logger } from 'pino';
import { silentLogger } from '../../log.js';
import { own } from '../codec.js';
import { DepotsyncError } from '../../errors.js';
import { binFor, type BinCount } from '../hashbins.js';
import { checkTargetPath } from '../paths.js';
import type { Signer } from '../keys.js';
import type { MetadataFile } from './build.js';
import { createState, type CreateRoot } from './create.js';
import { loadState, type StoredMetadata } from './load.js';
import {
  resolveOptions,
  type OnlineSigners,
  type RepositoryOptions,
  type ResolvedOptions,
} from './options.js';
import { refreshExpiring, rootExpiresSoon } from './refresh.js';
import { advanceAll } from './advance.js';
import {
  adoptRoot,
  prepareRoot,
  rotateBinsKey,
  rotateRoot,
  signedRootFromBytes,
  type RootChange,
} from './rotate.js';
import { serializeMetadata } from '../sign.js';
import { publish, type RepoState, type StepContext } from './state.js';
import {
  applyTargetChanges,
  targetInfoOf,
  type TargetChange,
  type TargetInfo,
  type TargetInput,
} from './targets.js';
import { applyTopTargetChange } from './top-targets.js';

/**
 * The master's TUF repository over in-memory state. No database and no files here: every operation
 * returns the new metadata files (consistent-snapshot names, compact JSON bytes) for the caller to
 * persist in one transaction; the state only advances when the operation succeeded as a whole.
 * The generation is the snapshot version.
 */
export class TufRepository {
  private state: RepoState;
  private online: Required<OnlineSigners>;
  private readonly opts: ResolvedOptions;
  private readonly log: Logger;

  private constructor(
    state: RepoState,
    online: Required<OnlineSigners>,
    opts: ResolvedOptions,
    log: Logger | undefined,
  ) {
    this.state = state;
    this.online = online;
    this.opts = opts;
    this.log = (log ?? silentLogger()).child({ component: 'tuf.repository' });
  }

  static create(init: {
    root: CreateRoot;
    online: OnlineSigners;
    options?: RepositoryOptions;
    logger?: Logger;
  }): { repository: TufRepository; files: MetadataFile[] } {
    const opts = resolveOptions(init.options);
    const online = { ...init.online, bins: init.online.bins ?? init.online.targets };
    const { state, files } = createState(init.root, online, opts);
    return { repository: new TufRepository(state, online, opts, init.logger), files };
  }

  /** Rebuild from the latest persisted files (verified again: signatures and consistency, not expiry). */
  static load(
    stored: StoredMetadata,
    online: OnlineSigners,
    options?: RepositoryOptions & { logger?: Logger },
  ): TufRepository {
    const full = { ...online, bins: online.bins ?? online.targets };
    const state = loadState(stored, full);
    const opts = resolveOptions({ ...options, binCount: state.binCount });
    return new TufRepository(state, full, opts, options?.logger);
  }

  get generation(): number {
    return this.state.snapshot.md.signed.version;
  }
  get rootVersion(): number {
    return this.state.root.md.signed.version;
  }
  get binCount(): BinCount {
    return this.state.binCount;
  }
  get rootExpires(): Date {
    return new Date(this.state.root.md.signed.expires);
  }
  rootExpiresSoon(): boolean {
    return rootExpiresSoon(this.state, this.ctx());
  }

  binFor(targetPath: string): string {
    return binFor(checkTargetPath(targetPath), this.state.binCount);
  }

  getTarget(targetPath: string): TargetInfo | undefined {
    const bin = this.state.bins.get(this.binFor(targetPath));
    const t = bin ? own(bin.md.signed.targets, targetPath) : undefined;
    return t ? targetInfoOf(t) : undefined;
  }

  *targets(): Generator<TargetInfo> {
    for (const bin of this.state.bins.values())
      for (const t of Object.values(bin.md.signed.targets)) yield targetInfoOf(t);
  }

  /**
   * The current file of every role (the latest root only: the caller keeps older roots for clients to walk).
   */
  currentFiles(): MetadataFile[] {
    const s = this.state;
    return [
      s.root.file,
      s.targets.file,
      ...[...s.bins.values()].map((b) => b.file),
      s.snapshot.file,
      s.timestamp.file,
    ];
  }

  /** Add, replace or remove targets in one new generation; re-signs only the bins touched. */
  updateTargets(changes: readonly TargetChange[]): MetadataFile[] {
    const ctx = this.ctx();
    const bins = applyTargetChanges(this.state, ctx, changes);
    if (!bins.size) return [];
    return this.commit(publish(this.state, ctx, { bins }), `targets changed in ${bins.size} bin(s)`);
  }

  addTarget(targetPath: string, target: TargetInput): MetadataFile[] {
    return this.updateTargets([{ path: targetPath, target }]);
  }

  removeTarget(targetPath: string): MetadataFile[] {
    return this.updateTargets([{ path: targetPath, remove: true }]);
  }

  /** A target listed by targets.json itself (top-targets.ts), e.g. the depot directory. */
  getTopTarget(targetPath: string): TargetInfo | undefined {
    const t = own(this.state.targets.md.signed.targets, checkTargetPath(targetPath));
    return t ? targetInfoOf(t) : undefined;
  }

  /**
   * Add, replace or remove one top-level target: a new targets.json, snapshot and
   * timestamp ([] when unchanged).
   */
  updateTopTarget(change: TargetChange): MetadataFile[] {
    const ctx = this.ctx();
    const targets = applyTopTargetChange(this.state, ctx, change);
    if (!targets) return [];
    return this.commit(publish(this.state, ctx, { targets }), `top-level target ${change.path} changed`);
  }

  /**
   * Re-sign what is close to expiry (call on a schedule). Returns [] when nothing needed it.
   * `newTimestamp`: a new timestamp even when none is due.
   */
  refresh(opts: { newTimestamp?: boolean } = {}): MetadataFile[] {
    const out = refreshExpiring(this.state, this.ctx(), opts);
    return out.files.length ? this.commit(out, 'expiring metadata re-signed') : [];
  }

  /**
   * Every non-root role signed again at its version + `step` (same content): the version epoch of a
   * restored master (advance.ts). The generation moves by `step` too.
   */
  advanceVersions(step: number): MetadataFile[] {
    const out = advanceAll(this.state, this.ctx(), step);
    return this.commit(out, `versions advanced by ${step}`);
  }

  /**
   * Root N+1 signed by old and new root keys. `newOnline` carries the signer of any online role whose
   * key changes (its public key must equal the one in `change`).
   */
  rotateRoot(
    change: RootChange,
    rootSigners: readonly Signer[],
    newOnline: Partial<OnlineSigners> = {},
  ): MetadataFile[] {
    const online = { ...this.online, ...newOnline, bins: newOnline.bins ?? this.online.bins };
    const out = rotateRoot(this.state, { ...this.ctx(), online }, change, rootSigners);
    const files = this.commit(out, `root rotated to v${out.state.root.md.signed.version}`);
    this.online = online;
    return files;
  }

  /** The current root file (to hand to a signer as the trusted base of a signing request). */
  get rootFile(): MetadataFile {
    return this.state.root.file;
  }

  /** The keyid that signs the bins (named in targets.json's delegations). */
  get binsKeyId(): string {
    return this.online.bins.keyid;
  }

  /**
   * Root N+1, unsigned, for signing elsewhere (root keys kept offline): its bytes (no signatures yet)
   * and the keyids whose signatures count (old and new root keys). Nothing changes here.
   */
  prepareRoot(change: RootChange): { bytes: Uint8Array; version: number; allowed: string[] } {
    const { md, allowed } = prepareRoot(this.state, this.ctx(), change);
    return { bytes: serializeMetadata(md), version: md.signed.version, allowed: [...allowed] };
  }

  /** Make a root N+1 signed elsewhere current (checks as `rotateRoot`); `newOnline` as there. */
  adoptRoot(bytes: Uint8Array, newOnline: Partial<OnlineSigners> = {}): MetadataFile[] {
    const online = { ...this.online, ...newOnline, bins: newOnline.bins ?? this.online.bins };
    const out = adoptRoot(this.state, { ...this.ctx(), online }, signedRootFromBytes(bytes, 'signed root'));
    const files = this.commit(out, `root v${out.state.root.md.signed.version} adopted`);
    this.online = online;
    return files;
  }

  rotateBinsKey(signer: Signer): MetadataFile[] {
    const out = rotateBinsKey(this.state, this.ctx(), signer);
    const files = this.commit(out, 'bins key rotated');
    this.online = { ...this.online, bins: signer };
    return files;
  }

  private ctx(): StepContext {
    const now = this.opts.now();
    if (Number.isNaN(now.getTime()))
      throw new DepotsyncError('internal', 'tuf repository: the clock returned an invalid date');
    return { opts: this.opts, online: this.online, now };
  }

  private commit(out: { state: RepoState; files: MetadataFile[] }, why: string): MetadataFile[] {
    this.state = out.state;
    this.log.info(
      { generation: this.generation, root: this.rootVersion, files: out.files.map((f) => f.name) },
      why,
    );
    return out.files;
  }
}
