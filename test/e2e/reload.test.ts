import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { demoBytes } from '../../cli/demo/demo.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { createCa, issueServerCertificate, loadCa } from '../../src/pki/ca.js';
import { runCli } from '../helpers/cli.js';

type Line = Record<string, any>;

/** A service whose JSON log lines are kept, so a test can wait for one. */
function logged(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { service: Service; lines: Line[] } {
  const lines: Line[] = [];
  const service = startService(name, args, {
    // '' = no override: the service's own default (info) and its configuration's logLevel apply.
    env: { DEPOTSYNC_LOG_LEVEL: '', ...env },
    log: (line) => {
      try {
        lines.push(JSON.parse(line.slice(line.indexOf('{'))));
      } catch {
        // not a JSON log line (the "listening on" line)
      }
    },
  });
  return { service, lines };
}

async function waitForLine(
  lines: Line[],
  from: number,
  match: (l: Line) => boolean,
  what: string,
): Promise<Line> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const hit = lines.slice(from).find(match);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Issuer common name of the certificate a TLS listener presents. */
function servedIssuer(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cn = s.getPeerCertificate().issuer.CN;
      s.end();
      resolve(Array.isArray(cn) ? cn.join(',') : cn);
    });
    s.on('error', reject);
  });
}

function healthGeneration(url: string): Promise<number | null> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString('utf8')).generation as number | null);
        } catch {
          resolve(null);
        }
      });
    });
    req.on('error', () => resolve(null));
  });
}

function editJson(path: string, edit: (v: any) => void): void {
  const v = JSON.parse(readFileSync(path, 'utf8'));
  edit(v);
  writeFileSync(path, JSON.stringify(v, null, 2));
}

/**
 * Real processes: `master serve` and `depot serve` log at info by default, reload their configuration on
 * SIGHUP (live settings applied, the others reported), and serve an operator certificate from another CA
 * while machines keep authenticating with the internal CA. A certificate whose key does not match, or
 * that expired, is refused at start and at reload, and the certificate in use stays.
 */
