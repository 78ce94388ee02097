import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transaction } from '../../../master/db/database.js';
import { createGeneration } from '../../../master/db/catalog.js';
import type { MasterDb } from '../../../master/db/database.js';
import {
  binVersions,
  getMetadataFile,
  latestMetadata,
  metadataFileName,
  putMetadataFile,
  rootVersions,
  setBinVersion,
} from '../../../master/db/metadata.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
  await transaction(m, async () => await createGeneration(m, { createdBy: 'init' }));
});
afterEach(() => t.cleanup());

describe('metadata files', () => {
  it('names files by TUF consistent-snapshot rules', () => {
    expect(metadataFileName('snapshot', 12)).toBe('12.snapshot.json');
    expect(metadataFileName('bin-3a', 7)).toBe('7.bin-3a.json');
    expect(metadataFileName('timestamp', 40)).toBe('timestamp.json');
    expect(() => metadataFileName('../x', 1)).toThrow(/not a valid role name/);
    expect(() => metadataFileName('root', 0)).toThrow(/root version must be an integer >= 1/);
  });

  it('stores bytes with their SHA-256 and length; the same bytes again are a success', async () => {
    const bytes = Buffer.from('{"signed":{"_type":"root"}}');
    const f = await putMetadataFile(m, { role: 'root', version: 1, bytes });
    expect(f).toMatchObject({ name: '1.root.json', role: 'root', version: 1, length: bytes.length });
    expect(f.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(f.generation).toBeUndefined();
    expect(await putMetadataFile(m, { role: 'root', version: 1, bytes })).toEqual(f);
    await putMetadataFile(m, { role: 'root', version: 2, bytes: Buffer.from('root 2') });
    expect(await rootVersions(m)).toEqual([1, 2]);
    expect((await latestMetadata(m, 'root'))?.name).toBe('2.root.json');
    expect((await getMetadataFile(m, '1.root.json'))?.bytes.equals(bytes)).toBe(true);
    expect(await getMetadataFile(m, '9.root.json')).toBeUndefined();
  });

  it('never changes a signed file and never rolls a role back', async () => {
    await putMetadataFile(m, { role: 'snapshot', version: 1, bytes: Buffer.from('a'), generation: 1 });
    await putMetadataFile(m, { role: 'snapshot', version: 3, bytes: Buffer.from('c'), generation: 1 });
    const changed = await caught(
      async () => await putMetadataFile(m, { role: 'snapshot', version: 3, bytes: Buffer.from('x') }),
    );
    expect(changed.code).toBe('conflict');
    expect(changed.message).toMatch(/3.snapshot.json version 3 is already stored with different bytes/);
    expect(
      (
        await caught(
          async () => await putMetadataFile(m, { role: 'snapshot', version: 2, bytes: Buffer.from('b') }),
        )
      ).code,
    ).toBe('version-rollback');
  });

  it('replaces timestamp.json only with a newer version', async () => {
    await putMetadataFile(m, { role: 'timestamp', version: 1, bytes: Buffer.from('t1'), generation: 1 });
    t.clock.advance(60_000);
    const t2 = await putMetadataFile(m, {
      role: 'timestamp',
      version: 2,
      bytes: Buffer.from('t2'),
      generation: 1,
    });
    expect(t2).toMatchObject({ name: 'timestamp.json', version: 2, createdAt: '2030-01-01T00:01:00.000Z' });
    expect((await getMetadataFile(m, 'timestamp.json'))?.bytes.toString()).toBe('t2');
    expect(
      (
        await caught(
          async () => await putMetadataFile(m, { role: 'timestamp', version: 1, bytes: Buffer.from('t1') }),
        )
      ).code,
    ).toBe('version-rollback');
    expect(await m.sql.get("SELECT count(*) AS n FROM metadata_files WHERE role = 'timestamp'")).toEqual({
      n: 1,
    });
  });

  it('tracks bin versions forward only', async () => {
    await setBinVersion(m, 'bin-00', 1, 1);
    await setBinVersion(m, 'bin-01', 1, 1);
    await setBinVersion(m, 'bin-00', 2, 1);
    expect(await binVersions(m)).toEqual([
      { name: 'bin-00', version: 2, generation: 1 },
      { name: 'bin-01', version: 1, generation: 1 },
    ]);
    expect((await caught(async () => await setBinVersion(m, 'bin-00', 1, 1))).code).toBe('version-rollback');
  });
});
