import type { Targets } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { buildSnapshot, buildTimestamp, expiresAt, metaFileFor, type MetadataFile } from './build.js';
import {
  binsSigner,
  resignTargets,
  signed,
  type RepoState,
  type SignedRole,
  type StepContext,
} from './state.js';

/**
 * Move every non-root role forward by `step` versions at once, content unchanged: targets.json, every
 * bin, snapshot and timestamp are signed again at version + `step`. A master restored from a backup
 * uses it so that its next metadata is newer than anything the fleet saw from the lost master (TUF
 * clients accept any higher version and refuse a lower one). Every bin gets a new version, so every
 * client fetches every bin again and drops what the lost master published after the backup.
 */
export function advanceAll(
  state: RepoState,
  ctx: StepContext,
  step: number,
): { state: RepoState; files: MetadataFile[] } {
  if (!Number.isSafeInteger(step) || step < 1)
    throw new DepotsyncError(
      'internal',
      `tuf repository: version step must be a positive integer, got ${step}`,
    );
  const { opts, now, online } = ctx;
  const targets = resignTargets(
    'targets',
    state.targets,
    expiresAt(now, opts.expiryMs.targets),
    online.targets,
    step,
  );
  const meta = { ...state.snapshot.md.signed.meta };
  meta['targets.json'] = metaFileFor(targets.file, opts.snapshotHashes);
  const files: MetadataFile[] = [targets.file];
  const bins = new Map<string, SignedRole<Targets>>();
  const binExpires = expiresAt(now, opts.expiryMs.bins);
  for (const [name, bin] of state.bins) {
    const b = resignTargets(name, bin, binExpires, binsSigner(online), step);
    bins.set(name, b);
    meta[`${name}.json`] = metaFileFor(b.file, opts.snapshotHashes);
    files.push(b.file);
  }
  const snapshot = signed(
    'snapshot',
    buildSnapshot(state.snapshot.md.signed.version + step, expiresAt(now, opts.expiryMs.snapshot), meta),
    [online.snapshot],
  );
  const timestamp = signed(
    'timestamp',
    buildTimestamp(
      state.timestamp.md.signed.version + step,
      expiresAt(now, opts.expiryMs.timestamp),
      snapshot.file,
    ),
    [online.timestamp],
  );
  files.push(snapshot.file, timestamp.file);
  return { state: { ...state, targets, bins, snapshot, timestamp }, files };
}
