import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transaction } from '../../../master/db/database.js';
import {
  addVersion,
  changesSince,
  createGeneration,
  currentGeneration,
  findVersion,
  getGeneration,
  getManifest,
  getManifestBySha256,
  isChunkLive,
  liveChunkIds,
  liveVersions,
  manifestChunkIds,
  putManifest,
  removeVersion,
  versionHistory,
  type NewVersion,
} from '../../../master/db/catalog.js';
import { commitGeneration } from '../../../master/db/commit.js';
import type { MasterDb } from '../../../master/db/database.js';
import { caught, hexId, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

const chunk = (n: number) => hexId(`chunk ${n}`);

/** Store a manifest for name@version referencing the given chunks; returns the NewVersion to add. */
async function manifestFor(name: string, version: string, chunks: number[]): Promise<NewVersion> {
  const bytes = Buffer.from(JSON.stringify({ name, version, chunks }));
  const id = hexId(bytes.toString());
  await putManifest(m, { id, bytes, chunkIds: chunks.map(chunk) });
  return {
    name,
    version,
    manifestId: id,
    targetPath: `${name}/${version}.manifest.json`,
    bin: 'bin-0',
    totalBytes: 100 * chunks.length,
    createdBy: 'alice',
  };
}

async function publish(name: string, version: string, chunks: number[]): Promise<number> {
  return transaction(m, async () => {
    const v = await manifestFor(name, version, chunks);
    const g = await createGeneration(m, { createdBy: 'alice', note: `publish ${name}@${version}` });
    await addVersion(m, g.generation, v);
    return g.generation;
  });
}

async function unpublish(name: string, version: string): Promise<number> {
  return transaction(m, async () => {
    const g = await createGeneration(m, { createdBy: 'alice' });
    await removeVersion(m, g.generation, name, version);
    return g.generation;
  });
}

describe('generations and versions', () => {
  it('publishes, finds, lists and unpublishes versions, recording every change', async () => {
    expect(await currentGeneration(m)).toBe(0);
    expect(await publish('app', '1.0', [1, 2])).toBe(1);
    expect(await publish('app', '2.0', [2, 3])).toBe(2);
    expect(await publish('tool', '1', [4])).toBe(3);
    expect(await currentGeneration(m)).toBe(3);
    expect(await getGeneration(m, 1)).toMatchObject({
      generation: 1,
      createdBy: 'alice',
      note: 'publish app@1.0',
      createdAt: '2030-01-01T00:00:00.000Z',
    });

    const v1 = await findVersion(m, 'app', '1.0');
    expect(v1).toMatchObject({
      name: 'app',
      version: '1.0',
      addedGeneration: 1,
      totalBytes: 200,
      chunkCount: 2,
      bin: 'bin-0',
    });
    expect(v1?.removedGeneration).toBeUndefined();
    expect(v1?.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(v1?.manifestLength).toBe((await getManifest(m, v1!.manifestId))?.length);
    expect((await findVersion(m, 'app'))?.version).toBe('2.0');
    expect(await findVersion(m, 'nope')).toBeUndefined();
    expect((await liveVersions(m)).map((v) => `${v.name}@${v.version}`)).toEqual([
      'app@1.0',
      'app@2.0',
      'tool@1',
    ]);
    expect(await liveVersions(m, { name: 'tool' })).toHaveLength(1);

    expect(await unpublish('app', '2.0')).toBe(4);
    expect(await findVersion(m, 'app', '2.0')).toBeUndefined();
    expect((await findVersion(m, 'app'))?.version).toBe('1.0');
    expect(await changesSince(m, 2)).toEqual([
      {
        generation: 3,
        kind: 'add',
        name: 'tool',
        version: '1',
        manifestId: (await findVersion(m, 'tool'))!.manifestId,
      },
      {
        generation: 4,
        kind: 'remove',
        name: 'app',
        version: '2.0',
        manifestId: (await versionHistory(m, 'app'))[1]!.manifestId,
      },
    ]);
    expect(await changesSince(m, 4)).toEqual([]);
  });

  it('republishing an unpublished version makes a new row and keeps the history', async () => {
    await publish('app', '1.0', [1]);
    await unpublish('app', '1.0');
    await publish('app', '1.0', [1, 2]);
    const history = await versionHistory(m, 'app');
    expect(history.map((v) => [v.addedGeneration, v.removedGeneration])).toEqual([
      [1, 2],
      [3, undefined],
    ]);
    expect((await findVersion(m, 'app', '1.0'))?.addedGeneration).toBe(3);
  });

  it('refuses a second live copy of name@version, and unpublishing what is not live', async () => {
    await publish('app', '1.0', [1]);
    const dup = await caught(async () => await publish('app', '1.0', [9]));
    expect(dup.code).toBe('already-exists');
    expect(dup.message).toBe('app@1.0 is already published (generation 1)');
    expect((await caught(async () => await unpublish('app', '9'))).code).toBe('not-found');
    // Both attempts rolled back their generation.
    expect(await currentGeneration(m)).toBe(1);
  });

  it('commits a generation atomically: a throw inside the transaction persists nothing', async () => {
    await publish('app', '1.0', [1]);
    await expect(
      transaction(m, async () => {
        const v = await manifestFor('app', '2.0', [2]);
        const g = await createGeneration(m, { createdBy: 'alice' });
        await addVersion(m, g.generation, v);
        await removeVersion(m, g.generation, 'app', '1.0');
        throw new Error('signing failed');
      }),
    ).rejects.toThrow('signing failed');
    await t.reopen();
    m = t.m;
    expect(await currentGeneration(m)).toBe(1);
    expect((await liveVersions(m)).map((v) => v.version)).toEqual(['1.0']);
    expect(await changesSince(m, 0)).toHaveLength(1);
    expect(await m.sql.get('SELECT count(*) AS n FROM manifests')).toEqual({ n: 1 });
    expect(await m.sql.get('SELECT count(*) AS n FROM package_versions')).toEqual({ n: 1 });
  });

  it('guards generations: inside a transaction, the newest one, compare-and-set, not after signing', async () => {
    const v = await manifestFor('app', '1.0', [1]);
    expect((await caught(async () => await createGeneration(m, { createdBy: 'alice' }))).message).toMatch(
      /must run inside transaction/,
    );
    expect(
      (
        await caught(() =>
          transaction(m, async () => await createGeneration(m, { createdBy: 'a', generation: 5 })),
        )
      ).code,
    ).toBe('conflict');
    await publish('x', '1', [7]);
    const stale = await caught(() => transaction(m, async () => await addVersion(m, 0, v)));
    expect(stale.code).toBe('conflict');
    expect(stale.message).toMatch(/generation 0 is not the newest \(1\)/);
    await transaction(m, async () => {
      const g = await createGeneration(m, { createdBy: 'alice', generation: 2 });
      await addVersion(m, g.generation, v);
      await m.sql.run(
        "INSERT INTO metadata_files (name, role, version, bytes, sha256, length, generation, created_at) VALUES ('2.snapshot.json', 'snapshot', 2, ?, 'h', 1, 2, 'now')",
        [Buffer.from([0])],
      );
    });
    const late = await caught(() => transaction(m, async () => await removeVersion(m, 2, 'app', '1.0')));
    expect(late.message).toMatch(/generation 2 is already signed/);
  });

  it('refuses a version whose manifest is not stored', async () => {
    const e = await caught(() =>
      transaction(m, async () => {
        const g = await createGeneration(m, { createdBy: 'a' });
        await addVersion(m, g.generation, {
          name: 'a',
          version: '1',
          manifestId: hexId('missing'),
          targetPath: 'a/1',
          bin: 'bin-0',
          totalBytes: 1,
          createdBy: 'a',
        });
      }),
    );
    expect(e.code).toBe('not-found');
  });
});

describe('manifests', () => {
  it('stores idempotently, finds by SHA-256, and refuses different bytes under the same id', async () => {
    const bytes = Buffer.from('{"manifest":1}');
    const id = hexId('m1');
    const a = await putManifest(m, { id, bytes, chunkIds: [chunk(2), chunk(1), chunk(2)] });
    expect(a.chunkCount).toBe(2);
    expect(await putManifest(m, { id, bytes, chunkIds: [] })).toEqual(a);
    expect((await getManifestBySha256(m, a.sha256))?.bytes.equals(bytes)).toBe(true);
    expect(await manifestChunkIds(m, id)).toEqual([chunk(1), chunk(2)].sort());
    expect(
      (await caught(async () => await putManifest(m, { id, bytes: Buffer.from('other'), chunkIds: [] })))
        .code,
    ).toBe('conflict');
    expect(
      (await caught(async () => await putManifest(m, { id: 'ABC', bytes, chunkIds: [] }))).message,
    ).toMatch(/manifest id must be 64 lowercase hex/);
  });
});

async function collect(ids: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const id of ids) out.push(id);
  return out;
}

describe('liveChunkIds', () => {
  it("drops an unpublished version's chunks only when no live manifest shares them", async () => {
    await publish('app', '1.0', [1, 2, 3]);
    await publish('app', '2.0', [3, 4]);
    await publish('tool', '1', [2]);
    const all = [1, 2, 3, 4].map(chunk).sort();
    expect(await collect(liveChunkIds(m))).toEqual(all);
    const removedAt = await unpublish('app', '1.0');
    // 1 was only in app@1.0; 2 is shared with tool@1, 3 with app@2.0.
    expect(await collect(liveChunkIds(m))).toEqual([2, 3, 4].map(chunk).sort());
    expect(await isChunkLive(m, chunk(1))).toBe(false);
    expect(await isChunkLive(m, chunk(2))).toBe(true);
    // A grace period keeps chunks of versions removed after the given generation.
    expect(await collect(liveChunkIds(m, { retainSinceGeneration: removedAt - 1 }))).toEqual(all);
    expect(await isChunkLive(m, chunk(1), { retainSinceGeneration: removedAt - 1 })).toBe(true);
    expect(await collect(liveChunkIds(m, { retainSinceGeneration: removedAt }))).toEqual(
      [2, 3, 4].map(chunk).sort(),
    );
    // A manifest stored without a version (an uncommitted publish) keeps nothing alive.
    await putManifest(m, { id: hexId('orphan'), bytes: Buffer.from('orphan'), chunkIds: [chunk(9)] });
    expect(await isChunkLive(m, chunk(9))).toBe(false);
  });

  it('pages through many ids in order without holding the connection between pages', async () => {
    const n = 2_500;
    await publish(
      'big',
      '1',
      Array.from({ length: n }, (_, i) => i),
    );
    await publish(
      'big',
      '2',
      Array.from({ length: n }, (_, i) => i + n / 2),
    );
    const seen: string[] = [];
    for await (const id of liveChunkIds(m, { pageSize: 97 })) {
      seen.push(id);
      // Other statements run fine mid-walk (a single iterate() would make this throw "connection is busy").
      if (seen.length % 500 === 0) expect(await currentGeneration(m)).toBe(2);
    }
    expect(seen).toHaveLength(n + n / 2);
    expect(seen).toEqual([...seen].sort());
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe('commitGeneration', () => {
  it('commits manifests, changes, bins and metadata together, or nothing', async () => {
    const bytes = Buffer.from('{"m":"app 1"}');
    const id = hexId('app 1');
    const add = {
      name: 'app',
      version: '1',
      manifestId: id,
      targetPath: 'app/1',
      bin: 'bin-3a',
      totalBytes: 5,
    };
    const r = await commitGeneration(m, {
      generation: 1,
      createdBy: 'alice',
      manifests: [{ id, bytes, chunkIds: [chunk(1)] }],
      add: [add],
      bins: [{ name: 'bin-3a', version: 1 }],
      metadata: [
        { role: 'bin-3a', version: 1, bytes: Buffer.from('bin') },
        { role: 'snapshot', version: 1, bytes: Buffer.from('snap') },
        { role: 'timestamp', version: 1, bytes: Buffer.from('ts') },
      ],
    });
    expect(r.generation.generation).toBe(1);
    expect(r.added[0]).toMatchObject({ name: 'app', version: '1', createdBy: 'alice' });
    expect(r.metadata.map((f) => [f.name, f.generation])).toEqual([
      ['1.bin-3a.json', 1],
      ['1.snapshot.json', 1],
      ['timestamp.json', 1],
    ]);
    // Generation 2 fails at its last step (a timestamp rollback): nothing of it remains.
    const e = await caught(
      async () =>
        await commitGeneration(m, {
          createdBy: 'alice',
          manifests: [{ id: hexId('app 2'), bytes: Buffer.from('app 2'), chunkIds: [chunk(2)] }],
          remove: [{ name: 'app', version: '1' }],
          add: [{ ...add, version: '2', manifestId: hexId('app 2'), targetPath: 'app/2' }],
          bins: [{ name: 'bin-3a', version: 2 }],
          metadata: [
            { role: 'bin-3a', version: 2, bytes: Buffer.from('bin2') },
            { role: 'snapshot', version: 2, bytes: Buffer.from('snap2') },
            { role: 'timestamp', version: 1, bytes: Buffer.from('ts-other') },
          ],
        }),
    );
    expect(e.code).toBe('conflict');
    await t.reopen();
    m = t.m;
    expect(await currentGeneration(m)).toBe(1);
    expect((await liveVersions(m)).map((v) => v.version)).toEqual(['1']);
    expect(await getManifest(m, hexId('app 2'))).toBeUndefined();
    expect(await m.sql.all('SELECT name FROM metadata_files ORDER BY name')).toEqual([
      { name: '1.bin-3a.json' },
      { name: '1.snapshot.json' },
      { name: 'timestamp.json' },
    ]);
    expect(await m.sql.all('SELECT version FROM bins')).toEqual([{ version: 1 }]);
    // A racing publisher that built metadata for generation 1 loses cleanly.
    expect(
      (await caught(async () => await commitGeneration(m, { generation: 1, createdBy: 'bob' }))).message,
    ).toMatch(/the next generation is 2/);
  });

  it('can replace a version within one generation (remove then add)', async () => {
    await publish('app', '1', [1]);
    const v = await manifestFor('app', '1', [1, 2]);
    const r = await commitGeneration(m, {
      createdBy: 'alice',
      remove: [{ name: 'app', version: '1' }],
      add: [v],
    });
    expect(r.removed).toHaveLength(1);
    expect((await changesSince(m, 1)).map((c) => c.kind)).toEqual(['remove', 'add']);
    expect((await findVersion(m, 'app', '1'))?.manifestId).toBe(v.manifestId);
  });
});
