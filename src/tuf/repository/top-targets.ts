import { Metadata, Targets, type TargetFile } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { own, put } from '../codec.js';
import { checkTargetPath } from '../paths.js';
import { expiresAt } from './build.js';
import { signed, type RepoState, type SignedRole, type StepContext } from './state.js';
import { toTargetFile, type TargetChange } from './targets.js';

/**
 * Targets listed by targets.json itself rather than by a hashed bin: a few small, repository-wide
 * documents (the depot directory, `depots.json`). Clients look a path up in targets.json first, so
 * such a path must never be one a package could take (package targets are `{name}@{version}.json`
 * and live in the bins: a path with `@` is refused here). Each change is a new targets.json
 * (version + 1, the same delegations), then a new snapshot and timestamp.
 */
export function applyTopTargetChange(
  state: RepoState,
  ctx: StepContext,
  change: TargetChange,
): SignedRole<Targets> | undefined {
  const path = checkTargetPath(change.path);
  if (path.includes('@')) {
    throw new DepotsyncError(
      'bad-input',
      `top-level target ${JSON.stringify(path)}: a path with "@" is a package target and belongs in a bin`,
    );
  }
  const t = state.targets.md.signed;
  const record: Record<string, TargetFile> = {};
  for (const [p, f] of Object.entries(t.targets)) put(record, p, f);
  if ('remove' in change) {
    if (!own(record, path))
      throw new DepotsyncError(
        'not-found',
        `top-level target ${JSON.stringify(path)} is not in targets.json`,
      );
    delete record[path];
  } else {
    const file = toTargetFile(path, change.target);
    if (own(record, path)?.equals(file)) return undefined;
    put(record, path, file);
  }
  const md = new Metadata(
    new Targets({
      version: t.version + 1,
      specVersion: t.specVersion,
      expires: expiresAt(ctx.now, ctx.opts.expiryMs.targets),
      targets: record,
      ...(t.delegations ? { delegations: t.delegations } : {}),
    }),
  );
  return signed('targets', md, [ctx.online.targets]);
}
