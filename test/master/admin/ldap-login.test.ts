import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Attribute, Change, Client } from 'ldapts';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { createCa, issueServerCertificate, loadCa } from '../../../src/pki/ca.js';
import { DirectoryLogin, escapeFilterValue } from '../../../master/admin/ldap-login.js';
import { decodeLdapSettings, DEFAULT_LDAP, type LdapSettings } from '../../../master/admin/ldap-settings.js';
import { listAudit } from '../../../master/db/audit.js';
import { getOperator } from '../../../master/db/operators.js';
import { enableTotp } from '../../../master/admin/totp.js';
import {
  directoryLdif,
  ROOT_DN,
  ROOT_PASSWORD,
  startSlapd,
  SUFFIX,
  type Slapd,
} from '../../helpers/slapd.js';
import { tempDir } from '../../helpers/tmp.js';
import { adminFixture, Browser, type AdminFixture } from './helpers.js';

/**
 * Operator login through a real directory: a throw-away slapd (Debian) on 127.0.0.1 with a certificate
 * from a test CA, reached over ldaps:// and over ldap:// with StartTLS.
 */
const ADMINS = `cn=depotsync-admins,ou=groups,${SUFFIX}`;
const VIEWERS = `cn=depotsync-viewers,ou=groups,${SUFFIX}`;

async function expectCode(p: Promise<unknown>, code: string, text: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(isDepotsyncError(e, code as never), `expected a ${code} error, got ${String(e)}`).toBe(true);
  expect((e as Error).message).toMatch(text);
}