describe('SIGHUP reload and operator certificates (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-reload-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('reloads live settings, swaps the listener certificate and refuses bad ones', async () => {
    const M = join(dir, 'master');
    const D = join(dir, 'depot');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(dir, 'v1.bin'), demoBytes(256 * 1024));
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', join(dir, 'v1.bin')]);

    // The organisation's CA and certificates from it: good, wrong key, expired.
    const org = createCa({ commonName: 'Example Org CA' });
    const orgCa = loadCa(org.keyPem, org.certPem);
    const hostCert = (o: { notBefore?: Date; notAfter?: Date } = {}) =>
      issueServerCertificate(orgCa, {
        commonName: 'depotsync.example.org',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        ...o,
      });
    const good = hostCert();
    const other = hostCert();
    const expired = hostCert({
      notBefore: new Date(Date.now() - 60 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const files = {
      ca: join(dir, 'org-ca.pem'),
      cert: join(dir, 'org-cert.pem'),
      key: join(dir, 'org-key.pem'),
      otherKey: join(dir, 'other-key.pem'),
      expiredCert: join(dir, 'expired-cert.pem'),
      expiredKey: join(dir, 'expired-key.pem'),
    };
    writeFileSync(files.ca, org.certPem);
    writeFileSync(files.cert, `${good.certPem}${org.certPem}`);
    writeFileSync(files.key, good.keyPem, { mode: 0o600 });
    writeFileSync(files.otherKey, other.keyPem, { mode: 0o600 });
    writeFileSync(files.expiredCert, expired.certPem);
    writeFileSync(files.expiredKey, expired.keyPem, { mode: 0o600 });

    // Refused at start: a key that is not the certificate's.
    const masterJson = join(M, 'master.json');
    editJson(masterJson, (v) => (v.tls = { certFile: files.cert, keyFile: files.otherKey }));
    const mp = await freePort();
    const refused = runCli(['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain(`tls.keyFile ${files.otherKey} is not the key of the certificate`);
    editJson(masterJson, (v) => (v.tls = { certFile: '', keyFile: '' }));

    const masterUrl = `https://127.0.0.1:${mp}`;
    const master = logged('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]);
    services.push(master.service);
    await waitForHttps(masterUrl);
    // Info by default: the start-up line is there, no debug line yet.
    await waitForLine(master.lines, 0, (l) => l.msg === 'master serving', 'the info line of master serve');
    expect(master.lines.some((l) => l.level === 20)).toBe(false);
    const internalIssuer = await servedIssuer(mp);
    expect(internalIssuer).not.toBe('Example Org CA');

    // The depot enrolls while the master still serves its internal certificate, then trusts the org CA.
    const dp = await freePort();
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-a', port: dp });
    editJson(join(D, 'depot.json'), (v) => {
      v.tls = { certFile: '', keyFile: '', caFile: files.ca };
      v.schedule = { ...v.schedule, intervalMs: 3_600_000, jitterMs: 0 };
    });

    // SIGHUP: log level, operator certificate (live), a GC interval (needs a restart), an alert threshold.
    editJson(masterJson, (v) => {
      v.logLevel = 'debug';
      v.tls = { certFile: files.cert, keyFile: files.key };
      v.gcIntervalHours = 12;
    });
    writeFileSync(join(M, 'admin.json'), JSON.stringify({ alerts: { lagGenerations: 9 } }));
    let from = master.lines.length;
    master.service.child.kill('SIGHUP');
    const reloaded = await waitForLine(
      master.lines,
      from,
      (l) => l.msg === 'configuration reloaded',
      'reload',
    );
    expect(reloaded.applied).toEqual(
      expect.arrayContaining(['logLevel', 'tls.certFile', 'tls.keyFile', 'admin.json alerts.lagGenerations']),
    );
    expect(reloaded.needsRestart).toEqual(['gcIntervalHours']);
    expect(reloaded.certificate.subject).toContain('depotsync.example.org');
    await waitForLine(
      master.lines,
      from,
      (l) => l.msg === 'changed settings take effect only after a restart of master serve',
      'the restart warning',
    );
    expect(await servedIssuer(mp)).toBe('Example Org CA');

    // A depot that trusts the org CA (tls.caFile) syncs from the master's operator certificate, with
    // its internal-CA machine certificate for mutual TLS.
    const depot = logged('depot', ['depot', 'serve', '--dir', D]);
    services.push(depot.service);
    const depotUrl = `https://127.0.0.1:${dp}`;
    await waitForHttps(depotUrl);
    await waitForLine(depot.lines, 0, (l) => l.msg === 'depot serving', 'the info line of depot serve');
    const g1 = await healthGeneration(masterUrl);
    const deadline = Date.now() + 45_000;
    while ((await healthGeneration(depotUrl)) !== g1) {
      if (Date.now() > deadline) throw new Error('depot did not sync through the operator certificate');
      await new Promise((r) => setTimeout(r, 100));
    }

    // Bad certificates at reload: refused with the reason, the operator certificate stays in use.
    for (const [tlsSetting, reason] of [
      [{ certFile: files.cert, keyFile: files.otherKey }, 'is not the key of the certificate'],
      [{ certFile: files.expiredCert, keyFile: files.expiredKey }, 'the certificate expired on'],
    ] as const) {
      editJson(masterJson, (v) => (v.tls = tlsSetting));
      from = master.lines.length;
      master.service.child.kill('SIGHUP');
      const no = await waitForLine(
        master.lines,
        from,
        (l) => l.msg === 'configuration reload refused; the running settings stay',
        'the refused reload',
      );
      expect(no.err).toContain(reason);
      expect(master.service.child.exitCode).toBe(null);
      expect(await servedIssuer(mp)).toBe('Example Org CA');
    }
    expect(await healthGeneration(masterUrl)).toBe(g1);

    // The depot: schedule and bandwidth live, its own operator certificate, a rename needs a restart.
    editJson(join(D, 'depot.json'), (v) => {
      v.logLevel = 'debug';
      v.schedule.intervalMs = 600_000;
      v.schedule.bandwidthBytesPerSecond = 1024 * 1024;
      v.tls = { certFile: files.cert, keyFile: files.key, caFile: files.ca };
      v.listen = `127.0.0.1:${dp + 1}`;
    });
    from = depot.lines.length;
    depot.service.child.kill('SIGHUP');
    const depotReload = await waitForLine(
      depot.lines,
      from,
      (l) => l.msg === 'configuration reloaded',
      'depot reload',
    );
    expect(depotReload.applied).toEqual([
      'logLevel',
      'schedule.bandwidthBytesPerSecond',
      'schedule.intervalMs',
      'tls.certFile',
      'tls.keyFile',
    ]);
    expect(depotReload.needsRestart).toEqual(['listen']);
    // Debug from now on: the sync planned again under the new interval says so.
    const planned = await waitForLine(
      depot.lines,
      from,
      (l) => l.level === 20 && l.msg === 'next sync planned',
      'a debug line after the reload',
    );
    expect(planned.inMs).toBeGreaterThan(500_000);
    expect(depot.lines.slice(0, from).some((l) => l.level === 20)).toBe(false);
    expect(await servedIssuer(dp)).toBe('Example Org CA');

    // A depot.json that does not validate is refused as a whole; the depot keeps serving.
    editJson(join(D, 'depot.json'), (v) => (v.schedule.intervalMs = 5));
    from = depot.lines.length;
    depot.service.child.kill('SIGHUP');
    const bad = await waitForLine(
      depot.lines,
      from,
      (l) => l.msg === 'configuration reload refused; the running settings stay',
      'the refused depot reload',
    );
    expect(bad.err).toContain('schedule.intervalMs must be an integer');
    expect(await healthGeneration(depotUrl)).toBe(g1);
  }, 180_000);
});
