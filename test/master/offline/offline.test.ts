import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { PREAMBLE_BYTES } from '../../../src/wire/bundle.js';
import { openDepot } from '../../../depot/depot.js';
import { writeStatusFile } from '../../../depot/offline/status-file.js';
import { latestStatusAll } from '../../../master/db/status.js';
import { revokeMachine } from '../../../master/machines/actions.js';
import { importStatusFile } from '../../../master/offline/import-status.js';
import { BundleFile } from '../../../depot/offline/bundle-file.js';
import { bytesSeeded, edited, startWorld, type World } from '../../depot/offline/fixture.js';

async function refused(p: Promise<unknown>): Promise<DepotsyncError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DepotsyncError);
  return e as DepotsyncError;
}

/** A status file written by the depot in `dir` (its machine key), as `depot import` and the schedule do. */
async function statusOf(dir: string): Promise<string> {
  const d = openDepot(dir, { logger: silentLogger() });
  try {
    return (await writeStatusFile({ ...d, name: d.config.name }, { chunks: 1, bytes: 2, now: new Date() }))
      .file;
  } finally {
    await d.close();
  }
}

describe('master side of offline depots: export, approve by file, import-status', () => {
  let w: World;
  let A: string;
  let B: string;
  const v1 = bytesSeeded(6_000_000, 3);

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', v1);
    [A, B] = [await w.newDepot('ship-a'), await w.newDepot('ship-b')];
  });
  afterAll(async () => {
    await w?.close();
  });

  it('a full bundle is the package plus little; a delta carries only the new chunks and changed metadata', async () => {
    const full = await w.exportFor('ship-a');
    expect(full).toMatchObject({ fromGeneration: 0, toGeneration: 2, manifests: 1 });
    expect(full.chunkBytes).toBe(v1.length);
    // Format overhead: record headers (36 bytes a chunk), the table, the metadata (256 bins) and the manifest.
    expect(full.bytes - full.chunkBytes).toBeLessThan(256 * 1024);
    expect(readdirSync(dirname(full.file)).filter((f) => f.endsWith('.partial'))).toEqual([]);
    await w.importInto(A, full.file);

    const edits = edited(v1, 10);
    await w.publish('setup', '1.1', edits);
    // No status from ship-a yet: the master does not know its generation, so the bundle is full again.
    expect((await w.exportFor('ship-a')).fromGeneration).toBe(0);
    const r = await importStatusFile(w.master, await statusOf(A));
    expect(r).toMatchObject({ machine: 'ship-a', outcome: 'recorded', servedGeneration: 2 });
    const delta = await w.exportFor('ship-a');
    expect(delta.fromGeneration).toBe(2);
    expect(delta.toGeneration).toBe(3);
    expect(delta.chunkBytes).toBeLessThan(edits.length / 3);
    const f = await BundleFile.open(delta.file);
    try {
      const meta = f.sections('metadata').map((s) => s.name);
      expect(meta).toContain('timestamp.json');
      expect(meta).toContain('3.snapshot.json');
      expect(meta.filter((n) => /bin-/.test(n)).length).toBe(1); // one bin changed
      expect(f.sections('manifest').length).toBe(1);
    } finally {
      await f.close();
    }
    expect((await w.importInto(A, delta.file)).generation).toBe(3);
  });

  it('export refuses unknown machines and bad --from, and leaves nothing at --out on failure', async () => {
    expect((await refused(w.exportFor('nobody'))).code).toBe('not-found');
    expect((await refused(w.exportFor('ship-a', { from: 99 }))).code).toBe('usage');
    const out = join(w.dir, 'no-such-dir', 'x.bundle');
    await refused(w.exportFor('ship-a', { out }));
    expect(existsSync(out)).toBe(false);
  });

  it('import-status: records a signed report, ignores a replay, refuses tampered, foreign, unknown and revoked', async () => {
    const file = await statusOf(B);
    expect((await importStatusFile(w.master, file)).outcome).toBe('recorded');
    expect((await importStatusFile(w.master, file)).outcome).toBe('stale');
    const row = (await latestStatusAll(w.master.db)).find((s) => s.machine === 'ship-b');
    expect(row?.address).toBe('offline');

    // Tampered: a field changed after signing.
    const doc = JSON.parse(readFileSync(await statusOf(B), 'utf8'));
    doc.signed.report.servedGeneration = 99;
    writeFileSync(w.file('tampered.json'), JSON.stringify(doc));
    expect((await refused(importStatusFile(w.master, w.file('tampered.json')))).code).toBe('bad-signature');

    // Signed by another machine: ship-a's key, claiming to be ship-b.
    const other = JSON.parse(readFileSync(await statusOf(A), 'utf8'));
    const bDoc = JSON.parse(readFileSync(await statusOf(B), 'utf8'));
    other.signed.machine = 'ship-b';
    other.signed.certSerial = bDoc.signed.certSerial;
    writeFileSync(w.file('foreign.json'), JSON.stringify(other));
    const e = await refused(importStatusFile(w.master, w.file('foreign.json')));
    expect(e.code).toBe('bad-signature');
    expect(e.message).toMatch(/does not verify with ship-b's certificate/);

    // An older report after a newer one: ignored, the newer status stays.
    const older = readFileSync(await statusOf(B));
    const newer = await statusOf(B);
    expect(existsSync(join(B, 'outbox', 'status-ship-b-00000001.json'))).toBe(false); // the outbox keeps the newest only
    writeFileSync(w.file('older.json'), older);
    expect((await importStatusFile(w.master, newer)).outcome).toBe('recorded');
    expect((await importStatusFile(w.master, w.file('older.json'))).outcome).toBe('stale');

    // Unknown machine.
    const unknown = JSON.parse(readFileSync(await statusOf(B), 'utf8'));
    unknown.signed.machine = 'ghost';
    writeFileSync(w.file('ghost.json'), JSON.stringify(unknown));
    expect((await refused(importStatusFile(w.master, w.file('ghost.json')))).code).toBe('unauthorized');

    // Revoked.
    const last = await statusOf(B);
    await revokeMachine(w.master, 'ship-b', { actor: 'test' });
    const r = await refused(importStatusFile(w.master, last));
    expect(r.code).toBe('forbidden');
    expect(r.message).toMatch(/revoked/);
    expect((await refused(w.exportFor('ship-b'))).code).toBe('forbidden');
  });

  it('approve by file refuses a request for another master and a damaged request', async () => {
    const req = JSON.parse(readFileSync(join(A, 'outbox', 'enroll-request-ship-a.json'), 'utf8'));
    req.rootFingerprint = 'ab'.repeat(32);
    writeFileSync(w.file('req-other.json'), JSON.stringify(req));
    const { approveRequestFile } = await import('../../../master/offline/approve-file.js');
    const e = await refused(
      approveRequestFile(w.master, { request: w.file('req-other.json'), out: w.file('r.bundle') }),
    );
    expect(e.code).toBe('forbidden');
    writeFileSync(w.file('req-bad.json'), '{"_type":"depotsync-enroll-request"');
    expect(
      (
        await refused(
          approveRequestFile(w.master, { request: w.file('req-bad.json'), out: w.file('r.bundle') }),
        )
      ).code,
    ).toBe('bad-json');
    expect(existsSync(w.file('r.bundle'))).toBe(false);
    expect(PREAMBLE_BYTES).toBe(16);
  });
});
