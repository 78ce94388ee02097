import { validatePackageName, validateVersion } from '../../src/content/paths.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { recordAudit } from '../db/audit.js';
import { findVersion } from '../db/catalog.js';
import { commitGeneration } from '../db/commit.js';
import type { MasterContext } from '../context.js';
import { loadRepository } from '../repository.js';

/** Remove NAME@VERSION from the next generation; its chunks are collected later by GC. */
export async function unpublish(
  ctx: MasterContext,
  spec: string,
  actor: string,
): Promise<{ name: string; version: string; generation: number }> {
  const at = spec.lastIndexOf('@');
  if (at <= 0)
    throw new DepotsyncError('usage', `unpublish: expected NAME@VERSION, got ${JSON.stringify(spec)}`);
  const name = validatePackageName(spec.slice(0, at));
  const version = validateVersion(spec.slice(at + 1));
  for (let attempt = 1; ; attempt++) {
    const existing = await findVersion(ctx.db, name, version);
    if (!existing)
      throw new DepotsyncError('not-found', `${name}@${version} is not published`, {
        hint: 'list packages with: depotsync status --dir M',
      });
    const repo = await loadRepository(ctx);
    const metadata = repo.removeTarget(existing.targetPath);
    const timestamp = metadata.find((f) => f.role === 'timestamp');
    try {
      const c = await commitGeneration(ctx.db, {
        generation: repo.generation,
        createdBy: actor,
        note: `unpublish ${name}@${version}`,
        ...(timestamp ? { timestampVersion: timestamp.version } : {}),
        remove: [{ name, version }],
        bins: metadata
          .filter((f) => f.role.startsWith('bin-'))
          .map((f) => ({ name: f.role, version: f.version })),
        metadata: metadata.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
      });
      await recordAudit(ctx.db, {
        actor,
        action: 'unpublish',
        target: `${name}@${version}`,
        detail: { generation: c.generation.generation },
      });
      return { name, version, generation: c.generation.generation };
    } catch (e) {
      if (isDepotsyncError(e, 'conflict') && attempt < 5) continue;
      throw e;
    }
  }
}
