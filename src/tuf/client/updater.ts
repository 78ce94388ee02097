import type { Logger } from 'pino';
import { DepotsyncError, isDepotsyncError } from '../../errors.js';
import { silentLogger } from '../../log.js';
import { own } from '../codec.js';
import { metadataFileName, roleFileName } from '../context.js';
import type { TargetInfo } from '../target-info.js';
import { checkExpiry } from './checks.js';
import { resolveLimits, type ClientLimits } from './options.js';
import { checkRootFingerprint } from './root.js';
import { tooLarge, type MetadataSource } from './source.js';
import type { TrustedStore } from './store.js';
import { TrustedMetadata } from './trusted.js';
import { TIMESTAMP_FILE } from './timestamp.js';

export interface TufClientOptions {
  source: MetadataSource;
  store: TrustedStore;
  /** Injected clock for expiry checks. */
  now?: () => Date;
  limits?: Partial<ClientLimits>;
  logger?: Logger;
  /**
   * Refuse roots with `consistent_snapshot: false` (default: depotsync's mirrors serve `{N}.role.json`
   * only). A client of plain TUF repositories sets false and requests `{role}.json` from such roots.
   */
  requireConsistentSnapshot?: boolean;
}

export interface OpenOptions extends TufClientOptions {
  /** Hex SHA-256 of `1.root.json`: required when the store holds no trusted root yet. */
  fingerprint?: string;
  /** The bytes of `1.root.json` if the caller has them (offline init); else fetched from the source. */
  initialRoot?: Uint8Array;
}

export interface RefreshResult {
  rootVersion: number;
  /** Root versions walked in this update. */
  rootsFetched: number[];
  /** Timestamp/snapshot keys changed: their trusted copies were dropped (fast-forward recovery). */
  onlineKeysRotated: boolean;
  timestampVersion: number;
  /** The snapshot version: depotsync's generation. */
  generation: number;
  /** The repository published a new timestamp since the last update. */
  changed: boolean;
  /** Bins fetched in this update (`bins: 'stale'`). */
  fetchedBins: string[];
  /** Bins still stale (`bins: 'none'`): the catalog delta a caller may fetch with `updateBins`. */
  staleBins: string[];
}

/** One metadata file a mirror re-serves byte for byte. */
export interface TrustedFile {
  role: string;
  version: number;
  name: string;
  bytes: Uint8Array;
}

/**
 * The TUF client workflow (specification §5) over a pluggable source and a trusted store. Used by
 * depots (online sync and offline bundles: same source interface), agents and the offline importer.
 */
export class TufClient {
  private readonly source: MetadataSource;
  private readonly store: TrustedStore;
  private readonly now: () => Date;
  private readonly limits: ClientLimits;
  private readonly log: Logger;
  private storedLoaded = false;
  private updateStart: Date | undefined;

