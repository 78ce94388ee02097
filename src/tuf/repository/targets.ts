import { canonicalize } from '../../content/canonical-json.js';
import { TargetFile, type Targets } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { put } from '../codec.js';
import { binFor } from '../hashbins.js';
import { checkTargetPath } from '../paths.js';
import { targetInfoOf, type TargetInfo } from '../target-info.js';

export { targetInfoOf, type TargetInfo };
import { buildBin, expiresAt } from './build.js';
import { binsSigner, signed, type RepoState, type SignedRole, type StepContext } from './state.js';

/** A target as the publisher describes it: the file's length and SHA-256, and free JSON in `custom`. */
export interface TargetInput {
  length: number;
  sha256: string;
  custom?: Record<string, unknown>;
}

export type TargetChange = { path: string; target: TargetInput } | { path: string; remove: true };

export function toTargetFile(path: string, input: TargetInput): TargetFile {
  const where = `target ${JSON.stringify(path)}`;
  if (!Number.isSafeInteger(input.length) || input.length < 0) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: length must be a non-negative integer, got ${JSON.stringify(input.length)}`,
    );
  }
  if (typeof input.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(input.sha256)) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: sha256 must be 64 lowercase hex digits, got ${JSON.stringify(input.sha256)}`,
    );
  }
  const custom = input.custom ?? {};
  if (typeof custom !== 'object' || custom === null || Array.isArray(custom)) {
    throw new DepotsyncError('bad-input', `${where}: custom must be a JSON object`);
  }
  try {
    canonicalize(custom); // signed metadata is canonical JSON: no floats, no undefined
    JSON.stringify(custom);
  } catch (e) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: custom must be canonical JSON (strings, integers, booleans, null, arrays, objects)`,
      { cause: e },
    );
  }
  return new TargetFile({
    path,
    length: input.length,
    hashes: { sha256: input.sha256 },
    unrecognizedFields: { custom: structuredClone(custom) as never },
  });
}

/**
 * Apply a batch of target changes: everything is validated before anything is signed, then each
 * touched bin is re-signed once with version + 1. Unchanged targets leave their bin alone.
 */
export function applyTargetChanges(
  state: RepoState,
  ctx: StepContext,
  changes: readonly TargetChange[],
): Map<string, SignedRole<Targets>> {
  const perBin = new Map<string, Map<string, TargetFile>>();
  const dirty = new Set<string>();
  for (const change of changes) {
    const path = checkTargetPath(change.path);
    const name = binFor(path, state.binCount);
    const current = state.bins.get(name);
    if (!current)
      throw new DepotsyncError(
        'internal',
        `tuf repository: bin ${name} for ${JSON.stringify(path)} does not exist`,
      );
    let targets = perBin.get(name);
    if (!targets) {
      targets = new Map(Object.entries(current.md.signed.targets));
      perBin.set(name, targets);
    }
    if ('remove' in change) {
      if (!targets.delete(path)) {
        throw new DepotsyncError('not-found', `target ${JSON.stringify(path)} is not in the catalog`, {
          hint: 'list the published targets and check the name',
        });
      }
      dirty.add(name);
    } else {
      const file = toTargetFile(path, change.target);
      if (!targets.get(path)?.equals(file)) {
        targets.set(path, file);
        dirty.add(name);
      }
    }
  }
  const out = new Map<string, SignedRole<Targets>>();
  const expires = expiresAt(ctx.now, ctx.opts.expiryMs.bins);
  for (const name of dirty) {
    const version = (state.bins.get(name)?.md.signed.version ?? 0) + 1;
    const record: Record<string, TargetFile> = {};
    for (const [path, file] of perBin.get(name) ?? []) put(record, path, file);
    out.set(name, signed(name, buildBin(version, expires, record), [binsSigner(ctx.online)]));
  }
  return out;
}
