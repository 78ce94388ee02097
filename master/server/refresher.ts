import { transaction } from '../db/database.js';
import { isDepotsyncError } from '../../src/errors.js';
import { verifyRevocationList } from '../../src/wire/revocations.js';
import type { MasterContext } from '../context.js';
import { commitGeneration } from '../db/commit.js';
import { currentGeneration, putMetadataFile, setGenerationTimestampVersion } from '../db/catalog.js';
import { loadRepository } from '../repository.js';
import { publishRevocationList, readRevocationList } from '../revocations.js';
import { renewRootIfDue } from '../trust/rotate.js';

/**
 * Freshness (docs/architecture.md): clients refuse expired metadata (freeze protection), so the
 * master re-signs what nears its expiry even when nobody publishes: the timestamp once less than
 * `timestampRefreshHours` remain, snapshot/targets/bins the same way (a new generation with no catalog
 * change), and the signed revocation list once less than half its validity remains.
 */
export interface RefreshOutcome {
  /** Names of metadata files re-signed ([] when nothing was due). */
  metadata: string[];
  /** New generation when the snapshot was re-signed. */
  generation?: number;
  revocationListVersion?: number;
  /** New root version when the root was renewed. */
  rootVersion?: number;
}

export async function refreshOnce(
  ctx: MasterContext,
  now: () => Date = ctx.db.now,
  opts: { newTimestamp?: boolean } = {},
): Promise<RefreshOutcome> {
  const out: RefreshOutcome = { metadata: [] };
  // The root first, while its keys are on the master (trust/rotate.ts); otherwise alerts ask for it.
  const rootVersion = await renewRootIfDue(ctx, now);
  if (rootVersion !== undefined) out.rootVersion = rootVersion;
  for (let attempt = 1; ; attempt++) {
    const repo = await loadRepository(ctx, now);
    const files = repo.refresh(attempt === 1 ? opts : {});
    if (files.length === 0) break;
    try {
      const timestamp = files.find((f) => f.role === 'timestamp');
      if (files.some((f) => f.role === 'snapshot')) {
        const c = await commitGeneration(ctx.db, {
          generation: repo.generation,
          createdBy: 'system',
          note: 'expiring metadata re-signed',
          ...(timestamp ? { timestampVersion: timestamp.version } : {}),
          bins: files
            .filter((f) => f.role.startsWith('bin-'))
            .map((f) => ({ name: f.role, version: f.version })),
          metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
        });
        out.generation = c.generation.generation;
      } else if (timestamp) {
        await transaction(ctx.db, async () => {
          if (ctx.db.fence) await ctx.db.fence();
          const generation = await currentGeneration(ctx.db);
          await putMetadataFile(ctx.db, {
            role: 'timestamp',
            version: timestamp.version,
            bytes: timestamp.bytes,
            generation,
          });
          await setGenerationTimestampVersion(ctx.db, generation, timestamp.version);
        });
      }
      out.metadata = files.map((f) => f.name);
      ctx.log.info({ files: out.metadata, generation: out.generation }, 'expiring metadata re-signed');
      break;
    } catch (e) {
      // A publish committed in between (generation taken, or a newer timestamp stored): start again from it.
      if ((isDepotsyncError(e, 'conflict') || isDepotsyncError(e, 'version-rollback')) && attempt < 3)
        continue;
      throw e;
    }
  }

  const current = readRevocationList(ctx.layout);
  const list = current ? verifyRevocationList(current, ctx.ca.certPem, { now: new Date(0) }) : undefined;
  const halfLifeMs = (ctx.config.revocationListExpiryDays * 86_400_000) / 2;
  if (!list || list.expires.getTime() - now().getTime() < halfLifeMs) {
    await publishRevocationList(ctx);
    const fresh = readRevocationList(ctx.layout);
    if (fresh)
      out.revocationListVersion = verifyRevocationList(fresh, ctx.ca.certPem, { now: new Date(0) }).version;
  }
  return out;
}

/** Run `refreshOnce` every `intervalMs` (unref'd: it never keeps the process alive). */
export function startRefresher(
  ctx: MasterContext,
  opts: { intervalMs: number; now?: () => Date },
): {
  stop(): Promise<void>;
  runNow(o?: { newTimestamp?: boolean }): Promise<RefreshOutcome | undefined>;
} {
  const log = ctx.log.child({ component: 'master.refresh' });
  let running: Promise<RefreshOutcome | undefined> | undefined;
  const run = (o: { newTimestamp?: boolean } = {}): Promise<RefreshOutcome | undefined> => {
    running ??= refreshOnce(ctx, opts.now, o)
      .catch((e: unknown) => {
        log.error({ err: (e as Error).message }, 'metadata refresh failed; will retry');
        return undefined;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void run(), opts.intervalMs);
  timer.unref();
  return {
    /** Stop the schedule and wait for a refresh in flight (so the caller can close the database). */
    async stop() {
      clearInterval(timer);
      await running;
    },
    runNow: (o) => run(o),
  };
}
