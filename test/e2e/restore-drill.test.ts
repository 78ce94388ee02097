import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
import { certificateInfo } from '../../src/pki/cert-info.js';
import { openMaster } from '../../master/context.js';
import { listAudit } from '../../master/db/audit.js';
import { byName } from '../../master/db/machines.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const STEP = 1_000_000;

/**
 * The disaster-recovery drill with real processes through the CLI: a master, depot-a (tier 1), depot-b
 * and depot-c (tier 2 below depot-a), an air-gapped depot fed by bundles, and agents. Publish, back up
 * while serving, publish more (and enroll depot-c and an agent, renew depot-a: certificates the backup
 * does not know), lose the master folder, restore into a new folder, publish again: every depot and
 * agent follows, nobody enrolls again, and enrollment and renewal go on working.
 */
describe('restore drill (separate processes)', () => {
  const tmp = tempDir('depotsync-restore-drill-');
  const services: Service[] = [];
  const lines: string[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });
  const env = { DEPOTSYNC_BACKUP_PASSPHRASE: 'drill passphrase, long enough' };
  const serve = (name: string, args: string[]) => {
    const s = startService(name, args, { log: (l) => lines.push(l) });
    services.push(s);
    return s;
  };
  /** Depots sync every second, so "the next contact" comes quickly. */
  const fastSync = (D: string) => {
    const p = join(D, 'depot.json');
    const cfg = JSON.parse(readFileSync(p, 'utf8'));
    cfg.schedule = { ...cfg.schedule, intervalMs: 1000, jitterMs: 0 };
    writeFileSync(p, JSON.stringify(cfg));
  };
  const served = (D: string) => runJson(['depot', 'status', '--dir', D]).servedGeneration as number | null;
  const waitServed = (D: string, g: number) =>
    until(`${D} to serve generation ${g}`, () => ((served(D) ?? 0) >= g ? true : undefined), {
      timeoutMs: 60_000,
    }).catch((e: Error) =>
      Promise.reject(new Error(`${e.message}; last lines: ${lines.slice(-8).join(' | ')}`)),
    );
  const certSerial = (D: string) =>
    certificateInfo(readFileSync(join(D, 'tls', 'depot-cert.pem'), 'utf8')).serial;
  const fetchOk = (A: string, spec: string, expected: Buffer) => {
    const out = join(tmp.dir, 'out', `${A.split('/').pop()}-${spec.replace('@', '-')}.bin`);
    const r = runCli(['agent', 'fetch', '--dir', A, spec, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(sha(readFileSync(out))).toBe(sha(expected));
  };
  const agentInit = (M: string, masterUrl: string, fp: string, A: string, name: string, depotUrl: string) => {
    const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
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
      token,
      '--name',
      name,
      '--depot',
      depotUrl,
    ]);
  };

  it('publish, back up, publish more, lose the master, restore into a new folder, publish: the whole fleet follows', async () => {
    mkdirSync(join(tmp.dir, 'out'));
    const M = join(tmp.dir, 'M');
    const B = join(tmp.dir, 'offsite');
    const [DA, DB, DC, S] = ['depot-a', 'depot-b', 'depot-c', 'ship'].map((n) => join(tmp.dir, n)) as [
      string,
      string,
      string,
      string,
    ];
    const [A1, A2, A3] = ['pc-1', 'pc-2', 'pc-3'].map((n) => join(tmp.dir, n)) as [string, string, string];
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const v = [1, 2, 3].map((i) => pseudoRandomBytes(300_000 + i * 1000, 40 + i));
    v.forEach((b, i) => writeFileSync(join(tmp.dir, `v${i + 1}.bin`), b));
    const publish = (dir: string, i: number) =>
      runJson([
        'master',
        'publish',
        '--dir',
        dir,
        '--name',
        'tool',
        '--version',
        String(i),
        join(tmp.dir, `v${i}.bin`),
      ]).generation as number;
    expect(publish(M, 1)).toBe(2);

    const [mp, ap, bp, cp] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    let master = serve('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]);
    await waitForHttps(masterUrl);

    // The fleet before the backup: two tiers, an agent, an air-gapped depot at generation 2.
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    fastSync(DA);
    serve('depot-a', ['depot', 'serve', '--dir', DA]);
    await waitForHttps(`https://127.0.0.1:${ap}`);
    const parent = `https://127.0.0.1:${ap}`;
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DB, name: 'depot-b', port: bp, parent });
    fastSync(DB);
    serve('depot-b', ['depot', 'serve', '--dir', DB]);
    await waitForHttps(`https://127.0.0.1:${bp}`);
    await waitServed(DB, 2);
    agentInit(M, masterUrl, fp, A1, 'pc-1', `https://127.0.0.1:${bp}`);
    fetchOk(A1, 'tool@1', v[0]!);
    const shipInit = runJson([
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
    ]);
    runJson([
      'master',
      'approve',
      '--dir',
      M,
      '--request',
      shipInit.request,
      '--out',
      join(tmp.dir, 'reply.bundle'),
    ]);
    expect(runJson(['depot', 'import', '--dir', S, join(tmp.dir, 'reply.bundle')]).enrolled).toBe(true);
    const bundle = (dir: string, name: string) =>
      runJson(['master', 'export', '--dir', dir, '--depot', 'ship', '--out', join(tmp.dir, name)])
        .file as string;
    runJson(['depot', 'import', '--dir', S, bundle(M, 'full-1.bundle')]);
    expect(served(S)).toBe(2);

    // The backup, from another process while the master serves, to other media.
    const backup = runCli(['master', 'backup', '--dir', M, '--out', B, '--json'], { env });
    expect(backup.status, backup.stderr).toBe(0);
    expect(statSync(backup.json.file).mode & 0o777).toBe(0o600);

    // After the backup: a new version, depot-c and agent pc-2 enrolled, depot-a renewed, the ship updated.
    expect(publish(M, 2)).toBe(3);
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DC, name: 'depot-c', port: cp, parent });
    fastSync(DC);
    serve('depot-c', ['depot', 'serve', '--dir', DC]);
    await waitForHttps(`https://127.0.0.1:${cp}`);
    agentInit(M, masterUrl, fp, A2, 'pc-2', `https://127.0.0.1:${cp}`);
    const firstA = certSerial(DA);
    expect(runCli(['master', 'renew', '--dir', M, 'depot-a']).status).toBe(0);
    const renewedA = await until('depot-a to renew', () =>
      certSerial(DA) !== firstA ? certSerial(DA) : undefined,
    );
    await Promise.all([waitServed(DA, 3), waitServed(DB, 3), waitServed(DC, 3)]);
    fetchOk(A1, 'tool@2', v[1]!);
    fetchOk(A2, 'tool@2', v[1]!);
    runJson(['depot', 'import', '--dir', S, bundle(M, 'full-2.bundle')]);
    expect(served(S)).toBe(3);

    // The disaster: the master and its folder are gone.
    await master.stop();
    rmSync(M, { recursive: true, force: true });

    // Restore into a new folder (refused into a folder that is not empty), serve it at the same address.
    const M2 = join(tmp.dir, 'M-restored');
    const restored = runCli(
      ['master', 'restore', '--dir', M2, '--fingerprint', fp, backup.json.file, '--json'],
      { env },
    );
    expect(restored.status, restored.stderr).toBe(0);
    expect(restored.json).toMatchObject({ fingerprint: fp, fromGeneration: 2, generation: 2 + STEP });
    master = serve('master', ['master', 'serve', '--dir', M2, '--listen', `127.0.0.1:${mp}`]);
    await waitForHttps(masterUrl);

    // Publish again: everyone follows, without enrolling again.
    expect(publish(M2, 3)).toBe(3 + STEP);
    await Promise.all([waitServed(DA, 3 + STEP), waitServed(DB, 3 + STEP), waitServed(DC, 3 + STEP)]);
    fetchOk(A1, 'tool@3', v[2]!);
    fetchOk(A2, 'tool@3', v[2]!);
    // The air-gapped depot takes a bundle of the restored master.
    expect(
      runJson(['depot', 'import', '--dir', S, bundle(M2, 'full-3.bundle')]).generation ?? served(S),
    ).toBe(3 + STEP);
    expect(served(S)).toBe(3 + STEP);

    // Certificates issued after the backup were adopted: depot-c (unknown) and depot-a's renewal.
    const ctx = await openMaster(M2, silentLogger());
    try {
      expect(await byName(ctx.db, 'depot-c')).toMatchObject({ state: 'approved', approvedBy: 'restore' });
      expect(await byName(ctx.db, 'depot-a')).toMatchObject({ certSerial: renewedA });
      const adopted = (await listAudit(ctx.db, { limit: 50 })).entries.filter(
        (e) => e.action === 'machine.adopt',
      );
      expect(adopted.map((e) => e.target)).toEqual(expect.arrayContaining(['depot-c', 'depot-a']));
    } finally {
      await ctx.close();
    }

    // Enrollment and renewal keep working: a new agent, and depot-c (adopted) renews on request.
    agentInit(M2, masterUrl, fp, A3, 'pc-3', `https://127.0.0.1:${cp}`);
    fetchOk(A3, 'tool@3', v[2]!);
    const firstC = certSerial(DC);
    expect(runCli(['master', 'renew', '--dir', M2, 'depot-c']).status).toBe(0);
    await until('depot-c to renew', () => (certSerial(DC) !== firstC ? true : undefined));
    expect(existsSync(join(M2, 'restored.json'))).toBe(true);
  }, 300_000);
});