describe('directory login (LDAP over TLS, real slapd)', () => {
  const tmp = tempDir('depotsync-ldap-');
  let slapd: Slapd;
  let plainSlapd: Slapd;
  let settings: LdapSettings;

  beforeAll(async () => {
    const ca = createCa({ commonName: 'test directory CA' });
    const leaf = issueServerCertificate(loadCa(ca.keyPem, ca.certPem), {
      commonName: 'ldap',
      ipAddresses: ['127.0.0.1'],
    });
    const caFile = join(tmp.dir, 'ldap-ca.pem');
    writeFileSync(caFile, ca.certPem);
    const bindPasswordFile = join(tmp.dir, 'bind-password');
    writeFileSync(bindPasswordFile, 'search secret\n', { mode: 0o600 });
    const ldif = directoryLdif({
      people: { alice: 'alice pw', bob: 'bob pw', carol: 'carol pw', 'op-admin': 'x' },
      service: { cn: 'depotsync', password: 'search secret' },
      groups: { 'depotsync-admins': ['alice'], 'depotsync-viewers': ['alice', 'bob'], unmapped: ['carol'] },
    });
    [slapd, plainSlapd] = await Promise.all([
      startSlapd(join(tmp.dir, 'slapd'), { ldif, tls: leaf }),
      startSlapd(join(tmp.dir, 'slapd-no-tls'), { ldif }),
    ]);
    settings = {
      ...DEFAULT_LDAP,
      url: slapd.ldapsUrl,
      caFile,
      bindDn: `cn=depotsync,ou=services,${SUFFIX}`,
      bindPasswordFile,
      baseDn: `ou=people,${SUFFIX}`,
      groups: { [ADMINS]: 'admin', [VIEWERS]: 'viewer' },
      timeoutMs: 3000,
    };
  });
  afterAll(async () => {
    await Promise.all([slapd?.stop(), plainSlapd?.stop()]);
    tmp.cleanup();
  });

  it('ldaps:// and ldap:// + StartTLS: search, bind as the user, role from the highest mapped group', async () => {
    for (const url of [slapd.ldapsUrl, slapd.ldapUrl]) {
      const d = new DirectoryLogin({ ...settings, url });
      expect(await d.authenticate('alice', 'alice pw')).toEqual({
        dn: `uid=alice,ou=people,${SUFFIX}`,
        role: 'admin',
        groups: [ADMINS, VIEWERS],
      });
      expect(await d.authenticate('bob', 'bob pw')).toMatchObject({ role: 'viewer', groups: [VIEWERS] });
    }
  });

  it('bad input: wrong password, unknown user, empty password, filter characters, no mapped group', async () => {
    const d = new DirectoryLogin(settings);
    await expectCode(
      d.authenticate('alice', 'wrong'),
      'unauthorized',
      /wrong directory user name or password/,
    );
    await expectCode(d.authenticate('nobody', 'x'), 'unauthorized', /wrong directory user name or password/);
    // An empty password would be an unauthenticated bind, which the server accepts: never sent.
    await expectCode(d.authenticate('alice', ''), 'unauthorized', /wrong directory user name or password/);
    await expectCode(d.authenticate('al*', 'alice pw'), 'unauthorized', /wrong directory user name/);
    expect(escapeFilterValue('a*(b)\\')).toBe('a\\2a\\28b\\29\\5c');
    await expectCode(d.authenticate('carol', 'carol pw'), 'forbidden', /carol is in none of the groups/);
  });

  it('bad configuration and an unreachable or cleartext-only directory are told apart', async () => {
    const wrongBind = join(tmp.dir, 'wrong-bind');
    writeFileSync(wrongBind, 'nope\n');
    await expectCode(
      new DirectoryLogin({ ...settings, bindPasswordFile: wrongBind }).authenticate('alice', 'alice pw'),
      'bad-input',
      /search account cn=depotsync,ou=services,dc=example,dc=org was refused/,
    );
    await expectCode(
      new DirectoryLogin({ ...settings, url: 'ldaps://127.0.0.1:1' }).authenticate('alice', 'alice pw'),
      'network',
      /directory ldaps:\/\/127\.0\.0\.1:1 is unreachable/,
    );
    // A directory that does not offer StartTLS: no bind is attempted in cleartext.
    await expectCode(
      new DirectoryLogin({ ...settings, url: plainSlapd.ldapUrl }).authenticate('alice', 'alice pw'),
      'network',
      /StartTLS/,
    );
    // A directory that accepts connections and never answers: a clear error within the time limits.
    const held: Socket[] = [];
    const silent = createServer((sock) => held.push(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as AddressInfo).port;
    try {
      for (const url of [`ldap://127.0.0.1:${silentPort}`, `ldaps://127.0.0.1:${silentPort}`]) {
        const t0 = Date.now();
        await expectCode(
          new DirectoryLogin({ ...settings, url, timeoutMs: 300 }).authenticate('alice', 'alice pw'),
          'network',
          /is unreachable/,
        );
        expect(Date.now() - t0).toBeLessThan(1500);
      }
    } finally {
      for (const sock of held) sock.destroy();
      silent.close();
    }
    // A certificate the master does not trust (no caFile: the system CAs).
    await expectCode(
      new DirectoryLogin({ ...settings, caFile: null }).authenticate('alice', 'alice pw'),
      'network',
      /unreachable .*certificate/i,
    );
    expect(() => new DirectoryLogin({ ...settings, bindPasswordFile: join(tmp.dir, 'absent') })).toThrow(
      /LDAP bind password file .*absent/,
    );
    expect(() => new DirectoryLogin({ ...settings, caFile: wrongBind })).toThrow(
      /LDAP CA file .* holds no PEM/,
    );
    const bad = (v: unknown, re: RegExp) =>
      expect(() => decodeLdapSettings('master.json: directory.ldap', v, '/m')).toThrow(re);
    const ok = { url: 'ldaps://ldap.example.org', bindDn: 'cn=s', bindPasswordFile: 'pw', baseDn: 'dc=x' };
    expect(decodeLdapSettings('w', { ...ok, groups: { 'cn=g': 'admin' } }, '/m')).toMatchObject({
      bindPasswordFile: '/m/pw',
      userFilter: '(uid={user})',
    });
    bad({ ...ok, groups: {} }, /groups maps no group to a role/);
    bad({ ...ok, groups: { 'cn=g': 'root' } }, /must be one of admin, publisher, viewer, got "root"/);
    bad({ ...ok, url: 'http://ldap', groups: { 'cn=g': 'admin' } }, /url must be a string matching/);
    bad({ ...ok, userFilter: '(uid=alice)', groups: { 'cn=g': 'admin' } }, /userFilter/);
    bad({ ...ok, bindPassword: 'inline', groups: { 'cn=g': 'admin' } }, /unknown setting "bindPassword"/);
  });

  describe('dashboard', () => {
    let f: AdminFixture;
    beforeAll(async () => {
      f = await adminFixture({ masterConfig: { directory: { ldap: settings } } });
    });
    afterAll(async () => {
      await f?.close();
    });
    const lastAudit = async () => (await listAudit(f.ctx.db, { limit: 1 })).entries[0]!;

    it('a directory user logs in with their password and gets the role of their groups at each login', async () => {
      const b = new Browser(f.app);
      const page = await (await b.request('/dashboard/login')).text();
      expect(page).toContain('Token or directory password');
      const r = await b.login('alice', 'alice pw');
      expect(r.status).toBe(303);
      expect(r.headers.get('location')).toBe('/dashboard');
      const dash = await b.request('/dashboard');
      expect(dash.status).toBe(200);
      // An admin: the Operators section lists her, with no token to expire.
      expect(await dash.text()).toMatch(/data-operator="alice">.*<td>admin<\/td>.*directory login/);
      expect(await getOperator(f.ctx.db, 'alice')).toMatchObject({
        role: 'admin',
        directoryDn: `uid=alice,ou=people,${SUFFIX}`,
        tokenExpiresAt: null,
      });
      expect(await lastAudit()).toMatchObject({ action: 'login', target: 'alice' });
      expect((await lastAudit()).detail).toMatchObject({ role: 'admin', source: 'directory' });

      expect((await new Browser(f.app, '198.51.100.8').login('bob', 'bob pw')).status).toBe(303);
      expect((await getOperator(f.ctx.db, 'bob'))?.role).toBe('viewer');
    });

    it('wrong password, and a user in no mapped group (whose earlier row and sessions go)', async () => {
      const b = new Browser(f.app, '198.51.100.9');
      const wrong = await b.login('bob', 'not bob');
      expect(wrong.status).toBe(401);
      expect(await wrong.text()).toContain('Operator name or password is wrong.');
      const carol = await b.login('carol', 'carol pw');
      expect(carol.status).toBe(403);
      expect(await carol.text()).toContain('carol is in none of the directory groups');
      expect(await getOperator(f.ctx.db, 'carol')).toBeUndefined();

      // Bob has a session as a viewer; the directory then drops him from every mapped group.
      const bob = new Browser(f.app, '198.51.100.10');
      expect((await bob.login('bob', 'bob pw')).status).toBe(303);
      expect((await bob.request('/dashboard')).status).toBe(200);
      const root = new Client({
        url: slapd.ldapsUrl,
        tlsOptions: { ca: readFileSync(settings.caFile!, 'utf8') },
      });
      await root.bind(ROOT_DN, ROOT_PASSWORD);
      await root.modify(
        VIEWERS,
        new Change({
          operation: 'delete',
          modification: new Attribute({ type: 'member', values: [`uid=bob,ou=people,${SUFFIX}`] }),
        }),
      );
      await root.unbind();
      const again = await new Browser(f.app, '198.51.100.14').login('bob', 'bob pw');
      expect(again.status).toBe(403);
      expect(await getOperator(f.ctx.db, 'bob')).toBeUndefined();
      expect((await bob.request('/dashboard')).headers.get('location')).toBe('/dashboard/login?ended=1');
    });

    it('TOTP still applies to directory operators', async () => {
      const { secret } = await enableTotp(f.ctx.db, 'alice');
      expect(secret).toBeTruthy();
      const b = new Browser(f.app, '198.51.100.11');
      const r = await b.login('alice', 'alice pw');
      expect(r.status).toBe(401);
      expect(await r.text()).toContain('This operator needs an authenticator code.');
    });

    it('local operators log in while the directory is down; directory users get a clear error', async () => {
      await slapd.stop();
      const local = new Browser(f.app, '198.51.100.12');
      expect((await local.login('op-admin', f.tokens.admin)).status).toBe(303);
      expect((await local.request('/dashboard')).status).toBe(200);
      // op-admin also exists in the directory: a local operator is never looked up there.
      const bob = await new Browser(f.app, '198.51.100.13').login('bob', 'bob pw');
      expect(bob.status).toBe(503);
      expect(await bob.text()).toContain(
        'The directory cannot be reached, so directory operators cannot log in now (local operators still can).',
      );
      expect(await lastAudit()).toMatchObject({ action: 'login.failed', target: 'bob' });
      expect(String((await lastAudit()).detail.reason)).toMatch(/unreachable/);
    });
  });
});
