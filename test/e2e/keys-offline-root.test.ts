import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { afterAll, describe, expect, it } from 'vitest';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { silentLogger } from '../../src/log.js';
import { openMasterDatabase } from '../../master/db/database.js';
import { getMetadataFile, latestMetadata } from '../../master/db/metadata.js';
import { masterLayout } from '../../master/layout.js';
import { currentGeneration } from '../../master/db/catalog.js';
import { depotStatus } from '../../depot/status.js';
import { DEFAULT_CLIENT_LIMITS, TrustedMetadata } from '../../src/tuf/client.js';
import { keyPairFromPem } from '../../src/tuf/keys.js';
import { CLI } from '../helpers/cli.js';
import { daysAhead, fakeTimeAvailable } from '../helpers/clock.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `depotsync ARGS --json` at the drill's clock, expected to fail: exit code and the stderr line. */
function fails(day: number, args: string[]): { status: number; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn', ...daysAhead(day) },
    timeout: 120_000,
  });
  return { status: r.status ?? -1, stderr: r.stderr };
}

/**
 * The root goes offline and changes shape, then serves through a stolen online key and a renewal:
 *  1. root 1-of-1 (on the master) is rotated to 2-of-3 with the new keys written to "removable media";
 *     the depot and the agent walk to it;
 *  2. the timestamp key is stolen: before the rotation a compromised depot's forged timestamp is believed; the
 *     rotation needs a root signing request, signed offline by 2 of the 3 keys (1 is refused), and
 *     afterwards the forged timestamp is refused by the agent and by the depot's trusted root;
 *  3. without root keys on the master nothing renews the root: alerts at 60, 30 and 7 days; the
 *     operator renews through a signing request, and the fleet goes on past the old expiry.
 */