  private constructor(
    readonly trusted: TrustedMetadata,
    opts: TufClientOptions,
    limits: ClientLimits,
  ) {
    this.source = opts.source;
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
    this.limits = limits;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'tuf.client' });
  }

  /** Load the trusted root from the store, or bootstrap it from the pinned fingerprint. */
  static async open(opts: OpenOptions): Promise<TufClient> {
    const limits = resolveLimits(opts.limits);
    const stored = await opts.store.load('root');
    if (stored) {
      const strict = opts.requireConsistentSnapshot ?? true;
      const trusted = new TrustedMetadata(stored, limits, 'stored root.json', strict);
      if (opts.fingerprint && trusted.root.md.signed.version === 1)
        checkRootFingerprint(stored, opts.fingerprint, 'stored root.json');
      return new TufClient(trusted, opts, limits);
    }
    if (!opts.fingerprint) {
      throw new DepotsyncError(
        'bad-input',
        'tuf client: no trusted root yet and no root fingerprint to bootstrap one',
        {
          hint: 'give the SHA-256 fingerprint of 1.root.json that `depotsync master init` printed',
        },
      );
    }
    const file = metadataFileName('root', 1);
    const bytes = opts.initialRoot ?? (await fetchCapped(opts.source, file, limits.rootMaxBytes));
    checkRootFingerprint(bytes, opts.fingerprint, file);
    const trusted = new TrustedMetadata(bytes, limits, file, opts.requireConsistentSnapshot ?? true);
    await opts.store.save('root', bytes, trusted.root.md.signed.version);
    return new TufClient(trusted, opts, limits);
  }

  get rootVersion(): number {
    return this.trusted.root.md.signed.version;
  }

  get generation(): number | undefined {
    return this.trusted.snapshot?.md.signed.version;
  }

  /**
   * One update: root walk, timestamp, snapshot, targets, and (with `bins: 'stale'`, the default) the
   * bins whose version changed. Everything verified is saved to the store as it is accepted.
   */
  async refresh(opts: { bins?: 'stale' | 'none' } = {}): Promise<RefreshResult> {
    // One update at a time (a scheduled sync and an on-demand one share a client).
    const run = this.running.then(() => this.refreshNow(opts));
    this.running = run.catch(() => undefined);
    return run;
  }

  private running: Promise<unknown> = Promise.resolve();

  private async refreshNow(opts: { bins?: 'stale' | 'none' }): Promise<RefreshResult> {
    const now = this.now(); // 5.1 one reference time for the whole update
    this.updateStart = now;
    const t = this.trusted;
    if (!this.storedLoaded) await this.loadStored();

    // 5.3 root: walk N+1, N+2, ... until the source has no next version (bounded).
    const start = t.root.md.signed;
    const rootsFetched: number[] = [];
    for (let i = 0; i < this.limits.maxRootRotations; i++) {
      const version = t.root.md.signed.version + 1;
      const name = metadataFileName('root', version);
      const bytes = await this.fetchOrUndefined(name, this.limits.rootMaxBytes);
      if (!bytes) break;
      t.updateRoot(bytes, name);
      await this.store.save('root', bytes, version);
      rootsFetched.push(version);
    }
    const { onlineKeysRotated } = t.finishRootWalk(start, now);
    if (rootsFetched.length)
      this.log.info({ root: t.root.md.signed.version, onlineKeysRotated }, 'trusted root updated');
    if (onlineKeysRotated) {
      await this.store.remove('timestamp');
      await this.store.remove('snapshot');
    }

    // 5.4 timestamp
    const tsBytes = await fetchCapped(this.source, TIMESTAMP_FILE, this.limits.timestampMaxBytes);
    const changed = t.updateTimestamp(tsBytes, now);
    const ts = t.timestamp!.md.signed;
    if (changed) await this.store.save('timestamp', tsBytes, ts.version);

    // 5.5 snapshot (only when the timestamp names another one than we trust)
    if (!t.snapshotIsCurrent()) {
      const name = roleFileName('snapshot', ts.snapshotMeta.version, t.root.md.signed.consistentSnapshot);
      const bytes = await fetchCapped(this.source, name, t.snapshotMaxBytes());
      t.updateSnapshot(bytes, now);
      await this.store.save('snapshot', bytes, ts.snapshotMeta.version);
    }
    t.checkFinalSnapshot(now);

    // 5.6 targets.json
    if (!t.targetsIsCurrent()) await this.loadOrFetch('targets', now);
    checkExpiry(t.targets!.md, { role: 'targets', file: t.targets!.file }, now);

    const stale = await this.staleBins();
    const fetchedBins = opts.bins === 'none' ? [] : await this.updateBins(stale);
    const result: RefreshResult = {
      rootVersion: t.root.md.signed.version,
      rootsFetched,
      onlineKeysRotated,
      timestampVersion: t.timestamp!.md.signed.version,
      generation: t.snapshot!.md.signed.version,
      changed,
      fetchedBins,
      staleBins: opts.bins === 'none' ? stale : [],
    };
    if (changed)
      this.log.info({ generation: result.generation, bins: fetchedBins.length }, 'catalog updated');
    return result;
  }

  /** Bins not current in memory or in the store: what a full sync still has to fetch. */
  async staleBins(): Promise<string[]> {
    const now = this.updateStart ?? this.now();
    const stale: string[] = [];
    for (const name of this.trusted.staleBins()) {
      if (!this.trusted.bin(name))
        await this.tryStored(name, (bytes) => this.trusted.updateBin(name, bytes, now, true));
      if (!this.trusted.binIsCurrent(name)) stale.push(name);
    }
    return stale;
  }

  /** Fetch, verify and store the named bins (bounded concurrency). Returns the names fetched. */
  async updateBins(names: readonly string[]): Promise<string[]> {
    const now = this.updateStart ?? this.now();
    const queue = [...names];
    const worker = async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift())
        await this.fetchRole(name, now);
    };
    await Promise.all(Array.from({ length: Math.min(this.limits.binConcurrency, queue.length) }, worker));
    if (names.length) this.log.debug({ bins: names.length }, 'bins updated');
    return [...names];
  }

  /**
   * A target's length, hashes and custom data, or undefined when the catalog does not list it: the
   * delegation search of TrustedMetadata.findTarget, loading (stored copy first, else download) each
   * delegated role it reaches.
   */
  async getTarget(path: string): Promise<TargetInfo | undefined> {
    const now = this.updateStart ?? this.now();
    // Each round loads one more role of the search; the search visits at most maxDelegations roles.
    for (let round = 0; round <= this.limits.maxDelegations + 1; round++) {
      const found = this.trusted.findTarget(path);
      if (found.need) {
        await this.loadDelegated(found.need.role, found.need.parent, now);
        continue;
      }
      if (found.role && found.parent && found.role !== 'targets') {
        const v = this.trusted.bin(found.role, found.parent);
        if (v) checkExpiry(v.md, { role: found.role, file: v.file }, now); // freeze
      }
      return found.target;
    }
    const what = `the delegation search for ${JSON.stringify(path)}`;
    throw new DepotsyncError('internal', `tuf client: ${what} did not settle`);
  }

  private async loadDelegated(role: string, parent: string, now: Date): Promise<void> {
    const t = this.trusted;
    if (!t.bin(role, parent)) {
      await this.tryStored(role, (bytes) => t.updateDelegated(role, parent, bytes, now, true));
    }
    if (!t.isCurrent(role, parent)) await this.fetchRole(role, now, parent);
  }

  /** Every target of the catalog (all bins must be current: refresh with `bins: 'stale'` first). */
  *targets(): Generator<TargetInfo> {
    const stale = this.trusted.staleBins();
    if (stale.length)
      throw new DepotsyncError(
        'internal',
        `tuf client: ${stale.length} bins are not current (refresh with bins: 'stale' first)`,
      );
    for (const name of this.trusted.binNames()) {
      // Targets reachable by the delegation search only (a nested delegation not loaded is skipped).
      for (const path of Object.keys(this.trusted.bin(name)!.md.signed.targets)) {
        const t = this.trusted.findTarget(path).target;
        if (t) yield t;
      }
    }
  }

  /** The current trusted files under their consistent-snapshot names, for a mirror to re-serve. */
  trustedFiles(): TrustedFile[] {
    const t = this.trusted;
    const out: TrustedFile[] = [];
    const add = (role: string, v: { md: { signed: { version: number } }; bytes: Uint8Array } | undefined) => {
      if (v)
        out.push({
          role,
          version: v.md.signed.version,
          name: metadataFileName(role, v.md.signed.version),
          bytes: v.bytes,
        });
    };
    add('root', t.root);
    add('timestamp', t.timestamp);
    add('snapshot', t.snapshot);
    add('targets', t.targets);
    if (t.targets) for (const name of t.binNames()) add(name, t.bin(name));
    return out;
  }

  private async tryStored(role: string, apply: (bytes: Uint8Array) => void): Promise<void> {
    const bytes = await this.store.load(role);
    if (!bytes) return;
    try {
      apply(bytes);
    } catch (e) {
      // A stored copy that no longer verifies (older generation, rotated key) is simply not used.
      this.log.debug({ role, err: (e as Error).message }, 'stored metadata not usable');
    }
  }

  private async loadStored(): Promise<void> {
    this.storedLoaded = true;
    await this.tryStored('timestamp', (bytes) => this.trusted.loadStoredTimestamp(bytes));
    await this.tryStored('snapshot', (bytes) => this.trusted.loadStoredSnapshot(bytes));
  }

  private async loadOrFetch(role: 'targets', now: Date): Promise<void> {
    if (!this.trusted.targets)
      await this.tryStored(role, (bytes) => this.trusted.updateTargets(bytes, now, true));
    if (!this.trusted.targetsIsCurrent()) await this.fetchRole(role, now);
  }

  /** Download a role's metadata under the name the snapshot gives (`{N}.{role}.json`, `{role}.json`). */
  private async fetchRole(role: string, now: Date, parent = 'targets'): Promise<void> {
    const version = this.trusted.expectedVersion(role);
    if (version === undefined)
      throw new DepotsyncError(
        'bad-metadata',
        `${role} metadata: not listed in snapshot v${this.generation}`,
      );
    const name = this.trusted.fileName(role);
    const meta = own(this.trusted.snapshot!.md.signed.meta, `${role}.json`);
    const bytes = await fetchCapped(
      this.source,
      name,
      Math.min(meta?.length ?? this.limits.targetsMaxBytes, this.limits.targetsMaxBytes),
    );
    if (role === 'targets') this.trusted.updateTargets(bytes, now);
    else this.trusted.updateDelegated(role, parent, bytes, now);
    await this.store.save(role, bytes, version);
  }

  private async fetchOrUndefined(name: string, maxBytes: number): Promise<Uint8Array | undefined> {
    try {
      return await fetchCapped(this.source, name, maxBytes);
    } catch (e) {
      if (isDepotsyncError(e, 'not-found')) return undefined;
      throw e;
    }
  }
}

/** Ask the source for at most maxBytes, and check again: a source that ignores the cap is refused. */
async function fetchCapped(source: MetadataSource, name: string, maxBytes: number): Promise<Uint8Array> {
  const bytes = await source.fetch(name, maxBytes);
  if (bytes.length > maxBytes) throw tooLarge(name, maxBytes, bytes.length);
  return bytes;
}
