import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../../src/content/manifest.js';
import { DepotsyncError } from '../../../src/errors.js';
import { BundleFile } from '../../../depot/offline/bundle-file.js';
import { flipped, sectionOffset, servedComplete, startWorld, withDepot, type World } from './fixture.js';

/** Text-like bytes (about 3-5× with zstd -3), deterministic. */
function textish(bytes: number, seed: number): Buffer {
  const words = ['depot', 'sync', 'chunk', 'manifest', 'agent', 'master', 'release', 'version', '\n'];
  const parts: string[] = [];
  let x = seed;
  let n = 0;
  while (n < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 97} `;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

async function refused(p: Promise<unknown>): Promise<DepotsyncError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, 'expected the import to be refused').toBeInstanceOf(DepotsyncError);
  return e as DepotsyncError;
}

describe('offline bundles carry compressed chunks', () => {
  let w: World;
  let D: string;
  let file: string;
  const data = textish(3_000_000, 5);

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('docs', '1.0', data);
    D = await w.newDepot('rig');
    const x = await w.exportFor('rig');
    file = x.file;
  });
  afterAll(async () => {
    await w?.close();
  });

  it('exports chunks as the master stores them (compressed), in sections of format-2 records', async () => {
    expect(statSync(file).size).toBeLessThan(data.length / 2);
    const f = await BundleFile.open(file);
    try {
      const chunkSections = f.header.signed.sections.filter((s) => s.kind === 'chunks');
      expect(chunkSections.length).toBeGreaterThan(0);
      expect(chunkSections.every((s) => s.records === 2)).toBe(true);
      let zstd = 0;
      for (const s of chunkSections)
        for await (const r of f.chunkRecords(s, () => false)) if (r.encoding === 'zstd') zstd++;
      expect(zstd).toBeGreaterThan(0);
    } finally {
      await f.close();
    }
  });

  it('refuses an altered compressed record, storing nothing wrong; the intact file then imports and is stored compressed', async () => {
    const c = await sectionOffset(file, 'chunks');
    // A byte in the middle of the first record's frame (its header is 41 bytes).
    const bad = flipped(file, w.file('altered.bundle'), c.at + 41 + 200);
    const e = await refused(w.importInto(D, bad));
    expect(['corrupt', 'hash-mismatch', 'truncated']).toContain(e.code);
    expect(e.message).toMatch(/chunk [0-9a-f]{64}/);
    expect(await servedComplete(D)).toBeUndefined();

    const r = await w.importInto(D, file);
    expect(r.switched).toBe(true);
    expect(await servedComplete(D)).toBe(r.generation);
    await withDepot(D, async (d) => {
      const served = [...d.db.liveTargets(['served'])];
      const ids = served.flatMap((t) => uniqueChunkIds(decodeManifest(t.bytes)));
      const forms = await Promise.all(ids.map((id) => d.store.getStored(id)));
      expect(forms.some((f) => f.encoding === 'zstd')).toBe(true);
      expect(d.store.stats().bytes).toBeLessThan(data.length / 2);
    });
  });
});