describe.skipIf(!fakeTimeAvailable)(
  'key drills: offline root, 1-of-1 to 2-of-3, stolen timestamp key (separate processes)',
  () => {
    const tmp = tempDir('depotsync-keys-offline-');
    const services: Service[] = [];
    const stopAll = async () => {
      await Promise.all(services.splice(0).map((s) => s.stop()));
    };
    afterAll(async () => {
      await stopAll();
      tmp.cleanup();
    });

    it('rotates root to 2-of-3 offline keys, rotates a stolen timestamp key out, renews the root by signing request', async () => {
      const M = join(tmp.dir, 'M');
      const D = join(tmp.dir, 'D');
      const A = join(tmp.dir, 'A');
      const A2 = join(tmp.dir, 'A2');
      const USB = join(tmp.dir, 'usb');
      mkdirSync(join(tmp.dir, 'out'));
      const [mp, dp] = [await freePort(), await freePort()];
      const masterUrl = `https://127.0.0.1:${mp}`;
      const depotUrl = `https://127.0.0.1:${dp}`;
      const run = (day: number, args: string[]) => runJson(args, daysAhead(day));
      // `master serve` prints its "listening" line after its first re-signing: a depot started after it
      // never sees the metadata the clock jump made stale.
      const startMaster = (day: number) =>
        new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`master serve (day ${day}) did not start`)), 60_000);
          const log = (line: string) => {
            if (!line.includes('listening on')) return;
            clearTimeout(t);
            resolve();
          };
          const args = ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`];
          services.push(startService('master', args, { env: daysAhead(day), log }));
        });
      const up = async (day: number) => {
        await startMaster(day);
        services.push(startService('depot', ['depot', 'serve', '--dir', D], { env: daysAhead(day) }));
        await waitForHttps(depotUrl);
      };
      const sync = (day: number) => run(day, ['depot', 'sync', '--dir', D]).generation as number;
      // The serving depot syncs (after renewing its certificate when due) as it starts: wait for the master's generation.
      const synced = async (): Promise<number> => {
        const want = await (async () => {
          const db = openMasterDatabase(masterLayout(M).database, { logger: silentLogger() });
          try {
            return await currentGeneration(db);
          } finally {
            await db.close();
          }
        })();
        const deadline = Date.now() + 60_000;
        for (;;) {
          const s = await depotStatus(D);
          if ((s.servedGeneration ?? 0) >= want) return s.servedGeneration ?? 0;
          if (Date.now() > deadline)
            throw new Error(`depot did not reach generation ${want}: ${s.lastError}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      };
      const fetch = (day: number, dir: string, what: string) => {
        const out = join(tmp.dir, 'out', `${what}-${day}-${dir.length}.bin`);
        const r = run(day, ['agent', 'fetch', '--dir', dir, what, '--out', out]);
        return { ...r, sha: sha(readFileSync(out)) };
      };

      const fp = run(0, ['master', 'init', '--dir', M]).fingerprint as string;
      const v1 = pseudoRandomBytes(150_000, 1);
      writeFileSync(join(tmp.dir, 'v1.bin'), v1);
      run(0, ['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(tmp.dir, 'v1.bin')]);
      services.push(
        startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`], {
          env: daysAhead(0),
        }),
      );
      await waitForHttps(masterUrl);
      const token = (role: string, day = 0) =>
        run(day, ['master', 'token', '--dir', M, '--role', role]).token as string;
      enrollDepot({
        master: M,
        masterUrl,
        fingerprint: fp,
        dir: D,
        name: 'depot-1',
        port: dp,
        env: daysAhead(0),
      });
      expect(sync(0)).toBe(2);
      run(0, [
        'agent',
        'init',
        '--dir',
        A,
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token('agent'),
        '--depot',
        depotUrl,
      ]);
      await stopAll();

      // 1. Root 1-of-1 -> 2-of-3, the new keys on removable media; the master keeps none.
      const rotated = run(1, [
        'master',
        'keys',
        'rotate',
        '--dir',
        M,
        '--role',
        'root',
        '--root-keys',
        '3',
        '--root-threshold',
        '2',
        '--new-root-key-dir',
        USB,
      ]);
      expect(rotated).toMatchObject({ state: 'committed', rootVersion: 2 });
      const keys = run(1, ['master', 'keys', 'status', '--dir', M]);
      expect(keys.roles[0]).toMatchObject({
        role: 'root',
        threshold: 2,
        keyids: rotated.newKeyIds,
        keysOnMaster: 0,
      });
      expect(keys.rootRenewal).toBe('offline');
      expect(readdirSync(join(M, 'keys')).filter((f) => f.startsWith('root'))).toEqual([]);
      const usbKeys = readdirSync(USB).map((f) => join(USB, f));
      expect(usbKeys).toHaveLength(3);
      await up(1);
      expect(await synced()).toBeGreaterThan(2);
      expect(fetch(1, A, 'tool@1').sha).toBe(sha(v1));
      // A second tier: depot-2 syncs from depot-1 and walks the same roots.
      const D2 = join(tmp.dir, 'D2');
      enrollDepot({
        master: M,
        masterUrl,
        fingerprint: fp,
        dir: D2,
        name: 'depot-2',
        port: 0,
        parent: depotUrl,
        env: daysAhead(1),
      });
      const tier = (day: number) => run(day, ['depot', 'sync', '--dir', D2]).generation as number;
      expect(tier(1)).toBe((await depotStatus(D)).servedGeneration);

      // 2. The timestamp key is stolen. A second agent fetches through the depot.
      await stopAll();
      await up(1.5);
      const stolen = keyPairFromPem(
        readFileSync(join(M, 'keys', 'timestamp.pem'), 'utf8'),
        'stolen timestamp key',
      );
      run(1.5, [
        'agent',
        'init',
        '--dir',
        A2,
        '--name',
        'agent-2',
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token('agent', 1.5),
        '--depot',
        depotUrl,
      ]);
      let forgedVersion = 10_000;
      const forge = (): Buffer => {
        // The newest real timestamp (from the depot's store is as good as any), re-signed with a higher version.
        const real = JSON.parse(readFileSync(join(tmp.dir, 'current-timestamp.json'), 'utf8')) as {
          signed: Record<string, unknown>;
        };
        const signed = {
          ...real.signed,
          version: forgedVersion,
          expires: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        };
        const sig = stolen.signer.sign(Buffer.from(canonicalize(signed as never), 'utf8')).toString('hex');
        return Buffer.from(JSON.stringify({ signatures: [{ keyid: stolen.keyid, sig }], signed }));
      };
      // The newest real timestamp and the root files, read from the master's database (WAL readers never block it).
      const stored = async (name: string): Promise<Buffer> => {
        const db = openMasterDatabase(masterLayout(M).database, { logger: silentLogger() });
        try {
          return name === 'timestamp.json'
            ? (await latestMetadata(db, 'timestamp'))!.bytes
            : (await getMetadataFile(db, name))!.bytes;
        } finally {
          db.close();
        }
      };
      const saveRealTimestamp = async () =>
        writeFileSync(join(tmp.dir, 'current-timestamp.json'), await stored('timestamp.json'));
      await saveRealTimestamp();
      // The attacker also controls the depot (an untrusted mirror) and serves the forged timestamp from it.
      const compromiseDepot = () => {
        const db = new Database(join(D, 'depot.db'));
        try {
          db.prepare('UPDATE served SET timestamp = ? WHERE id = 1').run(forge());
        } finally {
          db.close();
        }
      };
      compromiseDepot();
      // Before the rotation the forged timestamp is believed (the stolen key is still the timestamp key).
      expect(fetch(1.5, A2, 'tool@1').source).toEqual([`127.0.0.1-${dp}`]);

      // Rotating it out needs the offline root: a signing request, signed by 2 of the 3 keys.
      const request = join(tmp.dir, 'rotate-timestamp.json');
      const req = run(1.5, [
        'master',
        'keys',
        'rotate',
        '--dir',
        M,
        '--role',
        'timestamp',
        '--request-out',
        request,
      ]);
      expect(req).toMatchObject({
        state: 'signing-request',
        rootVersion: 3,
        request: { oldSignatures: 0, oldThreshold: 2 },
      });
      const carried = join(tmp.dir, 'carried.json');
      copyFileSync(request, carried);
      expect(run(1.5, ['master', 'root', 'sign', '--request', carried, '--key', usbKeys[0]!])).toMatchObject({
        complete: false,
        old: { valid: 1, threshold: 2 },
      });
      const early = fails(1.5, ['master', 'root', 'import', '--dir', M, carried]);
      expect(early.status).toBe(1);
      expect(early.stderr).toMatch(
        /not signed by a threshold of the old root keys \(v2\); depots and agents that trust root v2 could not verify it/,
      );
      expect(
        run(1.5, ['master', 'root', 'sign', '--request', carried, '--key', usbKeys[1]!, '--fingerprint', fp]),
      ).toMatchObject({ complete: true, digest: req.request.digest });
      expect(run(1.5, ['master', 'root', 'import', '--dir', M, carried])).toMatchObject({ rootVersion: 3 });
      expect(
        run(1.5, ['master', 'keys', 'status', '--dir', M]).roles.find(
          (r: { role: string }) => r.role === 'timestamp',
        ).keyids,
      ).not.toContain(stolen.keyid);
      await stopAll();
      await up(2);
      expect(await synced()).toBeGreaterThan(3);
      // Root v3 names the new timestamp key: depot-2 could not verify this generation without walking to it.
      expect(tier(2)).toBe((await depotStatus(D)).servedGeneration);
      await saveRealTimestamp();
      // The agent that believed the forged timestamp walks to root v3 (from the depot), forgets the
      // timestamp signed by the rotated key, and refuses the newly forged one: with the master down, nothing.
      forgedVersion = 20_000;
      compromiseDepot();
      await services.find((x) => x.name === 'master')!.stop();
      const refused = fails(2, [
        'agent',
        'fetch',
        '--dir',
        A2,
        'tool@1',
        '--out',
        join(tmp.dir, 'out', 'refused.bin'),
      ]);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/timestamp/);
      expect(refused.stderr).toMatch(/threshold not met|unknown key|signature/);
      // A client holding the new root (as the depot does after its sync) refuses it as well.
      const trusted = new TrustedMetadata(
        await stored('1.root.json'),
        { ...DEFAULT_CLIENT_LIMITS },
        '1.root.json',
      );
      for (const v of [2, 3]) trusted.updateRoot(await stored(`${v}.root.json`), `${v}.root.json`);
      expect(() => trusted.updateTimestamp(forge(), new Date(Date.now() + 2 * 86_400_000))).toThrow(
        /threshold not met|unknown/,
      );
      // With the real master reachable again, the agent goes on from it (its trusted timestamp was reset at
      // the rotation, so the forged version 10000 does not lock it out); the depot still serves the forgery.
      await stopAll();
      await up(2);
      compromiseDepot();
      const after = fetch(2, A2, 'tool@1');
      expect(after.sha).toBe(sha(v1));
      expect(after.source).toEqual(['master']);

      // 3. Root v3 expires on day 367 and no root key is on the master: alerts, then a renewal by request.
      // (On day 300 the depot and the agent renew their machine certificates, as they would in between.)
      await stopAll();
      await up(300);
      await synced();
      expect(fetch(300, A, 'tool@1').sha).toBe(sha(v1));
      await stopAll();
      const rootAlert = (day: number) =>
        (run(day, ['status', '--dir', M]).alerts as { key: string; level: string; message: string }[]).find(
          (a) => a.key === 'metadata-expiry:root',
        );
      expect(rootAlert(300)).toBeUndefined();
      expect(rootAlert(310)).toMatchObject({
        level: 'warning',
        message: expect.stringMatching(/expires in 5\d day/),
      });
      expect(rootAlert(340)).toMatchObject({
        level: 'warning',
        message: expect.stringMatching(/expires in 2\d day/),
      });
      expect(rootAlert(362)).toMatchObject({ level: 'error' });
      const renew = run(362, [
        'master',
        'root',
        'renew',
        '--dir',
        M,
        '--request-out',
        join(tmp.dir, 'renew.json'),
      ]);
      expect(renew).toMatchObject({ state: 'signing-request', rootVersion: 4 });
      run(362, [
        'master',
        'root',
        'sign',
        '--request',
        renew.request.file,
        '--key',
        usbKeys[1]!,
        '--key',
        usbKeys[2]!,
      ]);
      expect(run(362, ['master', 'root', 'import', '--dir', M, renew.request.file])).toMatchObject({
        rootVersion: 4,
      });
      expect(rootAlert(362)).toBeUndefined();
      // Past the old root's expiry, the depot and the agent go on with root v4.
      await up(400);
      expect(await synced()).toBeGreaterThan(4);
      expect(fetch(400, A, 'tool@1').sha).toBe(sha(v1));
    }, 300_000);
  },
);
