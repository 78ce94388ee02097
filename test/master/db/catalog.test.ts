import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transaction } from '../../../src/db/transaction.js';
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
beforeEach(() => {
  t = testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

const chunk = (n: number) => hexId(`chunk ${n}`);

/** Store a manifest for name@version referencing the given chunks; returns the NewVersion to add. */
function manifestFor(name: string, version: string, chunks: number[]): NewVersion {
  const bytes = Buffer.from(JSON.stringify({ name, version, chunks }));
  const id = hexId(bytes.toString());
  putManifest(m, { id, bytes, chunkIds: chunks.map(chunk) });
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

function publish(name: string, version: string, chunks: number[]): number {
  return transaction(m.db, () => {
    const v = manifestFor(name, version, chunks);
    const g = createGeneration(m, { createdBy: 'alice', note: `publish ${name}@${version}` });
    addVersion(m, g.generation, v);
    return g.generation;
  });
}

function unpublish(name: string, version: string): number {
  return transaction(m.db, () => {
    const g = createGeneration(m, { createdBy: 'alice' });
    removeVersion(m, g.generation, name, version);
    return g.generation;
  });
}

describe('generations and versions', () => {
  it('publishes, finds, lists and unpublishes versions, recording every change', () => {
    expect(currentGeneration(m)).toBe(0);
    expect(publish('app', '1.0', [1, 2])).toBe(1);
    expect(publish('app', '2.0', [2, 3])).toBe(2);
    expect(publish('tool', '1', [4])).toBe(3);
    expect(currentGeneration(m)).toBe(3);
    expect(getGeneration(m, 1)).toMatchObject({
      generation: 1,
      createdBy: 'alice',
      note: 'publish app@1.0',
      createdAt: '2030-01-01T00:00:00.000Z',
    });

    const v1 = findVersion(m, 'app', '1.0');
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
    expect(v1?.manifestLength).toBe(getManifest(m, v1!.manifestId)?.length);
    expect(findVersion(m, 'app')?.version).toBe('2.0');
    expect(findVersion(m, 'nope')).toBeUndefined();
    expect(liveVersions(m).map((v) => `${v.name}@${v.version}`)).toEqual(['app@1.0', 'app@2.0', 'tool@1']);
    expect(liveVersions(m, { name: 'tool' })).toHaveLength(1);

    expect(unpublish('app', '2.0')).toBe(4);
    expect(findVersion(m, 'app', '2.0')).toBeUndefined();
    expect(findVersion(m, 'app')?.version).toBe('1.0');
    expect(changesSince(m, 2)).toEqual([
      {
        generation: 3,
        kind: 'add',
        name: 'tool',
        version: '1',
        manifestId: findVersion(m, 'tool')!.manifestId,
      },
      {
        generation: 4,
        kind: 'remove',
        name: 'app',
        version: '2.0',
        manifestId: versionHistory(m, 'app')[1]!.manifestId,
      },
    ]);
    expect(changesSince(m, 4)).toEqual([]);
  });

  it('republishing an unpublished version makes a new row and keeps the history', () => {
    publish('app', '1.0', [1]);
    unpublish('app', '1.0');
    publish('app', '1.0', [1, 2]);
    const history = versionHistory(m, 'app');
    expect(history.map((v) => [v.addedGeneration, v.removedGeneration])).toEqual([
      [1, 2],
      [3, undefined],
    ]);
    expect(findVersion(m, 'app', '1.0')?.addedGeneration).toBe(3);
  });

  it('refuses a second live copy of name@version, and unpublishing what is not live', () => {
    publish('app', '1.0', [1]);
    const dup = caught(() => publish('app', '1.0', [9]));
    expect(dup.code).toBe('already-exists');
    expect(dup.message).toBe('app@1.0 is already published (generation 1)');
    expect(caught(() => unpublish('app', '9')).code).toBe('not-found');
    // Both attempts rolled back their generation.
    expect(currentGeneration(m)).toBe(1);
  });

  it('commits a generation atomically: a throw inside the transaction persists nothing', () => {
    publish('app', '1.0', [1]);
    expect(() =>
      transaction(m.db, () => {
        const v = manifestFor('app', '2.0', [2]);
        const g = createGeneration(m, { createdBy: 'alice' });
        addVersion(m, g.generation, v);
        removeVersion(m, g.generation, 'app', '1.0');
        throw new Error('signing failed');
      }),
    ).toThrow('signing failed');
    t.reopen();
    m = t.m;
    expect(currentGeneration(m)).toBe(1);
    expect(liveVersions(m).map((v) => v.version)).toEqual(['1.0']);
    expect(changesSince(m, 0)).toHaveLength(1);
    expect(m.db.prepare('SELECT count(*) AS n FROM manifests').get()).toEqual({ n: 1 });
    expect(m.db.prepare('SELECT count(*) AS n FROM package_versions').get()).toEqual({ n: 1 });
  });

  it('guards generations: inside a transaction, the newest one, compare-and-set, not after signing', () => {
    const v = manifestFor('app', '1.0', [1]);
    expect(caught(() => createGeneration(m, { createdBy: 'alice' })).message).toMatch(
      /must run inside transaction/,
    );
    expect(
      caught(() => transaction(m.db, () => createGeneration(m, { createdBy: 'a', generation: 5 }))).code,
    ).toBe('conflict');
    publish('x', '1', [7]);
    const stale = caught(() => transaction(m.db, () => addVersion(m, 0, v)));
    expect(stale.code).toBe('conflict');
    expect(stale.message).toMatch(/generation 0 is not the newest \(1\)/);
    transaction(m.db, () => {
      const g = createGeneration(m, { createdBy: 'alice', generation: 2 });
      addVersion(m, g.generation, v);
      m.db
        .prepare(
          "INSERT INTO metadata_files (name, role, version, bytes, sha256, length, generation, created_at) VALUES ('2.snapshot.json', 'snapshot', 2, x'00', 'h', 1, 2, 'now')",
        )
        .run();
    });
    const late = caught(() => transaction(m.db, () => removeVersion(m, 2, 'app', '1.0')));
    expect(late.message).toMatch(/generation 2 is already signed/);
  });

  it('refuses a version whose manifest is not stored', () => {
    const e = caught(() =>
      transaction(m.db, () => {
        const g = createGeneration(m, { createdBy: 'a' });
        addVersion(m, g.generation, {
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
  it('stores idempotently, finds by SHA-256, and refuses different bytes under the same id', () => {
    const bytes = Buffer.from('{"manifest":1}');
    const id = hexId('m1');
    const a = putManifest(m, { id, bytes, chunkIds: [chunk(2), chunk(1), chunk(2)] });
    expect(a.chunkCount).toBe(2);
    expect(putManifest(m, { id, bytes, chunkIds: [] })).toEqual(a);
    expect(getManifestBySha256(m, a.sha256)?.bytes.equals(bytes)).toBe(true);
    expect(manifestChunkIds(m, id)).toEqual([chunk(1), chunk(2)].sort());
    expect(caught(() => putManifest(m, { id, bytes: Buffer.from('other'), chunkIds: [] })).code).toBe(
      'conflict',
    );
    expect(caught(() => putManifest(m, { id: 'ABC', bytes, chunkIds: [] })).message).toMatch(
      /manifest id must be 64 lowercase hex/,
    );
  });
});

describe('liveChunkIds', () => {
  it("drops an unpublished version's chunks only when no live manifest shares them", () => {
    publish('app', '1.0', [1, 2, 3]);
    publish('app', '2.0', [3, 4]);
    publish('tool', '1', [2]);
    const all = [1, 2, 3, 4].map(chunk).sort();
    expect([...liveChunkIds(m)]).toEqual(all);
    const removedAt = unpublish('app', '1.0');
    // 1 was only in app@1.0; 2 is shared with tool@1, 3 with app@2.0.
    expect([...liveChunkIds(m)]).toEqual([2, 3, 4].map(chunk).sort());
    expect(isChunkLive(m, chunk(1))).toBe(false);
    expect(isChunkLive(m, chunk(2))).toBe(true);
    // A grace period keeps chunks of versions removed after the given generation.
    expect([...liveChunkIds(m, { retainSinceGeneration: removedAt - 1 })]).toEqual(all);
    expect(isChunkLive(m, chunk(1), { retainSinceGeneration: removedAt - 1 })).toBe(true);
    expect([...liveChunkIds(m, { retainSinceGeneration: removedAt })]).toEqual([2, 3, 4].map(chunk).sort());
    // A manifest stored without a version (an uncommitted publish) keeps nothing alive.
    putManifest(m, { id: hexId('orphan'), bytes: Buffer.from('orphan'), chunkIds: [chunk(9)] });
    expect(isChunkLive(m, chunk(9))).toBe(false);
  });

  it('pages through many ids in order without holding the connection between pages', () => {
    const n = 2_500;
    publish(
      'big',
      '1',
      Array.from({ length: n }, (_, i) => i),
    );
    publish(
      'big',
      '2',
      Array.from({ length: n }, (_, i) => i + n / 2),
    );
    const seen: string[] = [];
    for (const id of liveChunkIds(m, { pageSize: 97 })) {
      seen.push(id);
      // Other statements run fine mid-walk (a single iterate() would make this throw "connection is busy").
      if (seen.length % 500 === 0) expect(currentGeneration(m)).toBe(2);
    }
    expect(seen).toHaveLength(n + n / 2);
    expect(seen).toEqual([...seen].sort());
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe('commitGeneration', () => {
  it('commits manifests, changes, bins and metadata together, or nothing', () => {
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
    const r = commitGeneration(m, {
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
    const e = caught(() =>
      commitGeneration(m, {
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
    t.reopen();
    m = t.m;
    expect(currentGeneration(m)).toBe(1);
    expect(liveVersions(m).map((v) => v.version)).toEqual(['1']);
    expect(getManifest(m, hexId('app 2'))).toBeUndefined();
    expect(m.db.prepare('SELECT name FROM metadata_files ORDER BY name').all()).toEqual([
      { name: '1.bin-3a.json' },
      { name: '1.snapshot.json' },
      { name: 'timestamp.json' },
    ]);
    expect(m.db.prepare('SELECT version FROM bins').all()).toEqual([{ version: 1 }]);
    // A racing publisher that built metadata for generation 1 loses cleanly.
    expect(caught(() => commitGeneration(m, { generation: 1, createdBy: 'bob' })).message).toMatch(
      /the next generation is 2/,
    );
  });

  it('can replace a version within one generation (remove then add)', () => {
    publish('app', '1', [1]);
    const v = manifestFor('app', '1', [1, 2]);
    const r = commitGeneration(m, { createdBy: 'alice', remove: [{ name: 'app', version: '1' }], add: [v] });
    expect(r.removed).toHaveLength(1);
    expect(changesSince(m, 1).map((c) => c.kind)).toEqual(['remove', 'add']);
    expect(findVersion(m, 'app', '1')?.manifestId).toBe(v.manifestId);
  });
});
