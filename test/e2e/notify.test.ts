import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runJson, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { createCa, issueServerCertificate, loadCa } from '../../src/pki/ca.js';
import { directoryLdif, startSlapd, SUFFIX, type Slapd } from '../helpers/slapd.js';
import { startSmtp, type Smtp } from '../helpers/smtp.js';
import { until } from '../helpers/wait.js';

/**
 * A real `depotsync master serve` with alert e-mail (aiosmtpd, STARTTLS + AUTH) and directory login (slapd,
 * ldap:// + StartTLS), both from Debian on 127.0.0.1: the master's own low-disk alert arrives by e-mail, a
 * directory user logs in to the dashboard over HTTPS, and with the directory stopped a local admin still
 * does while a directory user is told the directory is unreachable. Needs the built CLI.
 */
describe('alert e-mail and directory login on a serving master', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-notify-e2e-'));
  const M = join(dir, 'master');
  const logs: string[] = [];
  let smtp: Smtp;
  let slapd: Slapd;
  let master: Service | undefined;
  let url = '';
  let masterCa = '';
  let localToken = '';

  beforeAll(async () => {
    const ca = createCa({ commonName: 'organisation CA' });
    const caFile = join(dir, 'org-ca.pem');
    writeFileSync(caFile, ca.certPem);
    const issue = () =>
      issueServerCertificate(loadCa(ca.keyPem, ca.certPem), {
        commonName: 'svc',
        ipAddresses: ['127.0.0.1'],
      });
    const smtpCert = issue();
    writeFileSync(join(dir, 'smtp.crt'), smtpCert.certPem);
    writeFileSync(join(dir, 'smtp.key'), smtpCert.keyPem, { mode: 0o600 });
    mkdirSync(join(dir, 'smtp'));
    [smtp, slapd] = await Promise.all([
      startSmtp(join(dir, 'smtp'), { cert: join(dir, 'smtp.crt'), key: join(dir, 'smtp.key') }),
      startSlapd(join(dir, 'slapd'), {
        tls: issue(),
        ldif: directoryLdif({
          people: { alice: 'alice pw', bob: 'bob pw' },
          service: { cn: 'depotsync', password: 'search secret' },
          groups: { 'depotsync-admins': ['alice'], 'depotsync-viewers': ['bob'] },
        }),
      }),
    ]);

    runJson(['master', 'init', '--dir', M]);
    localToken = runJson([
      'master',
      'operator',
      'add',
      '--dir',
      M,
      '--name',
      'local-admin',
      '--role',
      'admin',
    ]).token as string;
    writeFileSync(join(M, 'smtp-password'), 'right horse battery\n', { mode: 0o600 });
    writeFileSync(join(M, 'ldap-password'), 'search secret\n', { mode: 0o600 });
    const config = JSON.parse(readFileSync(join(M, 'master.json'), 'utf8'));
    const alerts = {
      smtp: {
        host: '127.0.0.1',
        port: smtp.port,
        from: 'depotsync@example.org',
        to: ['ops@example.org'],
        user: 'alerts',
        passwordFile: 'smtp-password',
        caFile,
        backoffMs: 200,
      },
    };
    const directory = {
      ldap: {
        url: slapd.ldapUrl,
        caFile,
        bindDn: `cn=depotsync,ou=services,${SUFFIX}`,
        bindPasswordFile: 'ldap-password',
        baseDn: `ou=people,${SUFFIX}`,
        groups: {
          [`cn=depotsync-admins,ou=groups,${SUFFIX}`]: 'admin',
          [`cn=depotsync-viewers,ou=groups,${SUFFIX}`]: 'viewer',
        },
      },
    };
    writeFileSync(join(M, 'master.json'), JSON.stringify({ ...config, alerts, directory }, null, 2));
    // Any free space is "low" with this threshold: the master raises its own alert as soon as it serves.
    writeFileSync(
      join(M, 'admin.json'),
      JSON.stringify({ alerts: { lowDiskBytes: Number.MAX_SAFE_INTEGER } }),
    );
    masterCa = readFileSync(join(M, 'ca', 'ca-cert.pem'), 'utf8');

    const port = await freePort();
    url = `https://127.0.0.1:${port}`;
    master = startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`], {
      log: (l) => logs.push(l),
    });
    await waitForHttps(url);
  });

  afterAll(async () => {
    await master?.stop();
    await Promise.all([smtp?.stop(), slapd?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the master's own alert arrives by e-mail, over STARTTLS, authenticated", async () => {
    const mail = await until(
      'an alert e-mail from the master',
      () => smtp.messages().find((m) => m.data.includes('low-disk:master (store)')),
      { timeoutMs: 20_000 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}; master log:\n${logs.join('\n')}`);
    });
    expect(mail).toMatchObject({ to: ['ops@example.org'], tls: true, user: 'alerts' });
    expect(mail.data).toMatch(/^Subject: \[depotsync master\] ERROR raised: the master has/m);
  });

  it('directory and local logins at the dashboard, and the directory going down', async () => {
    const alice = await login('alice', 'alice pw');
    expect(alice.status).toBe(303);
    expect(alice.location).toBe('/dashboard');
    expect((await login('alice', 'nope')).status).toBe(401);

    await slapd.stop();
    const local = await login('local-admin', localToken);
    expect(local.status).toBe(303);
    const bob = await login('bob', 'bob pw');
    expect(bob.status).toBe(503);
    expect(bob.body).toContain('The directory cannot be reached');
    const list = runJson(['master', 'operator', 'list', '--dir', M]).operators as { name: string }[];
    expect(list.map((o) => o.name).sort()).toEqual(['alice', 'local-admin']);
  });

  /** The login form over HTTPS, as a browser does it: the page, its cookie and CSRF token, the POST. */
  async function login(operator: string, secret: string) {
    const page = await request('GET', '/dashboard/login');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
    const cookie = page.cookies.join('; ');
    const form = new URLSearchParams({ _csrf: csrf, operator, token: secret, code: '' }).toString();
    return request('POST', '/dashboard/login', form, cookie);
  }

  function request(method: string, path: string, form?: string, cookie?: string) {
    return new Promise<{ status: number; body: string; location?: string; cookies: string[] }>(
      (resolve, reject) => {
        const req = https.request(
          `${url}${path}`,
          {
            method,
            ca: masterCa,
            headers: {
              ...(cookie ? { cookie } : {}),
              ...(form ? { 'content-type': 'application/x-www-form-urlencoded', origin: url } : {}),
            },
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                body,
                ...(res.headers.location ? { location: res.headers.location } : {}),
                cookies: (res.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!),
              }),
            );
          },
        );
        req.on('error', reject);
        req.end(form);
      },
    );
  }
});
