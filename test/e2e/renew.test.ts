import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
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
import { certificateInfo, normalizeSerial } from '../../src/pki/cert-info.js';
import { openMaster } from '../../master/context.js';
import { byName, certificatesOf } from '../../master/db/machines.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The serial of the certificate a TLS server presents right now (a fresh handshake). */
function servedSerial(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' }, () => {
      const serial = normalizeSerial(s.getPeerCertificate().serialNumber);
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

/** `depotsync master renew NAME` from another process; returns the serial on record when it marked it. */
function askRenewal(M: string, name: string): string {
  const r = runCli(['master', 'renew', '--dir', M, name, '--json']);
  expect(r.status).toBe(0);
  expect(r.json).toMatchObject({ name, state: 'approved', renewRequested: true });
  return r.json.serial as string;
}

/** The master's record of a machine (read while it serves: WAL readers do not block it). */
async function record(M: string, name: string) {
  const ctx = await openMaster(M, silentLogger());
  try {
    return { machine: await byName(ctx.db, name), certificates: await certificatesOf(ctx.db, name) };
  } finally {
    await ctx.close();
  }
}

/**
 * With real processes: `master renew DEPOT` → the serving depot renews at its next
 * contact (before its next sync), presents the new certificate to agents without a restart and keeps
 * syncing with it; `master renew AGENT` → the agent renews at the start of its next fetch.
 */
describe('certificate renewal (separate processes)', () => {
  const tmp = tempDir('depotsync-renew-e2e-');
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });

  it('a depot and an agent renew when the operator asks, and go on working with the new certificates', async () => {
    const M = join(tmp.dir, 'M');
    const D = join(tmp.dir, 'D');
    const A = join(tmp.dir, 'A');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const v1 = pseudoRandomBytes(400_000, 7);
    writeFileSync(join(tmp.dir, 'v1.bin'), v1);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(tmp.dir, 'v1.bin')]);
    const [mp, dp] = [await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp });
    // Sync every second, so "the next contact" comes quickly.
    const cfgPath = join(D, 'depot.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    cfg.schedule = { ...cfg.schedule, intervalMs: 1000, jitterMs: 0 };
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const caPem = readFileSync(join(D, 'tls', 'ca-cert.pem'), 'utf8');
    const firstSerial = certificateInfo(readFileSync(join(D, 'tls', 'depot-cert.pem'), 'utf8')).serial;
    services.push(startService('depot-1', ['depot', 'serve', '--dir', D]));
    const depotUrl = `https://127.0.0.1:${dp}`;
    await waitForHttps(depotUrl);
    expect(await servedSerial(dp, caPem)).toBe(firstSerial);

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
      '--name',
      'pc-1',
      '--depot',
      depotUrl,
    ]);

    // The operator asks; the depot renews before its next sync and serves with the new certificate.
    expect(askRenewal(M, 'depot-1')).toBe(firstSerial);
    const renewedSerial = await until('the depot to renew', () => {
      const now = certificateInfo(readFileSync(join(D, 'tls', 'depot-cert.pem'), 'utf8')).serial;
      return now !== firstSerial ? now : undefined;
    });
    await until('the depot to present the new certificate', async () =>
      (await servedSerial(dp, caPem)) === renewedSerial ? true : undefined,
    );

    // It keeps syncing with the new certificate: a new version reaches the agent through the depot.
    const v2 = pseudoRandomBytes(300_000, 8);
    writeFileSync(join(tmp.dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(tmp.dir, 'v2.bin')]);
    const agentSerial = certificateInfo(readFileSync(join(A, 'keys', 'agent-cert.pem'), 'utf8')).serial;
    expect(askRenewal(M, 'pc-1')).toBe(agentSerial); // and the agent is asked to renew too
    await until('the depot to sync generation 3', () =>
      runCli(['status', '--dir', D, '--json']).json?.servedGeneration === 3 ? true : undefined,
    );
    const out = join(tmp.dir, 'out.bin');
    const fetched = runCli(['agent', 'fetch', '--dir', A, 'tool@2', '--out', out, '--json']);
    expect(fetched.status).toBe(0);
    const got = fetched.json;
    expect(got.source).toEqual([`127.0.0.1-${dp}`]);
    expect(sha(readFileSync(out))).toBe(sha(v2));
    const agentNow = certificateInfo(readFileSync(join(A, 'keys', 'agent-cert.pem'), 'utf8')).serial;
    expect(agentNow).not.toBe(agentSerial);
    // The master has the new serials on record, the marks cleared, and the old certificates not revoked.
    const depot = await record(M, 'depot-1');
    expect(depot.machine).toMatchObject({ certSerial: renewedSerial, renewRequested: false });
    expect(depot.certificates.map((c) => [c.serial, c.revokedAt ?? null]).sort()).toEqual(
      [
        [firstSerial, null],
        [renewedSerial, null],
      ].sort(),
    );
    expect((await record(M, 'pc-1')).machine).toMatchObject({ certSerial: agentNow, renewRequested: false });
  }, 120_000);
});
