import { expect } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../src/content/manifest.js';
import type { Depot } from '../../depot/depot.js';

/** Every chunk of every served manifest is in the store and verifies; the served timestamp names the generation. */
export async function expectServedComplete(d: Depot): Promise<number> {
  const served = d.db.served();
  expect(served).toBeDefined();
  const ts = JSON.parse(served!.timestamp.toString('utf8'));
  expect(ts.signed.meta['snapshot.json'].version).toBe(served!.generation);
  let chunks = 0;
  for (const t of d.db.liveTargets(['served'])) {
    for (const id of uniqueChunkIds(decodeManifest(t.bytes))) {
      await d.store.get(id, { verify: true });
      chunks++;
    }
  }
  return chunks;
}
