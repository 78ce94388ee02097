import type { Targets } from '@tufjs/models';
import { expiresAt, type MetadataFile } from './build.js';
import type { ExpiryMs } from './options.js';
import {
  binsSigner,
  nextTimestamp,
  publish,
  resignTargets,
  type RepoState,
  type SignedRole,
  type StepContext,
} from './state.js';

/**
 * Re-sign whatever expires within its `renewBeforeMs` (run on a schedule, e.g. hourly): targets and
 * bins get a new version, then snapshot and timestamp; a timestamp close to expiry alone gets only a
 * new timestamp. Without this, clients would rightly refuse a catalog that nobody changed (freeze
 * protection works both ways). Root cannot be renewed here: its keys may be offline.
 * `newTimestamp`: sign a new timestamp even when none is due (a master that just became the signer shows
 * at once that it signs).
 */
export function refreshExpiring(
  state: RepoState,
  ctx: StepContext,
  opts: { newTimestamp?: boolean } = {},
): { state: RepoState; files: MetadataFile[] } {
  const nowMs = ctx.now.getTime();
  const soon = (expires: string, role: keyof ExpiryMs) =>
    Date.parse(expires) - nowMs < ctx.opts.renewBeforeMs[role];

  const targets = soon(state.targets.md.signed.expires, 'targets')
    ? resignTargets(
        'targets',
        state.targets,
        expiresAt(ctx.now, ctx.opts.expiryMs.targets),
        ctx.online.targets,
      )
    : undefined;
  const bins = new Map<string, SignedRole<Targets>>();
  const binExpires = expiresAt(ctx.now, ctx.opts.expiryMs.bins);
  for (const [name, bin] of state.bins) {
    if (soon(bin.md.signed.expires, 'bins'))
      bins.set(name, resignTargets(name, bin, binExpires, binsSigner(ctx.online)));
  }
  if (targets || bins.size || soon(state.snapshot.md.signed.expires, 'snapshot')) {
    return publish(state, ctx, { ...(targets ? { targets } : {}), bins });
  }
  if (opts.newTimestamp || soon(state.timestamp.md.signed.expires, 'timestamp')) {
    const timestamp = nextTimestamp(state, ctx, state.snapshot.file);
    return { state: { ...state, timestamp }, files: [timestamp.file] };
  }
  return { state, files: [] };
}

/**
 * True when the root expires within `renewBeforeMs.root`: the operator should renew it (`rotateRoot({})`).
 */
export function rootExpiresSoon(state: RepoState, ctx: StepContext): boolean {
  return Date.parse(state.root.md.signed.expires) - ctx.now.getTime() < ctx.opts.renewBeforeMs.root;
}
