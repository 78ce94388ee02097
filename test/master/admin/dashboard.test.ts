import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { totpCode } from '../../../master/admin/totp.js';
import { listAudit } from '../../../master/db/audit.js';
import { byName, requestEnrollment } from '../../../master/db/machines.js';
import { adminFixture, Browser, insertDepot, report, type AdminFixture } from './helpers.js';

const MIN = 60_000;
const HOSTILE = '<img src=x onerror=alert(1)>';

describe('dashboard: sessions, CSRF, roles, escaping, login limits', () => {
  let f: AdminFixture;

  beforeAll(async () => {
    f = await adminFixture();
    await insertDepot(f.ctx, 'depot-a');
    await report(f.ctx, 'depot-a', {
      servedGeneration: 1,
      lastError: '<script>alert("x")</script> sync failed',
    });
    // A record whose name bypassed validation (an old import, a restored backup): the page must still be safe.
    await insertDepot(f.ctx, HOSTILE, { state: 'pending' });
  });
  afterAll(async () => {
    await f?.close();
  });

  const enroll = async (name: string) =>
    await requestEnrollment(f.ctx.db, {
      name,
      role: 'agent',
      csrPem: createMachineKeyAndCsr({ machineName: name, role: 'agent' }).csrPem,
    });

  it('redirects to the login page without a session; the API answers 401 without a token', async () => {
    const b = new Browser(f.app);
    const r = await b.request('/dashboard');
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/dashboard/login');
    expect(
      (await b.request('/dashboard/machines/x/approve', { form: { _csrf: 'x' } })).headers.get('location'),
    ).toBe('/dashboard/login');
    expect((await f.app.request('/v1/admin/status')).status).toBe(401);
    const events = await (await b.request('/dashboard/events')).text();
    expect(events).toMatch(/^event: logout\ndata: none/m);
  });

  it('refuses a wrong token, and logs in with the right one into a HttpOnly, Secure, SameSite=Strict cookie', async () => {
    const b = new Browser(f.app, '198.51.100.20');
    const bad = await b.login('op-admin', f.tokens.viewer);
    expect(bad.status).toBe(401);
    expect(await bad.text()).toContain('Operator name or token is wrong.');
    const ok = await b.login('op-admin', f.tokens.admin);
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/dashboard');
    const cookie = ok.headers.getSetCookie().find((c) => c.startsWith('__Host-depotsync_session='))!;
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; SameSite=Strict/);
    expect(cookie).toMatch(/; Path=\//);
    const page = await b.request('/dashboard');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(await page.text()).toContain('op-admin (admin)');
    const audit = (await listAudit(f.ctx.db, { limit: 10 })).entries.map((e) => `${e.action} ${e.target}`);
    expect(audit).toContain('login op-admin');
    expect(audit).toContain('login.failed op-admin');
  });

  it('refuses a login form that did not come from the login page (login CSRF)', async () => {
    const b = new Browser(f.app);
    const r = await b.request('/dashboard/login', {
      form: { _csrf: 'forged', operator: 'op-admin', token: f.tokens.admin },
    });
    expect(r.status).toBe(403);
    expect(b.cookies.has('__Host-depotsync_session')).toBe(false);
  });

  it('renders a hostile machine name and error message as text', async () => {
    const b = new Browser(f.app);
    await b.login('op-admin', f.tokens.admin);
    const html = await (await b.request('/dashboard')).text();
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; sync failed');
    expect(html).not.toMatch(/<script>alert/);
    // The only script is the page's own file.
    expect(html.match(/<script/g)).toEqual(['<script']);
    expect(html).toContain('<script src="/dashboard/app.js"></script>');
  });

  it('refuses a POST without, or with a wrong, CSRF token, or from a foreign origin; accepts the right one', async () => {
    await enroll('agent-csrf');
    const b = new Browser(f.app);
    await b.login('op-admin', f.tokens.admin);
    const csrf = Browser.csrf(await (await b.request('/dashboard')).text());
    expect((await b.request('/dashboard/machines/agent-csrf/approve', { form: {} })).status).toBe(403);
    expect(
      (
        await b.request('/dashboard/machines/agent-csrf/approve', {
          form: { _csrf: csrf.slice(0, -2) + 'AA' },
        })
      ).status,
    ).toBe(403);
    expect(
      (
        await b.request('/dashboard/machines/agent-csrf/approve', {
          form: { _csrf: csrf },
          headers: { origin: 'https://evil.example' },
        })
      ).status,
    ).toBe(403);
    // Another session's token is no good either.
    const other = new Browser(f.app);
    await other.login('op-admin', f.tokens.admin);
    const otherCsrf = Browser.csrf(await (await other.request('/dashboard')).text());
    expect(
      (await b.request('/dashboard/machines/agent-csrf/approve', { form: { _csrf: otherCsrf } })).status,
    ).toBe(403);
    expect((await byName(f.ctx.db, 'agent-csrf'))!.state).toBe('pending');
    const ok = await b.request('/dashboard/machines/agent-csrf/approve', {
      form: { _csrf: csrf },
      headers: { origin: 'https://master.test' },
    });
    expect(ok.status).toBe(303);
    expect(await byName(f.ctx.db, 'agent-csrf')).toMatchObject({ state: 'approved', approvedBy: 'op-admin' });
    expect(await (await b.request(ok.headers.get('location')!)).text()).toContain('approved agent-csrf');
    expect(
      (await listAudit(f.ctx.db, { action: 'machine.approve', target: 'agent-csrf' })).entries[0],
    ).toMatchObject({ actor: 'op-admin', address: '198.51.100.7' });
  });

  it('answers 403 when a viewer tries to approve, and shows no buttons to a viewer', async () => {
    await enroll('agent-viewer');
    const b = new Browser(f.app);
    await b.login('op-viewer', f.tokens.viewer);
    const html = await (await b.request('/dashboard')).text();
    expect(html).not.toContain('data-action="approve"');
    const r = await b.request('/dashboard/machines/agent-viewer/approve', {
      form: { _csrf: Browser.csrf(html) },
    });
    expect(r.status).toBe(403);
    expect(await r.text()).toContain('operator op-viewer has role viewer; approve needs role admin');
    expect((await byName(f.ctx.db, 'agent-viewer'))!.state).toBe('pending');
  });

  it('ends a session after 15 idle minutes, and at its absolute lifetime however active', async () => {
    const b = new Browser(f.app);
    await b.login('op-viewer', f.tokens.viewer);
    f.clock.advance(14 * MIN);
    expect((await b.request('/dashboard')).status).toBe(200);
    f.clock.advance(15 * MIN);
    const idle = await b.request('/dashboard');
    expect(idle.headers.get('location')).toBe('/dashboard/login?ended=1');
    // Still refused after another touch: an ended session never comes back.
    expect((await b.request('/dashboard')).status).toBe(303);

    const busy = new Browser(f.app);
    await busy.login('op-viewer', f.tokens.viewer);
    for (let i = 0; i < 12 * 6 - 1; i++) {
      f.clock.advance(10 * MIN);
      expect((await busy.request('/dashboard')).status).toBe(200);
    }
    f.clock.advance(10 * MIN);
    expect((await busy.request('/dashboard')).headers.get('location')).toBe('/dashboard/login?ended=1');
  });

  it('lets an admin list active sessions and end one; the ended session is logged out, with an audit entry', async () => {
    const victim = new Browser(f.app, '203.0.113.9');
    await victim.login('op-publisher', f.tokens.publisher);
    expect((await victim.request('/dashboard')).status).toBe(200);
    const list = (await (
      await f.app.request('/v1/admin/sessions', { headers: { authorization: `Bearer ${f.tokens.admin}` } })
    ).json()) as { sessions: Array<{ id: number; operator: string; address: string }> };
    const s = list.sessions.find((x) => x.operator === 'op-publisher' && x.address === '203.0.113.9')!;
    expect(s).toBeDefined();
    expect(
      (await f.app.request('/v1/admin/sessions', { headers: { authorization: `Bearer ${f.tokens.viewer}` } }))
        .status,
    ).toBe(403);
    const end = await f.app.request(`/v1/admin/sessions/${s.id}/end`, {
      method: 'POST',
      headers: { authorization: `Bearer ${f.tokens.admin}` },
    });
    expect(end.status).toBe(200);
    expect((await victim.request('/dashboard')).headers.get('location')).toBe('/dashboard/login?ended=1');
    expect(await (await victim.request('/dashboard/events')).text()).toMatch(/event: logout\ndata: ended/);
    expect((await listAudit(f.ctx.db, { action: 'session.end' })).entries[0]).toMatchObject({
      actor: 'op-admin',
      target: `session:${s.id}`,
    });
  });

  it('logs out (POST with CSRF) and the cookie no longer works', async () => {
    const b = new Browser(f.app);
    await b.login('op-viewer', f.tokens.viewer);
    const secret = b.cookies.get('__Host-depotsync_session')!;
    const csrf = Browser.csrf(await (await b.request('/dashboard')).text());
    expect((await b.request('/dashboard/logout', { form: { _csrf: 'wrong' } })).status).toBe(403);
    expect((await b.request('/dashboard/logout', { form: { _csrf: csrf } })).headers.get('location')).toBe(
      '/dashboard/login',
    );
    b.cookies.set('__Host-depotsync_session', secret);
    expect((await b.request('/dashboard')).headers.get('location')).toBe('/dashboard/login?ended=1');
  });

  it('limits 100 failed logins from one address, while other operators log in from elsewhere', async () => {
    const attacker = new Browser(f.app, '192.0.2.66');
    const statuses: number[] = [];
    for (let i = 0; i < 100; i++)
      statuses.push((await attacker.login(i % 2 ? 'op-admin' : 'op-viewer', 'A'.repeat(43))).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(new Set(statuses.slice(10))).toEqual(new Set([429]));
    // The right token from the limited address is refused too, until the window passes...
    expect((await attacker.login('op-viewer', f.tokens.viewer)).status).toBe(429);
    // ...while other operators at other addresses are not affected.
    const other = new Browser(f.app, '192.0.2.77');
    expect((await other.login('op-admin', f.tokens.admin)).status).toBe(303);
    expect((await other.login('op-viewer', f.tokens.viewer)).status).toBe(303);
    // The audit log has each real failure and a few limiter notes, not 100 lines of noise.
    const entries = (await listAudit(f.ctx.db, { limit: 1000 })).entries.filter(
      (e) => e.address === '192.0.2.66',
    );
    expect(entries.filter((e) => e.action === 'login.failed')).toHaveLength(10);
    expect(entries.filter((e) => e.action === 'login.limited')).toHaveLength(1);
    f.clock.advance(16 * MIN);
    expect((await attacker.login('op-viewer', f.tokens.viewer)).status).toBe(303);
    const metrics = await (
      await f.app.request('/metrics', { headers: { authorization: `Bearer ${f.tokens.viewer}` } })
    ).text();
    expect(metrics).toMatch(/depotsync_dashboard_logins_total\{outcome="limited"\} 91/);
  });

  it('asks for a TOTP code when enabled (±1 step), refuses a replayed code, and limits code guessing per operator', async () => {
    const r = await f.app.request('/v1/admin/operators/op-publisher/totp', {
      method: 'POST',
      headers: { authorization: `Bearer ${f.tokens.admin}` },
    });
    expect(r.status).toBe(201);
    const { secret, uri } = (await r.json()) as { secret: string; uri: string };
    expect(uri).toMatch(/^otpauth:\/\/totp\/depotsync:op-publisher\?/);
    const b = new Browser(f.app, '198.51.100.50');
    const missing = await b.login('op-publisher', f.tokens.publisher);
    expect(missing.status).toBe(401);
    expect(await missing.text()).toContain('needs an authenticator code');
    const previousStep = totpCode(secret, f.clock.t - 30_000);
    expect((await b.login('op-publisher', f.tokens.publisher, previousStep)).status).toBe(303);
    // The same code again (a replay) is refused, even within its window.
    expect(
      (await new Browser(f.app, '198.51.100.51').login('op-publisher', f.tokens.publisher, previousStep))
        .status,
    ).toBe(401);
    expect(
      (
        await new Browser(f.app, '198.51.100.52').login(
          'op-publisher',
          f.tokens.publisher,
          totpCode(secret, f.clock.t),
        )
      ).status,
    ).toBe(303);
    // Guessing codes from many addresses: the operator is limited after 10 wrong codes.
    const codes: number[] = [];
    for (let i = 0; i < 12; i++)
      codes.push(
        (
          await new Browser(f.app, `198.51.100.${100 + i}`).login(
            'op-publisher',
            f.tokens.publisher,
            String(100000 + i),
          )
        ).status,
      );
    // Two second-factor failures above (missing code, replay) count as well: 8 more make 10.
    expect(codes.slice(0, 8)).toEqual(Array(8).fill(401));
    expect(codes.slice(8)).toEqual([429, 429, 429, 429]);
    // A wrong TOKEN cannot lock an operator out (only the token holder can fail the second factor).
    expect((await new Browser(f.app, '198.51.100.200').login('op-admin', 'B'.repeat(43))).status).toBe(401);
    f.clock.advance(16 * MIN);
    expect(
      (
        await new Browser(f.app, '198.51.100.53').login(
          'op-publisher',
          f.tokens.publisher,
          totpCode(secret, f.clock.t),
        )
      ).status,
    ).toBe(303);
  });

  it('sends the live sections over server-sent events to a logged-in browser', async () => {
    const b = new Browser(f.app);
    await b.login('op-admin', f.tokens.admin);
    const res = await b.request('/dashboard/events');
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).toMatch(/^event: update\n/);
    expect(text).toContain('data-depot="depot-a"');
    expect(text).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });
});
