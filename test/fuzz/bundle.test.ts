import { readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleFile } from '../../depot/offline/bundle-file.js';
import { bytesSeeded, startWorld, type World } from '../depot/offline/fixture.js';
import { onlyTypedAsync, params } from './fuzz.js';

/** A real bundle with a few byte edits, cuts or insertions, anywhere or within its header. */
function editedBundle(valid: Buffer, headerEnd: number): fc.Arbitrary<Buffer> {
  const edit = fc.record({
    kind: fc.constantFrom('set', 'cut', 'insert'),
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
    inHeader: fc.boolean(),
  });
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let b = Buffer.from(valid);
    for (const e of edits) {
      const span = e.inHeader ? Math.min(headerEnd, b.length) : b.length;
      const at = span ? e.at % span : 0;
      if (e.kind === 'set' && b.length) b[at] = e.byte;
      else if (e.kind === 'cut') b = b.subarray(0, at);
      else b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
    }
    return b;
  });
}

describe('fuzz: offline bundles (section reader and import)', () => {
  let w: World;
  let depot: string;
  let valid: Buffer;
  let headerEnd: number;
  beforeAll(async () => {
    w = await startWorld();
    await w.publish('app', '1.0', bytesSeeded(200_000, 3));
    depot = await w.newDepot('fuzzed');
    const r = await w.exportFor('fuzzed');
    valid = readFileSync(r.file);
    const b = await BundleFile.open(r.file);
    headerEnd = b.header.dataStart;
    await b.close();
  }, 120_000);
  afterAll(async () => {
    await w?.close();
  });

  it('opening and reading every section of an edited bundle: bytes or a typed refusal', async () => {
    const path = w.file('fuzzed.bundle');
    await fc.assert(
      fc.asyncProperty(editedBundle(valid, headerEnd), async (bytes) => {
        writeFileSync(path, bytes);
        await onlyTypedAsync(async () => {
          const b = await BundleFile.open(path);
          try {
            for (const s of b.header.signed.sections) {
              if (s.kind === 'chunks')
                for await (const r of b.chunkRecords(s, () => true)) expect(r.recordBytes).toBeGreaterThan(0);
              else await b.readSection(s);
            }
          } finally {
            await b.close();
          }
        });
      }),
      { ...params, numRuns: Math.max(20, Math.floor(params.numRuns / 3)) },
    );
  }, 300_000);

  it('importing an edited bundle: imported (verified) or refused with a typed error, the depot still whole', async () => {
    const path = w.file('fuzzed-import.bundle');
    await fc.assert(
      fc.asyncProperty(editedBundle(valid, headerEnd), async (bytes) => {
        writeFileSync(path, bytes);
        await onlyTypedAsync(() => w.importInto(depot, path));
      }),
      { ...params, numRuns: Math.max(10, Math.floor(params.numRuns / 10)) },
    );
    // The untouched bundle still imports after all that.
    writeFileSync(path, valid);
    expect((await w.importInto(depot, path)).kind).toBe('update');
  }, 300_000);
});
