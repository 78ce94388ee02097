import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { demoBytes, scatterEdits } from '../../cli/demo/demo.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { silentLogger } from '../../src/log.js';
import { openMaster } from '../../master/context.js';
import { latestStatusAll } from '../../master/db/status.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Poll for a file (the inbox settles for a few seconds before it imports). */
async function waitForFile(path: string, timeoutMs = 40_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function newestStatus(depotDir: string): string {
  const files = readdirSync(join(depotDir, 'outbox'))
    .filter((f) => f.startsWith('status-'))
    .sort();
  return join(depotDir, 'outbox', files[files.length - 1]!);
}

/**
 * End to end with separate processes: a master, an online depot and an air-gapped depot. The
 * air-gapped depot enrolls by file, imports a full and then a delta bundle through its inbox, serves an
 * agent the right bytes while the master is stopped, and its status file shows in the master's status.
 */
describe('air-gapped depot (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-offline-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('enrolls by file, imports full and delta bundles from its inbox, serves an agent with the master stopped, reports by file', async () => {
    const M = join(dir, 'master');
    const DA = join(dir, 'depot-a');
    const S = join(dir, 'ship');
    const A = join(dir, 'agent');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const v1 = demoBytes(6 * 1024 * 1024);
    writeFileSync(join(dir, 'v1.bin'), v1);
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', join(dir, 'v1.bin')]);

    const [mp, ap, sp] = [await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    const master = startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]);
    services.push(master);
    await waitForHttps(masterUrl);

    // The online depot, as usual.
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    expect(runJson(['depot', 'sync', '--dir', DA]).generation).toBe(2);
    services.push(startService('depot-a', ['depot', 'serve', '--dir', DA]));
    await waitForHttps(`https://127.0.0.1:${ap}`);

    // The air-gapped depot enrolls by file.
    const init = runJson([
      'depot',
      'init',
      '--dir',
      S,
      '--offline',
      '--fingerprint',
      fp,
      '--root',
      join(M, '1.root.json'),
      '--name',
      'ship',
      '--listen',
      `127.0.0.1:${sp}`,
      '--host',
      '127.0.0.1',
    ]);
    expect(init.state).toBe('pending');
    const reply = join(dir, 'reply.bundle');
    expect(runJson(['master', 'approve', '--dir', M, '--request', init.request, '--out', reply]).state).toBe(
      'approved',
    );
    expect(runJson(['depot', 'import', '--dir', S, reply]).enrolled).toBe(true);
    // The operator shortens the inbox's settle period (depot.json `inbox.settleMs`; copies here are instant).
    const shipConfig = join(S, 'depot.json');
    writeFileSync(
      shipConfig,
      JSON.stringify({ ...JSON.parse(readFileSync(shipConfig, 'utf8')), inbox: { settleMs: 500 } }, null, 2),
    );
    const shipUrl = `https://127.0.0.1:${sp}`;
    services.push(startService('ship', ['depot', 'serve', '--dir', S]));
    await waitForHttps(shipUrl);

    // Full bundle through the inbox.
    const full = runJson([
      'master',
      'export',
      '--dir',
      M,
      '--depot',
      'ship',
      '--out',
      join(dir, 'full.bundle'),
    ]);
    expect(full).toMatchObject({ fromGeneration: 0, toGeneration: 2 });
    copyFileSync(full.file, join(S, 'inbox', 'full.bundle'));
    await waitForFile(join(S, 'inbox', 'done', 'full.bundle'));
    expect(runJson(['master', 'import-status', '--dir', M, newestStatus(S)])).toMatchObject({
      machine: 'ship',
      outcome: 'recorded',
      servedGeneration: 2,
    });

    const agentToken = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    runJson([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      masterUrl,
      '--fingerprint',
      fp,
      '--token',
      agentToken,
      '--depot',
      shipUrl,
    ]);

    // A new version; the master knows (from the status file) that the ship is at generation 2: a delta,
    // encrypted for the ship's certificate key: the running depot decrypts it in its inbox.
    const v2 = scatterEdits(v1, 20, 4096);
    writeFileSync(join(dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.1', join(dir, 'v2.bin')]);
    const delta = runJson([
      'master',
      'export',
      '--dir',
      M,
      '--depot',
      'ship',
      '--out',
      join(dir, 'delta.bundle'),
      '--encrypt',
    ]);
    expect(delta).toMatchObject({
      fromGeneration: 2,
      toGeneration: 3,
      encryptedFor: expect.stringMatching(/^[0-9a-f]+$/),
    });
    expect(delta.bytes).toBeLessThan(full.bytes / 2);
    copyFileSync(delta.file, join(S, 'inbox', 'delta.bundle'));
    await waitForFile(join(S, 'inbox', 'done', 'delta.bundle'));
    expect(existsSync(join(S, 'inbox', 'rejected'))).toBe(true);
    expect(readdirSync(join(S, 'inbox', 'rejected'))).toEqual([]);

    // The master goes away; the agent gets verified bytes from the air-gapped depot.
    await master.stop();
    mkdirSync(join(dir, 'out'));
    const out = join(dir, 'out', 'setup.bin');
    const got = runJson(['agent', 'fetch', '--dir', A, 'setup@1.1', '--out', out]);
    // The agent names a source host-port; only the air-gapped depot can have served it.
    expect(got.source).toEqual([`127.0.0.1-${sp}`]);
    expect(sha(readFileSync(out))).toBe(sha(v2));

    // The ship's status file, carried back, is the master's status of it.
    expect(runJson(['master', 'import-status', '--dir', M, newestStatus(S)])).toMatchObject({
      outcome: 'recorded',
      servedGeneration: 3,
    });
    const ctx = await openMaster(M, silentLogger());
    try {
      const ship = (await latestStatusAll(ctx.db)).find((s) => s.machine === 'ship');
      expect(ship).toMatchObject({ servedGeneration: 3, targetGeneration: 3, address: 'offline' });
      expect(Date.parse(ship!.validUntil!)).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    } finally {
      await ctx.close();
    }
  }, 90_000);
});
