import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { generateKeyPair } from '../../src/tuf/keys.js';
import { randomBytesSeeded, startUpstream, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';
import { useUpstreamDepots } from '../helpers/upstream-depots.js';

describe('depot sync engine against a fake master over mutual TLS', () => {
  let up: Upstream;
  const depot = useUpstreamDepots((started) => (up = started));

  it('full sync, then a delta sync moves only the new chunks, then a no-op sync fetches no content', async () => {
    const a = await up.publish('alpha', '1.0', randomBytesSeeded(600_000, 1));
    const d = depot();
    const first = await d.engine.sync();
    expect(first.generation).toBe(up.repo.generation);
    expect(first.switched).toBe(true);
    expect(first.chunksFetched).toBe(a.chunkIds.length);
    expect(await expectServedComplete(d)).toBe(a.chunkIds.length);

    // A new version sharing most content: an edit in the middle.
    const v2 = randomBytesSeeded(600_000, 1);
    v2.fill(7, 300_000, 310_000);
    const b = await up.publish('alpha', '1.1', v2);
    const newIds = b.chunkIds.filter((id) => !a.chunkIds.includes(id));
    up.requests.length = 0;
    const second = await d.engine.sync();
    expect(second.generation).toBe(up.repo.generation);
    expect(second.chunksFetched).toBe(newIds.length);
    // Whole, or as deltas against the chunks they replace (chunk-delta.test.ts).
    const asked = up.requests.flatMap((r) => r.ids ?? r.pairs?.map((p) => p.target) ?? []);
    expect(asked.sort()).toEqual([...newIds].sort());
    expect(second.bytesFetched).toBeLessThan(first.bytesFetched);
    await expectServedComplete(d);

    up.requests.length = 0;
    const third = await d.engine.sync();
    expect(third).toMatchObject({ generation: second.generation, chunksFetched: 0, switched: false });
    // TUF's update checks for a next root first, then the timestamp: the timestamp comes first, and its
    // hint (the upstream's newest root is 1) answers the root question without a request. This
    // upstream has no revocation list yet, so the depot asks for one.
    expect(up.requests.map((r) => r.path)).toEqual(['/v1/metadata/timestamp.json', '/v1/revocations.json']);
    // With a revocation list the depot already holds (the hint carries its SHA-256): one request.
    up.revoke([]);
    await d.engine.sync();
    up.requests.length = 0;
    expect(await d.engine.sync()).toMatchObject({
      generation: second.generation,
      chunksFetched: 0,
      switched: false,
    });
    expect(up.requests.map((r) => r.path)).toEqual(['/v1/metadata/timestamp.json']);
    // Status went to the master under the depot's certificate name.
    const last = up.reports.at(-1)!;
    expect(last.machine).toBe('depot-1');
    expect(last.report.servedGeneration).toBe(second.generation);
  });

  it('follows a root rotation that the timestamp hint announces, then is back to one request', async () => {
    // An upstream of its own: the rotation must not change the root other tests' depots walk.
    const up2 = await startUpstream();
    const d = depot({ upstream: up2, name: 'depot-rot' });
    try {
      await up2.publish('rot', '1.0', randomBytesSeeded(100_000, 9));
      up2.revoke([]);
      await d.engine.sync();
      // Root 2 moves the timestamp role to a new key: a depot that skipped 2.root.json (a wrong hint
      // check) could not verify the new timestamp and the sync would fail.
      const ts2 = generateKeyPair();
      up2.putFiles(
        up2.repo.rotateRoot({ timestamp: ts2.publicKey }, [up2.keys.root.signer], { timestamp: ts2.signer }),
      );
      const p = await up2.publish('rot', '1.1', randomBytesSeeded(100_000, 10));
      up2.requests.length = 0;
      const r = await d.engine.sync();
      expect(r).toMatchObject({ generation: up2.repo.generation, switched: true });
      const paths = up2.requests.map((q) => q.path);
      // The timestamp first (its hint says root 2 exists), then root 2; root 3 is known absent, never asked.
      expect(paths.slice(0, 2)).toEqual(['/v1/metadata/timestamp.json', '/v1/metadata/2.root.json']);
      expect(paths).not.toContain('/v1/metadata/3.root.json');
      expect(d.db.latestRootVersion()).toBe(2);
      await expectServedComplete(d);
      expect(d.db.served()!.generation).toBe(up2.repo.generation);
      expect(r.chunksFetched).toBeGreaterThan(0);
      expect(r.chunksFetched).toBeLessThanOrEqual(p.chunkIds.length);
      up2.requests.length = 0;
      await d.engine.sync();
      expect(up2.requests.map((q) => q.path)).toEqual(['/v1/metadata/timestamp.json']);
    } finally {
      await up2.close();
    }
  });

  it('never stores a chunk whose bytes do not match its id; retries, then fails clearly; the served generation stays', async () => {
    const d = depot();
    const before = await d.engine.sync();
    const p = await up.publish('bravo', '1.0', randomBytesSeeded(200_000, 2));
    const bad = p.chunkIds[1]!;
    up.faults.corrupt.add(bad);
    const err = await d.engine.sync().catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'hash-mismatch')).toBe(true);
    expect((err as Error).message).toContain(bad);
    expect(d.store.has(bad)).toBe(false);
    expect(d.db.served()!.generation).toBe(before.generation);
    // Three attempts asked for the bad chunk.
    expect(up.requests.filter((r) => r.ids?.includes(bad)).length).toBe(3);
    up.faults.corrupt.clear();
    const after = await d.engine.sync();
    expect(after.generation).toBe(up.repo.generation);
    expect(after.chunksFetched).toBe(1);
    await expectServedComplete(d);
  });

  it('fails clearly when the catalog names a manifest the upstream does not have', async () => {
    const d = depot();
    const before = await d.engine.sync();
    const p = await up.publish('charlie', '1.0', randomBytesSeeded(50_000, 3));
    up.faults.missingTargets.add(p.name);
    const err = await d.engine.sync().catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'not-found')).toBe(true);
    expect((err as Error).message).toMatch(
      /manifest charlie@1\.0\.json: the signed catalog lists it but upstream .* does not have it/,
    );
    expect(d.db.served()!.generation).toBe(before.generation);
  });
});
