import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
import { depotStatus } from '../../depot/status.js';
import { ownCertificates } from '../../master/admin/certificates.js';
import { loadAdminSettings } from '../../master/admin/config.js';
import { buildFleetStatus } from '../../master/admin/status-model.js';
import { openMasterDatabase } from '../../master/db/database.js';
import { masterLayout } from '../../master/layout.js';
import { storedRoles } from '../../master/trust/stored.js';
import { daysAhead, fakeTimeAvailable } from '../helpers/clock.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Role = 'timestamp' | 'snapshot' | 'targets' | 'bins' | 'root';

/**
 * Two and a half years of a fleet with real processes and a settable clock (libfaketime): every step
 * jumps the clock of every process ahead; the master re-signs what is due (the export and `master
 * serve` refresh first), renews its root 60 days before expiry with the root key online, renews its
 * own server certificate, and rotates one role's key at five of the steps. An online depot (which
 * renews its machine certificate and syncs when it starts), an air-gapped depot fed by bundles, and an
 * agent fetching through the depot must keep working at every step, walking the root chain.
 */
describe.skipIf(!fakeTimeAvailable)(
  'key lifecycle drill: 2.5 years (separate processes, faked clock)',
  () => {
    const tmp = tempDir('depotsync-keys-drill-');
    const services: Service[] = [];
    const stopAll = async () => {
      await Promise.all(services.splice(0).map((s) => s.stop()));
    };
    afterAll(async () => {
      await stopAll();
      tmp.cleanup();
    });

    it('renewals, and one rotation of every role, while depots (online and air-gapped) and an agent keep working', async () => {
      const M = join(tmp.dir, 'M');
      const D = join(tmp.dir, 'D');
      const S = join(tmp.dir, 'S');
      const A = join(tmp.dir, 'A');
      mkdirSync(join(tmp.dir, 'out'));
      const [mp, dp, sp] = [await freePort(), await freePort(), await freePort()];
      const masterUrl = `https://127.0.0.1:${mp}`;
      const depotUrl = `https://127.0.0.1:${dp}`;
      const at = (day: number) => daysAhead(day);
      const run = (day: number, args: string[]) => runJson(args, at(day));

      const fp = run(0, ['master', 'init', '--dir', M]).fingerprint as string;
      // Read the master's database in this process (WAL readers never block the master), at the drill's clock.
      const inMaster = async <T>(
        fn: (db: ReturnType<typeof openMasterDatabase>) => Promise<T>,
      ): Promise<T> => {
        const db = openMasterDatabase(masterLayout(M).database, { logger: silentLogger() });
        try {
          return await fn(db);
        } finally {
          await db.close();
        }
      };
      const roles = async () => await inMaster(async (db) => await storedRoles(db));
      const keyids = async () => Object.fromEntries((await roles()).map((r) => [r.role, r.keyids]));
      const alertsAt = async (day: number) =>
        await inMaster(
          async (db) =>
            (
              await buildFleetStatus(
                {
                  db,
                  settings: loadAdminSettings(M),
                  masterName: 'master',
                  ownCertificates: ownCertificates(masterLayout(M)),
                },
                { nowMs: Date.now() + day * 86_400_000, packages: false },
              )
            ).alerts,
        );
      const initial = await keyids();
      let version = 0;
      let expected = Buffer.alloc(0);
      const publishAt = (day: number) => {
        version++;
        expected = pseudoRandomBytes(200_000, version);
        writeFileSync(join(tmp.dir, `v${version}.bin`), expected);
        return run(day, [
          'master',
          'publish',
          '--dir',
          M,
          '--name',
          'tool',
          '--version',
          String(version),
          join(tmp.dir, `v${version}.bin`),
        ]).generation as number;
      };
      publishAt(0);

      const startMaster = async (day: number) => {
        services.push(
          startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`], {
            env: at(day),
          }),
        );
        await waitForHttps(masterUrl);
      };
      await startMaster(0);
      const token = (role: string) => run(0, ['master', 'token', '--dir', M, '--role', role]).token as string;
      enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp, env: at(0) });
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
      // The air-gapped depot enrolls by file.
      const init = run(0, [
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
      run(0, [
        'master',
        'approve',
        '--dir',
        M,
        '--request',
        init.request,
        '--out',
        join(tmp.dir, 'reply.bundle'),
      ]);
      expect(run(0, ['depot', 'import', '--dir', S, join(tmp.dir, 'reply.bundle')]).enrolled).toBe(true);
      await stopAll();

      const steps: { day: number; rotate?: Role; publish?: boolean }[] = [
        { day: 100, rotate: 'timestamp' },
        { day: 200, rotate: 'snapshot', publish: true },
        { day: 300, rotate: 'targets' },
        { day: 400, rotate: 'bins', publish: true },
        { day: 500, rotate: 'root' },
        { day: 650, publish: true },
        // Root v5 (day 500) expires on day 865: 45 days left, the master renews it by itself.
        { day: 820, publish: true },
        { day: 913 },
      ];
      const rootVersions: number[] = [];
      const t0 = Date.now();
      const mark = (what: string) =>
        process.env.DRILL_TIMES && console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s ${what}`);
      for (const step of steps) {
        const { day } = step;
        mark(`day ${day}`);
        if (step.rotate) {
          const r = run(day, ['master', 'keys', 'rotate', '--dir', M, '--role', step.rotate]);
          expect(r, `day ${day}`).toMatchObject({ state: 'committed', change: step.rotate });
        }
        if (step.publish) publishAt(day);

        mark('rotated/published');
        // The air-gapped depot: a bundle (the export re-signs what is due first, as the serving master would).
        const bundle = run(day, [
          'master',
          'export',
          '--dir',
          M,
          '--depot',
          'ship',
          '--out',
          join(tmp.dir, `ship-${day}.bundle`),
        ]);
        const imported = run(day, ['depot', 'import', '--dir', S, bundle.file]);
        expect(imported.generation, `day ${day}: ship`).toBe(bundle.toGeneration);

        mark('ship imported');
        // The online depot and the agent, against the serving master.
        await startMaster(day);
        mark('master up');
        services.push(startService('depot-1', ['depot', 'serve', '--dir', D], { env: at(day) }));
        await waitForHttps(depotUrl);
        const served = await until(
          `depot-1 at generation ${bundle.toGeneration} on day ${day}`,
          async () => {
            const s = await depotStatus(D);
            return (s.servedGeneration ?? 0) >= bundle.toGeneration ? s : undefined;
          },
          { timeoutMs: 60_000, everyMs: 250 },
        );
        mark('depot synced');
        expect(served.lastError ?? null, `day ${day}: depot-1`).toBeNull();
        const out = join(tmp.dir, 'out', `tool-${day}.bin`);
        const got = run(day, ['agent', 'fetch', '--dir', A, `tool@${version}`, '--out', out]);
        expect(got.source, `day ${day}: agent`).toEqual([`127.0.0.1-${dp}`]);
        expect(sha(readFileSync(out)), `day ${day}: agent`).toBe(sha(expected));

        mark('agent fetched');
        // (The air-gapped depot's machine certificate expires after a year: it has no line to renew it on.)
        const alerts = (await alertsAt(day)).filter(
          (a) => a.kind === 'metadata-expiry' || (a.kind === 'certificate' && a.subject !== 'ship'),
        );
        expect(alerts, `day ${day}`).toEqual([]);
        rootVersions.push((await roles())[0]!.version);
        mark('status');
        await stopAll();
        mark('stopped');
      }

      // Root versions: 4 rotations that change root (timestamp, snapshot, targets, root) and the renewal on day 820.
      expect(rootVersions).toEqual([2, 3, 4, 4, 5, 5, 6, 6]);
      const final = await keyids();
      for (const role of ['root', 'targets', 'bins', 'snapshot', 'timestamp'])
        expect(final[role], role).not.toEqual(initial[role]);
    }, 300_000);
  },
);
