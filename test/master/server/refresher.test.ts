import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { verifyRevocationList } from '../../../src/wire/revocations.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { currentGeneration, getGeneration, latestMetadata } from '../../../master/db/catalog.js';
import { initMaster } from '../../../master/init.js';
import { loadRepository } from '../../../master/repository.js';
import { readRevocationList } from '../../../master/revocations.js';
import { refreshOnce } from '../../../master/server/refresher.js';
import { tempDir } from '../../helpers/tmp.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('master metadata refresher', () => {
  const tmp = tempDir();
  let ctx: MasterContext;
  const start = Date.now();

  beforeAll(async () => {
    await initMaster(join(tmp.dir, 'M'), { log: silentLogger() });
    ctx = await openMaster(join(tmp.dir, 'M'), silentLogger());
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  const timestamp = async () =>
    JSON.parse((await latestMetadata(ctx.db, 'timestamp'))!.bytes.toString()).signed;

  it('does nothing while everything is fresh', async () => {
    const before = (await timestamp()).version;
    const out = await refreshOnce(ctx, () => new Date(start + HOUR));
    expect(out.metadata).toEqual([]);
    expect(out.revocationListVersion).toBeUndefined();
    expect((await timestamp()).version).toBe(before);
  });

  it('signs a new timestamp when asked although none is due (a master that just became the signer)', async () => {
    const gen = await currentGeneration(ctx.db);
    const before = (await timestamp()).version;
    const out = await refreshOnce(ctx, () => new Date(start + HOUR), { newTimestamp: true });
    expect(out.metadata).toEqual(['timestamp.json']);
    expect((await timestamp()).version).toBe(before + 1);
    expect(await currentGeneration(ctx.db)).toBe(gen);
  });

  it('re-signs only the timestamp well before it expires, keeping the generation', async () => {
    const gen = await currentGeneration(ctx.db);
    const before = await timestamp();
    const now = new Date(start + 13 * HOUR);
    const out = await refreshOnce(ctx, () => now);
    expect(out.metadata).toEqual(['timestamp.json']);
    expect(out.generation).toBeUndefined();
    const after = await timestamp();
    expect(after.version).toBe(before.version + 1);
    expect(Date.parse(after.expires)).toBeGreaterThan(now.getTime() + 23 * HOUR);
    expect(await currentGeneration(ctx.db)).toBe(gen);
    expect((await getGeneration(ctx.db, gen))?.timestampVersion).toBe(after.version);
    // The stored metadata still loads and verifies as a whole.
    expect((await loadRepository(ctx, () => now)).generation).toBe(gen);
  });

  it('re-signs the snapshot as a new generation, and the revocation list, when they near expiry', async () => {
    const gen = await currentGeneration(ctx.db);
    const now = new Date(start + 28 * DAY);
    const out = await refreshOnce(ctx, () => now);
    expect(out.generation).toBe(gen + 1);
    expect(out.metadata).toEqual(expect.arrayContaining([`${gen + 1}.snapshot.json`, 'timestamp.json']));
    expect((await latestMetadata(ctx.db, 'snapshot'))!.version).toBe(gen + 1);
    expect((await timestamp()).meta['snapshot.json'].version).toBe(gen + 1);
    expect(out.revocationListVersion).toBe(2);
    expect(
      verifyRevocationList(readRevocationList(ctx.layout)!, ctx.ca.certPem, { now: new Date() }).version,
    ).toBe(2);
    expect((await loadRepository(ctx, () => now)).generation).toBe(gen + 1);
  });
});
