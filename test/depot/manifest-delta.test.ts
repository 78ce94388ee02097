import { brEncode } from '../../src/wire/json-encoding.js';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { compress, delta } from '../../src/compress/zstd.js';
import { silentLogger } from '../../src/log.js';
import { TargetDeltaCache } from '../../src/serve/target-delta.js';
import { fetchTargetWithDelta } from '../../src/read/target-delta.js';
import { TARGET_DELTA_BASE_HEADER } from '../../src/wire/target-delta.js';
import { randomBytesSeeded, type Published, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';
import { useUpstreamDepots } from '../helpers/upstream-depots.js';

function answer(res: ServerResponse, bytes: Buffer, headers: Record<string, string>): true {
  res.writeHead(200, { 'content-length': String(bytes.length), ...headers });
  res.end(bytes);
  return true;
}

describe('depot sync: a manifest as a delta against the previous version the depot holds', () => {
  let up: Upstream;
  const depot = useUpstreamDepots((started) => (up = started));

  /** Version 1 of `name` synced, version 2 (a few 100-byte edits: a few chunk ids change) published. */
  async function twoVersions(name: string, seed: number) {
    const data = randomBytesSeeded(6_000_000, seed);
    const v1 = await up.publish(name, '1', data);
    const d = depot();
    up.requests.length = 0;
    await d.engine.sync();
    // No earlier version of this package: no delta asked for it.
    expect(deltaAsks(name)).toEqual([]);
    const v2data = Buffer.from(data);
    for (const at of [100_000, 3_000_000, 5_900_000]) randomBytesSeeded(100, at).copy(v2data, at);
    const v2 = await up.publish(name, '2', v2data);
    return { d, v1, v2 };
  }

  const deltaAsks = (pkg: string) =>
    up.requests.filter((r) => r.path.startsWith('/v1/targets-delta/') && r.path.endsWith(`.${pkg}@2.json`));
  const wholeAsks = (p: Published) => up.requests.filter((r) => r.path === `/v1/targets/${p.name}`);

  it('fetches the new manifest as a delta against the old one, in a small fraction of its bytes', async () => {
    const { d, v1, v2 } = await twoVersions('mdelta-a', 1);
    expect(v2.bytes.length).toBeGreaterThan(15_000);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(deltaAsks('mdelta-a').map((q) => q.path)).toEqual([`/v1/targets-delta/${v1.name}/${v2.name}`]);
    expect(wholeAsks(v2)).toEqual([]);
    expect(r.bytesByStep.manifests).toBeGreaterThan(0);
    expect(r.bytesByStep.manifests!).toBeLessThan(v2.bytes.length / 10);
    expect(d.db.targetBytes(v2.name)!.equals(v2.bytes)).toBe(true);
    await expectServedComplete(d);
  });

  it('a new depot fetches one version of a package whole, then the others as deltas against it', async () => {
    const data = randomBytesSeeded(6_000_000, 20);
    const v1 = await up.publish('mdelta-fresh', '1', data);
    const v2data = Buffer.from(data);
    randomBytesSeeded(100, 21).copy(v2data, 3_000_000);
    const v2 = await up.publish('mdelta-fresh', '2', v2data);
    up.requests.length = 0;
    const d = depot();
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(deltaAsks('mdelta-fresh').map((q) => q.path)).toEqual([`/v1/targets-delta/${v1.name}/${v2.name}`]);
    expect(wholeAsks(v1)).toHaveLength(1);
    expect(wholeAsks(v2)).toEqual([]);
    expect(d.db.targetBytes(v2.name)!.equals(v2.bytes)).toBe(true);
  });

  /** A bad delta answer: the depot fetches the manifest whole, stores exactly the signed bytes, syncs. */
  async function fallsBack(
    name: string,
    seed: number,
    fault: (o: { v1: Published; v2: Published }, base: string, res: ServerResponse) => boolean,
  ) {
    const { d, v1, v2 } = await twoVersions(name, seed);
    up.faults.targetDelta = (base, _name, res) => fault({ v1, v2 }, base, res);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(deltaAsks(name)).toHaveLength(1);
    expect(wholeAsks(v2)).toHaveLength(1);
    // The bad answer plus the whole manifest, which came brotli-compressed (counted as it came).
    expect(r.bytesByStep.manifests!).toBeGreaterThanOrEqual(brEncode(v2.bytes).length);
    expect(d.db.targetBytes(v2.name)!.equals(v2.bytes)).toBe(true);
    await expectServedComplete(d);
  }

  it('a delta that decodes to other bytes (a valid frame of an altered manifest) → fetched whole', async () => {
    await fallsBack('mdelta-wrong', 2, ({ v1, v2 }, base, res) => {
      const altered = Buffer.from(v2.bytes);
      altered[altered.length - 10] ^= 1;
      return answer(res, delta(v1.bytes, altered), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: base,
      });
    });
  });

  it('a bomb (a small frame of far more than the signed length) → refused at the cap, fetched whole', async () => {
    await fallsBack('mdelta-bomb', 3, ({ v2 }, base, res) =>
      answer(res, compress(Buffer.alloc(v2.bytes.length * 50)), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: base,
      }),
    );
  });

  it('a truncated delta → fetched whole', async () => {
    await fallsBack('mdelta-cut', 4, ({ v1, v2 }, base, res) => {
      const d = delta(v1.bytes, v2.bytes);
      return answer(res, d.subarray(0, Math.floor(d.length / 2)), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: base,
      });
    });
  });

  it('an answer longer than the signed manifest (endless data) → cut at the cap, fetched whole', async () => {
    await fallsBack('mdelta-long', 5, ({ v2 }, base, res) =>
      answer(res, randomBytesSeeded(v2.bytes.length + 1000, 5), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: base,
      }),
    );
  });

  it('a delta against a base the depot does not hold (another base named) → refused, fetched whole', async () => {
    await fallsBack('mdelta-otherbase', 6, ({ v2 }, _base, res) => {
      const other = randomBytesSeeded(50_000, 6);
      return answer(res, delta(other, v2.bytes), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: `${'0'.repeat(64)}.other@1.json`,
      });
    });
  });

  it('a delta made against other bytes than the base (checksum fails) → fetched whole', async () => {
    await fallsBack('mdelta-wrongbase', 7, ({ v1, v2 }, base, res) => {
      // The depot's base with 1000 bytes after it: every match of the frame points 1000 bytes off.
      const other = Buffer.concat([v1.bytes, randomBytesSeeded(1000, 7)]);
      return answer(res, delta(other, v2.bytes), {
        'content-type': 'application/zstd',
        [TARGET_DELTA_BASE_HEADER]: base,
      });
    });
  });

  it('the upstream does not hold the base (404) → fetched whole, no error', async () => {
    const { d, v1, v2 } = await twoVersions('mdelta-nobase', 8);
    up.faults.missingTargets.add(v1.name);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(deltaAsks('mdelta-nobase')).toHaveLength(1);
    expect(wholeAsks(v2)).toHaveLength(1);
    expect(d.db.targetBytes(v2.name)!.equals(v2.bytes)).toBe(true);
  });

  it('a failed delta, then the whole manifest missing upstream → the sync fails, nothing stored', async () => {
    const { d, v2 } = await twoVersions('mdelta-bothbad', 9);
    up.faults.targetDelta = (_base, _name, res) =>
      answer(res, Buffer.from('x'), { 'content-type': 'application/zstd' });
    up.faults.missingTargets.add(v2.name);
    await expect(d.engine.sync()).rejects.toMatchObject({ code: 'not-found' });
    expect(d.db.targetBytes(v2.name)).toBeUndefined();
  });
});

