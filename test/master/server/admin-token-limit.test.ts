import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMasterApp } from '../../../master/server/app.js';
import { bearer, startTestMaster, type TestMaster } from './helpers.js';

/** Wrong operator bearer tokens are limited per address like dashboard logins (10 per 15 minutes by default). */
describe('operator API: wrong bearer tokens are rate limited', () => {
  let m: TestMaster;
  beforeAll(async () => {
    m = await startTestMaster();
  });
  afterAll(async () => {
    await m?.close();
  });

  it('refuses an address with 429 after 10 wrong tokens, even with a right one, until the window passes; others are unaffected', async () => {
    let nowMs = Date.parse('2026-12-07T12:00:00Z');
    let address = '203.0.113.7';
    const app = createMasterApp({ ctx: m.ctx, addressOf: () => address, clockMs: () => nowMs });
    const wrong = bearer('w'.repeat(43));
    for (let i = 0; i < 10; i++) {
      const path = i % 2 ? '/v1/admin/machines' : '/v1/admin/status';
      expect((await app.request(path, { headers: wrong })).status).toBe(401);
    }
    for (const path of ['/v1/admin/machines', '/v1/admin/status', '/metrics']) {
      const limited = await app.request(path, { headers: bearer(m.tokens.admin) });
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      const body = (await limited.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('rate-limited');
      expect(body.error.message).toMatch(/too many wrong operator tokens from 203\.0\.113\.7/);
    }
    // Another address is not affected.
    address = '198.51.100.2';
    expect((await app.request('/v1/admin/machines', { headers: bearer(m.tokens.admin) })).status).toBe(200);
    // Wrong tokens on /metrics count as well.
    for (let i = 0; i < 10; i++) expect((await app.request('/metrics', { headers: wrong })).status).toBe(401);
    expect((await app.request('/metrics', { headers: bearer(m.tokens.admin) })).status).toBe(429);
    // Once the window has passed, the first address may try again.
    address = '203.0.113.7';
    nowMs += 15 * 60_000 + 1;
    expect((await app.request('/v1/admin/machines', { headers: bearer(m.tokens.admin) })).status).toBe(200);
  });

  it('does not count a request without a token, nor right tokens', async () => {
    const app = createMasterApp({ ctx: m.ctx, addressOf: () => '192.0.2.9' });
    for (let i = 0; i < 20; i++) expect((await app.request('/v1/admin/machines')).status).toBe(401);
    for (let i = 0; i < 20; i++)
      expect((await app.request('/v1/admin/machines', { headers: bearer(m.tokens.viewer) })).status).toBe(
        200,
      );
  });

  it('sends Strict-Transport-Security on every answer of the master (ok and refused)', async () => {
    const app = createMasterApp({ ctx: m.ctx, addressOf: () => '192.0.2.10' });
    for (const [path, headers, status] of [
      ['/healthz', {}, 200],
      ['/v1/admin/machines', bearer(m.tokens.viewer), 200],
      ['/v1/admin/machines', {}, 401],
      ['/v1/metadata/timestamp.json', {}, 401],
    ] as const) {
      const r = await app.request(path, { headers });
      expect(r.status).toBe(status);
      expect(r.headers.get('strict-transport-security')).toBe('max-age=31536000; includeSubDomains');
    }
  });
});
