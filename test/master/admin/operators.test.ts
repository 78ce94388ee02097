import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { totpCode } from '../../../master/admin/totp.js';
import { listAudit } from '../../../master/db/audit.js';
import { addOperator, getOperator, rotateOperator } from '../../../master/db/operators.js';
import { adminFixture, Browser, type AdminFixture } from './helpers.js';

const DAY = 86_400_000;
const bearer = (token: string) => ({
  headers: { authorization: `Bearer ${token}`, 'x-test-address': '192.0.2.9' },
});

describe('operator administration: token expiry, rotation, TOTP policy', () => {
  let f: AdminFixture;
  beforeEach(async () => {
    f = await adminFixture();
  });
  afterEach(async () => {
    await f.close();
  });

  it('refuses an expired operator token with a 401 naming the day and the rotate command', async () => {
    expect((await f.app.request('/v1/admin/status', bearer(f.tokens.viewer))).status).toBe(200);
    const expiresAt = (await getOperator(f.ctx.db, 'op-viewer'))!.tokenExpiresAt!;
    expect(Date.parse(expiresAt) - f.clock.t).toBe(90 * DAY);
    f.clock.advance(90 * DAY);
    const r = await f.app.request('/v1/admin/status', bearer(f.tokens.viewer));
    expect(r.status).toBe(401);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unauthorized');
    expect(body.error.message).toBe(
      `token of operator op-viewer expired on ${expiresAt.slice(0, 10)}; rotate it with \`depotsync master operator rotate\``,
    );
    // The dashboard says the same instead of "wrong token".
    const login = await new Browser(f.app, '198.51.100.70').login('op-viewer', f.tokens.viewer);
    expect(login.status).toBe(401);
    expect(await login.text()).toContain('expired on');
    // Rotation gives a working token again and the old one stays refused.
    const { token } = await rotateOperator(f.ctx.db, 'op-viewer', 30);
    expect((await f.app.request('/v1/admin/status', bearer(token))).status).toBe(200);
    expect((await f.app.request('/v1/admin/status', bearer(f.tokens.viewer))).status).toBe(401);
    expect((await getOperator(f.ctx.db, 'op-viewer'))!.lastUsedAt).toBe(new Date(f.clock.t).toISOString());
  });

  it('warns before a token expires and raises an error once it has, cleared by rotation', async () => {
    f.clock.advance(80 * DAY);
    const warn = (await f.admin.status({ packages: false })).alerts.filter(
      (a) => a.kind === 'operator-token',
    );
    expect(warn.map((a) => [a.subject, a.level])).toEqual([
      ['op-admin', 'warning'],
      ['op-publisher', 'warning'],
      ['op-viewer', 'warning'],
    ]);
    expect(warn[0]!.message).toMatch(
      /^token of operator op-admin expires in 10 day\(s\) .*master operator rotate --name op-admin/,
    );
    f.clock.advance(10 * DAY);
    await rotateOperator(f.ctx.db, 'op-admin');
    const after = (await f.admin.status({ packages: false })).alerts.filter(
      (a) => a.kind === 'operator-token',
    );
    expect(after.map((a) => [a.subject, a.level])).toEqual([
      ['op-publisher', 'error'],
      ['op-viewer', 'error'],
    ]);
  });

  it('rotating an unknown operator is a not-found error naming it', async () => {
    let err: unknown;
    try {
      await rotateOperator(f.ctx.db, 'nobody');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'not-found', message: 'operator nobody does not exist' });
  });

  it('under requireTotp: no dashboard login without TOTP, API enroll-only, then normal', async () => {
    f.ctx.config.requireTotp = true;
    const b = new Browser(f.app, '198.51.100.71');
    const refused = await b.login('op-publisher', f.tokens.publisher);
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain(
      'requires an authenticator (TOTP) for every operator and op-publisher has none',
    );
    expect((await listAudit(f.ctx.db, { limit: 5 })).entries[0]).toMatchObject({
      action: 'login.failed',
      target: 'op-publisher',
    });

    const api = await f.app.request('/v1/admin/status', bearer(f.tokens.publisher));
    expect(api.status).toBe(403);
    expect(((await api.json()) as { error: { message: string } }).error.message).toMatch(
      /requires TOTP .* only TOTP enrollment/,
    );
    // Not someone else's enrollment either.
    const other = await f.app.request('/v1/admin/operators/op-viewer/totp', {
      method: 'POST',
      ...bearer(f.tokens.publisher),
    });
    expect(other.status).toBe(403);

    const enrolled = await f.app.request('/v1/admin/operators/op-publisher/totp', {
      method: 'POST',
      ...bearer(f.tokens.publisher),
    });
    expect(enrolled.status).toBe(201);
    const { secret } = (await enrolled.json()) as { secret: string };
    expect((await f.app.request('/v1/admin/status', bearer(f.tokens.publisher))).status).toBe(200);
    // Once enrolled, a non-admin cannot replace it (a stolen token must not reset the second factor).
    const again = await f.app.request('/v1/admin/operators/op-publisher/totp', {
      method: 'POST',
      ...bearer(f.tokens.publisher),
    });
    expect(again.status).toBe(403);
    expect((await b.login('op-publisher', f.tokens.publisher, totpCode(secret, f.clock.t))).status).toBe(303);
  });

  it('lists operators to admins only, without secrets', async () => {
    await addOperator(f.ctx.db, { name: 'carol', role: 'viewer', createdBy: 'test', tokenDays: 7 });
    expect((await f.app.request('/v1/admin/operators', bearer(f.tokens.viewer))).status).toBe(403);
    const r = await f.app.request('/v1/admin/operators', bearer(f.tokens.admin));
    const body = (await r.json()) as { operators: Array<Record<string, unknown>> };
    expect(body.operators.map((o) => o.name)).toEqual(['carol', 'op-admin', 'op-publisher', 'op-viewer']);
    expect(body.operators[0]).toMatchObject({ role: 'viewer', hasTotp: false, lastUsedAt: null });
    expect(Date.parse(body.operators[0]!.tokenExpiresAt as string) - f.clock.t).toBe(7 * DAY);
    expect(JSON.stringify(body)).not.toMatch(/token_hash|totp_secret/);
  });

  it('shows admins (only) the operators on the dashboard, with an expired token marked', async () => {
    await addOperator(f.ctx.db, { name: 'dave', role: 'viewer', createdBy: 'test', tokenDays: 1 });
    f.clock.advance(2 * DAY);
    const admin = new Browser(f.app, '198.51.100.72');
    expect((await admin.login('op-admin', f.tokens.admin)).status).toBe(303);
    const page = await (await admin.request('/dashboard')).text();
    expect(page).toMatch(/<section id="operators">/);
    expect(page).toMatch(
      /<tr data-operator="dave"><td>dave<\/td><td>viewer<\/td><td>off<\/td>.*<td>never<\/td><td><b class="bad">expired /,
    );
    const viewer = new Browser(f.app, '198.51.100.73');
    expect((await viewer.login('op-viewer', f.tokens.viewer)).status).toBe(303);
    expect(await (await viewer.request('/dashboard')).text()).not.toContain('id="operators"');
  });
});