describe('manifest deltas: the server side and the client check', () => {
  it('a delta that is not smaller than the target is not sent: the answer is the target whole', () => {
    const cache = new TargetDeltaCache();
    const base = randomBytesSeeded(10_000, 1);
    const target = randomBytesSeeded(10_000, 2);
    const a = cache.answer('b', base, 't', target);
    expect(a.kind).toBe('full');
    expect(a.bytes).toBe(target);
    const near = Buffer.concat([base.subarray(0, 5000), Buffer.from('edit'), base.subarray(5000)]);
    const d = cache.answer('b', base, 'n', near);
    expect(d.kind).toBe('delta');
    expect(d.bytes.length).toBeLessThan(200);
    // Cached: the same frame again.
    expect(cache.answer('b', base, 'n', near).bytes).toBe(d.bytes);
  });

  it('fetchTargetWithDelta returns only bytes of the signed length and SHA-256, or what `full` gives', async () => {
    const { createHash } = await import('node:crypto');
    const base = randomBytesSeeded(20_000, 3);
    const target = Buffer.concat([base.subarray(0, 7000), Buffer.from('new'), base.subarray(7000)]);
    const t = {
      name: `${createHash('sha256').update(target).digest('hex')}.p@2.json`,
      length: target.length,
      sha256: createHash('sha256').update(target).digest('hex'),
    };
    const log = silentLogger();
    const good = await fetchTargetWithDelta(
      t,
      { name: 'b', bytes: base },
      async () => ({ kind: 'delta', bytes: delta(base, target) }),
      async () => {
        throw new Error('not called');
      },
      'manifest p@2',
      log,
    );
    expect(good.viaDelta).toBe(true);
    expect(good.bytes.equals(target)).toBe(true);
    expect(good.wireBytes).toBeLessThan(200);
    // A whole answer of other bytes: refused, then `full`.
    const fb = await fetchTargetWithDelta(
      t,
      { name: 'b', bytes: base },
      async () => ({ kind: 'full', bytes: Buffer.alloc(target.length) }),
      async () => target,
      'manifest p@2',
      log,
    );
    expect(fb.viaDelta).toBe(false);
    expect(fb.wireBytes).toBe(2 * target.length);
    // The very file held already (its served name): nothing fetched; a held copy that differs: `full`.
    const none = async () => {
      throw new Error('not called');
    };
    const held = await fetchTargetWithDelta(t, { name: t.name, bytes: target }, none, none, 'm', log);
    expect(held).toMatchObject({ wireBytes: 0, viaDelta: false });
    expect(held.bytes.equals(target)).toBe(true);
    const damaged = Buffer.from(target);
    damaged[0] ^= 1;
    const refetched = await fetchTargetWithDelta(
      t,
      { name: t.name, bytes: damaged },
      none,
      async () => target,
      'm',
      log,
    );
    expect(refetched.bytes.equals(target)).toBe(true);
    expect(refetched.wireBytes).toBe(target.length);
  });
});
