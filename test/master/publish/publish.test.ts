import { createHash } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { decodeManifest } from '../../../src/content/manifest.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { publish } from '../../../master/publish/publish.js';
import { unpublish } from '../../../master/publish/unpublish.js';
import { findVersion, liveVersions } from '../../../master/db/catalog.js';
import { getMetadataFile, latestMetadata } from '../../../master/db/metadata.js';
import { getManifest } from '../../../master/db/manifests.js';
import { loadRepository } from '../../../master/repository.js';
import { listAudit } from '../../../master/db/audit.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

describe('master publish', () => {
  const tmp = tempDir();
  let ctx: MasterContext;
  let fingerprint: string;
  const file = join(tmp.dir, 'setup.bin');

  beforeAll(async () => {
    const r = await initMaster(join(tmp.dir, 'M'), { log: silentLogger() });
    fingerprint = r.fingerprint;
    ctx = await openMaster(join(tmp.dir, 'M'), silentLogger());
    writeFileSync(file, pseudoRandomBytes(3 * 1024 * 1024, 7));
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  it('init pins the SHA-256 of the exact bytes of 1.root.json and writes keys with mode 0600', async () => {
    const bytes = readFileSync(join(tmp.dir, 'M', '1.root.json'));
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(fingerprint);
    expect((await getMetadataFile(ctx.db, '1.root.json'))?.bytes.equals(bytes)).toBe(true);
    const { statSync } = await import('node:fs');
    for (const k of ['root', 'timestamp', 'snapshot', 'targets']) {
      expect(statSync(join(tmp.dir, 'M', 'keys', `${k}.pem`)).mode & 0o777).toBe(0o600);
    }
    expect(statSync(join(tmp.dir, 'M', 'ca', 'ca-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('refuses to initialise over an existing master', async () => {
    await expect(initMaster(join(tmp.dir, 'M'), { log: silentLogger() })).rejects.toThrow(
      /already holds a master/,
    );
  });

  it('publishes a file as generation N+1 re-signing one bin, the snapshot and the timestamp', async () => {
    const before = (await loadRepository(ctx)).generation;
    const r = await publish(ctx, { name: 'setup', version: '1.0', path: file, actor: 'test' });
    expect(r.unchanged).toBe(false);
    expect(r.generation).toBe(before + 1);
    expect(r.bytes).toBe(3 * 1024 * 1024);
    expect(r.newBytes).toBe(3 * 1024 * 1024);
    const v = await findVersion(ctx.db, 'setup', '1.0');
    expect(v?.manifestId).toBe(r.id);
    // The target's manifest decodes and lists the file with its chunks.
    const m = decodeManifest((await getManifest(ctx.db, r.id))!);
    expect(m.files.map((f) => f.path)).toEqual(['setup.bin']);
    // O(bins touched): exactly one bin advanced; snapshot and timestamp name the new generation.
    const snap = (await latestMetadata(ctx.db, 'snapshot'))!;
    expect(snap.version).toBe(r.generation);
    const repo = await loadRepository(ctx);
    const target = repo.getTarget('setup@1.0.json');
    expect(target?.custom).toMatchObject({ manifestId: r.id, name: 'setup', version: '1.0' });
    expect((await listAudit(ctx.db, { action: 'publish', target: 'setup@1.0' })).entries).toHaveLength(1);
  });

  it('publishing identical content again is a no-op that says so', async () => {
    const gen = (await loadRepository(ctx)).generation;
    const r = await publish(ctx, { name: 'setup', version: '1.0', path: file, actor: 'test' });
    expect(r.unchanged).toBe(true);
    expect((await loadRepository(ctx)).generation).toBe(gen);
  });

  it('a new version with a small change stores only the new chunks', async () => {
    const data = readFileSync(file);
    data.write('patched!', 1_500_000);
    const f2 = join(tmp.dir, 'setup2.bin');
    writeFileSync(f2, data);
    const r = await publish(ctx, { name: 'setup', version: '1.1', path: f2, actor: 'test' });
    expect(r.unchanged).toBe(false);
    expect(r.newChunks).toBeGreaterThan(0);
    expect(r.newChunks).toBeLessThanOrEqual(3);
    expect(r.newBytes).toBeLessThan(3 * 256 * 1024);
  });

  it('refuses the same version with other content', async () => {
    const f3 = join(tmp.dir, 'other.bin');
    writeFileSync(f3, pseudoRandomBytes(100_000, 9));
    await expect(publish(ctx, { name: 'setup', version: '1.0', path: f3, actor: 'test' })).rejects.toThrow(
      /already published with other content/,
    );
  });

  it('publishes a folder with nested files and an executable', async () => {
    const dir = join(tmp.dir, 'pkg');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'README.txt'), 'hello');
    writeFileSync(join(dir, 'bin', 'tool'), pseudoRandomBytes(200_000, 3), { mode: 0o755 });
    const r = await publish(ctx, { name: 'tools', version: '2.0', path: dir, actor: 'test' });
    const m = decodeManifest((await getManifest(ctx.db, r.id))!);
    expect(m.files.map((f) => [f.path, f.mode])).toEqual([
      ['README.txt', 0o644],
      ['bin/tool', 0o755],
    ]);
  });

  it('refuses a folder with a link pointing outside it, and nothing is published', async () => {
    const dir = join(tmp.dir, 'evil');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ok.txt'), 'fine');
    symlinkSync('/etc/passwd', join(dir, 'passwd'));
    const gen = (await loadRepository(ctx)).generation;
    await expect(publish(ctx, { name: 'evil', version: '1', path: dir, actor: 'test' })).rejects.toThrow(
      /link points outside the package folder/,
    );
    expect((await loadRepository(ctx)).generation).toBe(gen);
    expect(await findVersion(ctx.db, 'evil', '1')).toBeUndefined();
  });

  it('refuses a folder holding a hard link to a file outside it unless hard links are allowed', async () => {
    const secret = join(tmp.dir, 'secret.key');
    writeFileSync(secret, 'not for publishing');
    const dir = join(tmp.dir, 'hardlinked');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ok.txt'), 'fine');
    linkSync(secret, join(dir, 'innocent.txt'));
    const gen = (await loadRepository(ctx)).generation;
    const err = await publish(ctx, { name: 'hard', version: '1', path: dir, actor: 'test' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DepotsyncError);
    expect((err as DepotsyncError).code).toBe('bad-path');
    expect((err as DepotsyncError).message).toMatch(
      /innocent\.txt: hard link to a file with 1 other name outside/,
    );
    expect((err as DepotsyncError).hint).toMatch(/--allow-hardlinks/);
    expect((await loadRepository(ctx)).generation).toBe(gen);
    expect(await findVersion(ctx.db, 'hard', '1')).toBeUndefined();
    const r = await publish(ctx, {
      name: 'hard',
      version: '1',
      path: dir,
      actor: 'test',
      allowHardlinks: true,
    });
    const m = decodeManifest((await getManifest(ctx.db, r.id))!);
    expect(m.files.map((f) => f.path)).toEqual(['innocent.txt', 'ok.txt']);
  });

  it('publishes a folder whose hard links all stay inside it', async () => {
    const dir = join(tmp.dir, 'twins');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'a.bin'), 'same bytes');
    linkSync(join(dir, 'a.bin'), join(dir, 'sub', 'b.bin'));
    const r = await publish(ctx, { name: 'twins', version: '1', path: dir, actor: 'test' });
    expect(decodeManifest((await getManifest(ctx.db, r.id))!).files.map((f) => f.path)).toEqual([
      'a.bin',
      'sub/b.bin',
    ]);
  });

  it('refuses a path that does not exist', async () => {
    await expect(
      publish(ctx, { name: 'x', version: '1', path: join(tmp.dir, 'missing'), actor: 'test' }),
    ).rejects.toMatchObject({
      code: 'not-found',
      message: expect.stringContaining('no such file or directory'),
    });
  });

  it.each([
    ['name with /', 'a/b', '1'],
    ['name with ..', '..', '1'],
    ['name with a control character', 'ab\u0007', '1'],
    ['version with /', 'ok', '1/2'],
    ['version with ..', 'ok', '..'],
    ['version with a newline', 'ok', '1\n2'],
  ])('refuses a package %s', async (_what, name, version) => {
    await expect(publish(ctx, { name, version, path: file, actor: 'test' })).rejects.toMatchObject({
      code: 'bad-input',
    });
  });

  it('unpublish removes a version from the next generation', async () => {
    const r = await unpublish(ctx, 'tools@2.0', 'test');
    expect(await findVersion(ctx.db, 'tools', '2.0')).toBeUndefined();
    expect((await liveVersions(ctx.db)).map((v) => `${v.name}@${v.version}`)).not.toContain('tools@2.0');
    expect((await loadRepository(ctx)).getTarget('tools@2.0.json')).toBeUndefined();
    expect((await latestMetadata(ctx.db, 'snapshot'))?.version).toBe(r.generation);
    await expect(unpublish(ctx, 'tools@2.0', 'test')).rejects.toThrow(/not published/);
  });
});
