import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { createCa, issueServerCertificate, loadCa } from '../../../src/pki/ca.js';
import { adminSettings } from '../../../master/admin/config.js';
import { MailNotifier } from '../../../master/admin/mail.js';
import { decodeSmtpSettings, DEFAULT_SMTP, type SmtpSettings } from '../../../master/admin/mail-settings.js';
import { AdminService } from '../../../master/admin/service.js';
import { loadMasterConfig } from '../../../master/config.js';
import { openMaster } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import type { WebhookEvent } from '../../../master/admin/webhook.js';
import { startSmtp, type Smtp } from '../../helpers/smtp.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * Alert e-mail against a real SMTP server (aiosmtpd from Debian, test/helpers/smtp-server.py) on
 * 127.0.0.1: STARTTLS with a certificate from a test CA, AUTH, and the bad cases (no STARTTLS offered,
 * wrong password, a certificate from another CA).
 */
const event = (message: string, event: WebhookEvent['event'] = 'raised'): WebhookEvent => ({
  event,
  master: 'm1',
  at: '2026-12-07T21:00:00.000Z',
  alert: { key: 'silent:d1', kind: 'silent', subject: 'd1', level: 'error', message },
});

describe('alert e-mail over SMTP (real server, STARTTLS, AUTH)', () => {
  const tmp = tempDir('depotsync-mail-');
  const f = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text, { mode: 0o600 });
    return p;
  };
  let tlsServer: Smtp;
  let plainServer: Smtp;
  let foreignServer: Smtp;
  let caFile: string;
  let passwordFile: string;
  const settings = (port: number, over: Partial<SmtpSettings> = {}): SmtpSettings => ({
    ...DEFAULT_SMTP,
    host: '127.0.0.1',
    port,
    from: 'depotsync@example.org',
    to: ['ops@example.org', 'oncall@example.org'],
    user: 'alerts',
    passwordFile,
    caFile,
    timeoutMs: 5000,
    attempts: 2,
    backoffMs: 0,
    ...over,
  });

  beforeAll(async () => {
    const ca = createCa({ commonName: 'test smtp CA' });
    const other = createCa({ commonName: 'another CA' });
    const leaf = issueServerCertificate(loadCa(ca.keyPem, ca.certPem), {
      commonName: 'smtp',
      ipAddresses: ['127.0.0.1'],
    });
    const foreign = issueServerCertificate(loadCa(other.keyPem, other.certPem), {
      commonName: 'smtp',
      ipAddresses: ['127.0.0.1'],
    });
    caFile = f('ca.pem', ca.certPem);
    passwordFile = f('smtp-password', 'right horse battery\n');
    const dirs = ['tls', 'plain', 'foreign'].map((d) => {
      mkdirSync(join(tmp.dir, d));
      return join(tmp.dir, d);
    });
    [tlsServer, plainServer, foreignServer] = await Promise.all([
      startSmtp(dirs[0]!, { cert: f('smtp.crt', leaf.certPem), key: f('smtp.key', leaf.keyPem) }),
      startSmtp(dirs[1]!),
      startSmtp(dirs[2]!, { cert: f('foreign.crt', foreign.certPem), key: f('foreign.key', foreign.keyPem) }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([tlsServer?.stop(), plainServer?.stop(), foreignServer?.stop()]);
    tmp.cleanup();
  });

  it('sends the alert after STARTTLS and AUTH, to every recipient', async () => {
    const mail = new MailNotifier({ settings: settings(tlsServer.port), log: silentLogger() });
    mail.notify(event('depot d1 has not been heard from for 2 h'));
    await mail.idle();
    await mail.close();
    expect(mail.state()).toMatchObject({ sent: 1, failed: 0, lastFailure: null });
    const [m, ...rest] = tlsServer.messages();
    expect(rest).toEqual([]);
    expect(m).toMatchObject({
      from: 'depotsync@example.org',
      to: ['ops@example.org', 'oncall@example.org'],
      tls: true,
      user: 'alerts',
    });
    expect(m!.data).toMatch(/^Subject: \[depotsync m1\] ERROR raised: depot d1 has not been heard from/m);
    expect(m!.data).toMatch(/Alert: +silent:d1/);
    expect(tlsServer.auths()).toEqual([
      { mechanism: expect.any(String), tls: true, ok: true, login: 'alerts' },
    ]);
  });

  it('a server that does not offer STARTTLS gets nothing: no password, no alert, a clear error', async () => {
    const failed: string[] = [];
    const mail = new MailNotifier({
      settings: settings(plainServer.port),
      log: silentLogger(),
      onFailed: (_e, err) => failed.push(err),
    });
    mail.notify(event('x'));
    await mail.idle();
    await mail.close();
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(/STARTTLS failed or not offered; nothing was sent in cleartext/);
    expect(mail.state()).toMatchObject({ sent: 0, failed: 1, lastFailure: { error: failed[0] } });
    expect(plainServer.messages()).toEqual([]);
    expect(plainServer.auths()).toEqual([]);
  });

  it('wrong credentials: refused by the server, reported as such, nothing delivered', async () => {
    const wrong = f('wrong-password', 'wrong horse\n');
    const before = tlsServer.messages().length;
    const mail = new MailNotifier({
      settings: settings(tlsServer.port, { passwordFile: wrong, attempts: 1 }),
      log: silentLogger(),
    });
    mail.notify(event('y'));
    await mail.idle();
    await mail.close();
    expect(mail.state().lastFailure?.error).toMatch(/authentication refused \(check user and passwordFile\)/);
    expect(tlsServer.messages()).toHaveLength(before);
    expect(tlsServer.auths().at(-1)).toMatchObject({ tls: true, ok: false });
  });

  it('a server certificate from another CA is refused before AUTH', async () => {
    const before = foreignServer.auths().length;
    const mail = new MailNotifier({
      settings: settings(foreignServer.port, { attempts: 1 }),
      log: silentLogger(),
    });
    mail.notify(event('z'));
    await mail.idle();
    await mail.close();
    expect(mail.state().lastFailure?.error).toMatch(/certificate/i);
    expect(foreignServer.auths()).toHaveLength(before);
    expect(foreignServer.messages()).toEqual([]);
  });

  it('retries with doubling delays, then gives up with the cause', async () => {
    const delays: number[] = [];
    mkdirSync(join(tmp.dir, 'gone'));
    const closed = await startSmtp(join(tmp.dir, 'gone'));
    await closed.stop(); // a port nothing listens on any more
    const mail = new MailNotifier({
      settings: settings(closed.port, { attempts: 4, backoffMs: 250 }),
      log: silentLogger(),
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    mail.notify(event('gone'));
    await mail.idle();
    expect(delays).toEqual([250, 500, 1000]);
    expect(mail.state()).toMatchObject({ sent: 0, failed: 1 });
    expect(mail.state().lastFailure?.error).toMatch(/ECONNREFUSED|connect/i);
    await mail.close();
  });

  it('master.json alerts.smtp: an alert raised by the master arrives by e-mail; failures become an alert and a metric', async () => {
    const t = tempDir('depotsync-mail-master-');
    const dir = join(t.dir, 'M');
    await initMaster(dir, { log: silentLogger() });
    const cfgPath = join(dir, 'master.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    const smtp = {
      host: '127.0.0.1',
      port: tlsServer.port,
      from: 'depotsync@example.org',
      to: ['ops@example.org'],
      user: 'alerts',
      passwordFile: 'smtp-password',
      caFile,
      attempts: 1,
      timeoutMs: 5000,
    };
    writeFileSync(join(dir, 'smtp-password'), 'right horse battery\n', { mode: 0o600 });
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, alerts: { smtp } }));
    const ctx = await openMaster(dir, silentLogger());
    let free = 10e9;
    const admin = new AdminService({
      ctx,
      settings: adminSettings({ alerts: { lowDiskBytes: 1e9 } }),
      freeDiskBytes: () => free,
    });
    try {
      const before = tlsServer.messages().length;
      free = 0.5e9;
      expect((await admin.status({ packages: false })).alerts.map((a) => a.key)).toContain(
        'low-disk:master (store)',
      );
      await admin.mail!.idle();
      const got = tlsServer.messages().slice(before);
      expect(got).toHaveLength(1);
      expect(got[0]!.data).toMatch(/^Subject: \[depotsync master\] WARNING raised: the master has/m);
      expect(got[0]!.data).toMatch(/^Alert: +low-disk:master \(store\)$/m);
      const metrics = await admin.metrics.registry.metrics();
      expect(metrics).toMatch(/depotsync_alert_notifications_total\{channel="mail",outcome="delivered"\} 1/);
    } finally {
      await admin.close();
      await ctx.close();
    }

    // The same master pointed at a server without STARTTLS: the failure is an alert of its own.
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, alerts: { smtp: { ...smtp, port: plainServer.port } } }));
    const ctx2 = await openMaster(dir, silentLogger());
    const admin2 = new AdminService({
      ctx: ctx2,
      settings: adminSettings({ alerts: { lowDiskBytes: 1e9 } }),
      freeDiskBytes: () => 10e9,
    });
    try {
      free = 10e9;
      await admin2.status({ packages: false }); // clears low-disk: a "cleared" e-mail, refused
      await admin2.mail!.idle();
      const alerts = (await admin2.status({ packages: false })).alerts;
      const n = alerts.find((a) => a.kind === 'notification');
      expect(n).toMatchObject({ level: 'error', subject: 'alert e-mail' });
      expect(n!.message).toMatch(/alert e-mail to 127\.0\.0\.1:\d+ is failing since .*STARTTLS/);
      const metrics = await admin2.metrics.registry.metrics();
      expect(metrics).toMatch(/depotsync_alert_notifications_total\{channel="mail",outcome="failed"\} 1/);
      expect(plainServer.messages()).toEqual([]);
    } finally {
      await admin2.close();
      await ctx2.close();
      t.cleanup();
    }
  });

  it('settings: refused by name when incomplete or inconsistent; a missing password file at start', () => {
    const bad = (v: unknown, re: RegExp) => {
      try {
        decodeSmtpSettings('master.json: alerts.smtp', v, '/m');
        expect.unreachable();
      } catch (e) {
        expect(isDepotsyncError(e, 'bad-input')).toBe(true);
        expect((e as Error).message).toMatch(re);
      }
    };
    const ok = { host: 'smtp.example.org', from: 'a@example.org', to: ['b@example.org'] };
    expect(decodeSmtpSettings('w', null, '/m')).toBeNull();
    expect(decodeSmtpSettings('w', { ...ok, user: 'u', passwordFile: 'pw' }, '/m')).toMatchObject({
      port: 587,
      passwordFile: '/m/pw',
      caFile: null,
    });
    bad({ ...ok, to: [] }, /to must be a non-empty list/);
    bad({ ...ok, to: ['not an address'] }, /to\[0\] must be a string matching/);
    bad({ ...ok, user: 'u' }, /user and passwordFile go together/);
    bad({ ...ok, password: 'inline' }, /unknown setting "password"/);
    bad({ ...ok, port: 0 }, /port must be an integer from 1 to 65535/);
    bad({ ...ok, host: '' }, /host must be a string/);
    expect(() => loadMasterConfigWith({ alerts: { smtp: { ...ok, sendmail: true } } })).toThrow(
      /master.json: alerts.smtp: unknown setting "sendmail"/,
    );
    expect(
      () =>
        new MailNotifier({
          settings: settings(1, { passwordFile: join(tmp.dir, 'absent') }),
          log: silentLogger(),
        }),
    ).toThrow(/SMTP password file .*absent/);
  });

  function loadMasterConfigWith(extra: Record<string, unknown>) {
    const p = join(tmp.dir, 'master.json');
    writeFileSync(p, JSON.stringify({ name: 'm', ...extra }));
    return loadMasterConfig(p);
  }
});
