import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../../helpers/cli.js';
import { bytesSeeded, servedComplete, startWorld, type World } from './fixture.js';

/** `depotsync depot import` as its own process (the built CLI), killed with SIGKILL after its first durable checkpoint. */
function importKilledAfterFirstStore(dir: string, file: string): Promise<{ killed: boolean; out: string }> {
  const child = spawn(
    process.execPath,
    [CLI, 'depot', 'import', '--dir', dir, file, '--json', '--log-level', 'debug'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let killed = false;
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
    if (!killed && out.includes('"msg":"stored checkpoint"')) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.on('exit', () => resolve({ killed, out })));
}

describe('kill -9 during an import, then the import again', () => {
  let w: World;
  let D: string;

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('big', '1.0', bytesSeeded(40_000_000, 11));
    D = await w.newDepot('ship');
    // Small checkpoints, so the 40 MB import commits several times and the kill lands between two.
    const configFile = join(D, 'depot.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    config.sync = { ...config.sync, checkpointBytes: 4 * 1024 * 1024 };
    writeFileSync(configFile, JSON.stringify(config, null, 2));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('serves nothing half-imported, and the re-run finishes from what was stored', async () => {
    const bundle = await w.exportFor('ship');
    const first = await importKilledAfterFirstStore(D, bundle.file);
    expect(first.killed, first.out.slice(-2000)).toBe(true);
    expect(await servedComplete(D)).toBeUndefined();

    const again = await w.importInto(D, bundle.file);
    expect(again.generation).toBe(2);
    expect(again.switched).toBe(true);
    expect(again.chunksImported).toBeGreaterThan(0);
    expect(again.chunksImported).toBeLessThan(bundle.chunks);
    expect(await servedComplete(D)).toBe(2);
  });
});
