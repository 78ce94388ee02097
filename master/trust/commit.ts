import { transaction } from '../db/database.js';
import type { MetadataFile } from '../../src/tuf/repository.js';
import type { MasterContext } from '../context.js';
import { commitGeneration } from '../db/commit.js';

/**
 * Commit the files of one or more repository steps (each ending with its snapshot and timestamp), one
 * generation per step, all in one transaction: a key change lands whole or not at all.
 */
export async function commitSteps(
  ctx: Pick<MasterContext, 'db'>,
  steps: readonly MetadataFile[][],
  o: { createdBy: string; note: string },
): Promise<number> {
  return transaction(ctx.db, async () => {
    let generation = 0;
    for (const files of steps) {
      const snapshot = files.find((f) => f.role === 'snapshot');
      const timestamp = files.find((f) => f.role === 'timestamp');
      if (!snapshot) throw new Error('internal: a key change step without a new snapshot');
      const committed = await commitGeneration(ctx.db, {
        generation: snapshot.version,
        createdBy: o.createdBy,
        note: o.note,
        ...(timestamp ? { timestampVersion: timestamp.version } : {}),
        bins: files
          .filter((f) => f.role.startsWith('bin-'))
          .map((f) => ({ name: f.role, version: f.version })),
        metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
      });
      generation = committed.generation.generation;
    }
    return generation;
  });
}
