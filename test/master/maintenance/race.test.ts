import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../../src/content/manifest.js';
import { silentLogger } from '../../../src/log.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { findVersion } from '../../../master/db/catalog.js';
import { getManifest } from '../../../master/db/manifests.js';
import { initMaster } from '../../../master/init.js';
import { collectMasterGarbage } from '../../../master/maintenance/gc.js';
import { CLI } from '../../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

describe('master gc racing a publish in another process', () => {
  const tmp = tempDir('depotsync-master-gc-race-');
  const M = join(tmp.dir, 'M');
  let ctx: MasterContext;
  beforeAll(async () => {
    await initMaster(M, { log: silentLogger() });
    ctx = await openMaster(M, silentLogger());
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  it('collects over and over while `master publish` runs; the published version has every chunk', async () => {
    const file = join(tmp.dir, 'big.bin');
    writeFileSync(file, pseudoRandomBytes(48 * 1024 * 1024, 31));
    const child = spawn(
      process.execPath,
      [CLI, 'master', 'publish', '--dir', M, '--name', 'big', '--version', '1', file, '--json'],
      {
        env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));
    // Whether a collection lands between the chunks' commit and the version's depends on the machine's
    // speed; gc.test.ts ("a publish in flight while gc runs") starts one in that window. Here: many runs, nothing lost.
    let runs = 0;
    while (!done) {
      await collectMasterGarbage(ctx, { graceMs: 60_000 });
      runs++;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await exited, stderr).toBe(0);
    expect(runs).toBeGreaterThan(1);
    await collectMasterGarbage(ctx, { graceMs: 60_000 });
    const v = await findVersion(ctx.db, 'big', '1');
    expect(v).toBeDefined();
    const ids = uniqueChunkIds(
      decodeManifest((await getManifest(ctx.db, v!.manifestId))!, { what: 'test manifest' }),
    );
    for (const id of ids) await expect(ctx.store.get(id, { verify: true })).resolves.toBeInstanceOf(Buffer);
  }, 120_000);
});
