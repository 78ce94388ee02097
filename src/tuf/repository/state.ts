import { Metadata, Targets, type Root, type Snapshot, type Timestamp } from '@tufjs/models';
import type { BinCount } from '../hashbins.js';
import type { Signer } from '../keys.js';
import { DepotsyncError } from '../../errors.js';
import type { AnyMetadata } from '../sign.js';
import {
  buildSnapshot,
  buildTimestamp,
  expiresAt,
  metaFileFor,
  signAndSerialize,
  type MetadataFile,
} from './build.js';
import type { OnlineSigners, ResolvedOptions } from './options.js';

/** One role's current metadata: the model and the exact signed bytes. */
export interface SignedRole<T extends Root | Timestamp | Snapshot | Targets> {
  readonly md: Metadata<T>;
  readonly file: MetadataFile;
}

/** The repository's current metadata. Immutable: every operation builds a new state, then swaps. */
export interface RepoState {
  readonly root: SignedRole<Root>;
  readonly targets: SignedRole<Targets>;
  readonly bins: ReadonlyMap<string, SignedRole<Targets>>;
  readonly snapshot: SignedRole<Snapshot>;
  readonly timestamp: SignedRole<Timestamp>;
  readonly binCount: BinCount;
}

/** What one operation needs besides the state. */
export interface StepContext {
  readonly opts: ResolvedOptions;
  readonly online: OnlineSigners;
  readonly now: Date;
}

export function binsSigner(online: OnlineSigners): Signer {
  return online.bins ?? online.targets;
}

/** Client default for targets/bins; a bigger bin would be refused by every client. */
export const MAX_TARGETS_FILE_BYTES = 5_000_000;

export function signed<T extends Root | Timestamp | Snapshot | Targets>(
  role: string,
  md: Metadata<T>,
  signers: readonly Signer[],
): SignedRole<T> {
  const file = signAndSerialize(role, md as unknown as AnyMetadata, signers);
  if (role !== 'root' && file.bytes.length > MAX_TARGETS_FILE_BYTES) {
    throw new DepotsyncError(
      'too-large',
      `${role} metadata ${file.name}: ${file.bytes.length} bytes exceeds the client limit of ${MAX_TARGETS_FILE_BYTES}`,
      {
        hint: 'create the repository with more bins (binCount 4096) so each bin stays small',
      },
    );
  }
  return { md, file };
}

/**
 * Finish an operation that changed targets.json and/or some bins: the snapshot lists the new
 * versions (re-signing is O(bins touched) plus one snapshot and one timestamp), then the timestamp
 * names the new snapshot. Returns the new state and the files to write, snapshot and timestamp last.
 */
export function publish(
  state: RepoState,
  ctx: StepContext,
  changed: {
    targets?: SignedRole<Targets>;
    bins?: ReadonlyMap<string, SignedRole<Targets>>;
    root?: SignedRole<Root>;
  },
): { state: RepoState; files: MetadataFile[] } {
  const { opts, now, online } = ctx;
  const meta = { ...state.snapshot.md.signed.meta };
  const files: MetadataFile[] = [];
  if (changed.root) files.push(changed.root.file);
  if (changed.targets) {
    meta['targets.json'] = metaFileFor(changed.targets.file, opts.snapshotHashes);
    files.push(changed.targets.file);
  }
  let bins = state.bins;
  if (changed.bins?.size) {
    const next = new Map(state.bins);
    for (const [name, role] of changed.bins) {
      next.set(name, role);
      meta[`${name}.json`] = metaFileFor(role.file, opts.snapshotHashes);
      files.push(role.file);
    }
    bins = next;
  }
  const snapshot = signed(
    'snapshot',
    buildSnapshot(state.snapshot.md.signed.version + 1, expiresAt(now, opts.expiryMs.snapshot), meta),
    [online.snapshot],
  );
  const timestamp = nextTimestamp(state, ctx, snapshot.file);
  files.push(snapshot.file, timestamp.file);
  return {
    state: {
      ...state,
      root: changed.root ?? state.root,
      targets: changed.targets ?? state.targets,
      bins,
      snapshot,
      timestamp,
    },
    files,
  };
}

export function nextTimestamp(
  state: RepoState,
  ctx: StepContext,
  snapshotFile: MetadataFile,
): SignedRole<Timestamp> {
  const md = buildTimestamp(
    state.timestamp.md.signed.version + 1,
    expiresAt(ctx.now, ctx.opts.expiryMs.timestamp),
    snapshotFile,
  );
  return signed('timestamp', md, [ctx.online.timestamp]);
}

/** The same targets (or bin) content with version + `step` (1) and a new expiry, signed again. */
export function resignTargets(
  name: string,
  current: SignedRole<Targets>,
  expires: string,
  signer: Signer,
  step = 1,
): SignedRole<Targets> {
  const t = current.md.signed;
  const md = new Metadata(
    new Targets({
      version: t.version + step,
      specVersion: t.specVersion,
      expires,
      targets: t.targets,
      ...(t.delegations ? { delegations: t.delegations } : {}),
    }),
  );
  return signed(name, md, [signer]);
}
