import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { adminSettings } from '../../../master/admin/config.js';
import { WebhookNotifier, type WebhookEvent } from '../../../master/admin/webhook.js';
import { adminFixture, insertDepot, report, type AdminFixture } from './helpers.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

describe('alerts: raised from the status model, repeated, cleared by themselves', () => {
  let f: AdminFixture;
  const sent: WebhookEvent[] = [];
  const fakeFetch = (async (_url: string, init: { body: string }) => {
    sent.push(JSON.parse(init.body) as WebhookEvent);
    return new Response('ok', { status: 200 });
  }) as unknown as typeof fetch;
  // The fixture's clock runs days ahead with no master re-signing its metadata: the master's own expiry
  // alerts (test/master/trust) are left out here.
  const own = (a: { kind: string }) => a.kind !== 'metadata-expiry';
  const keys = async () =>
    (await f.admin.status({ packages: false })).alerts.filter(own).map((a) => `${a.level} ${a.key}`);
  const events = () =>
    sent
      .splice(0)
      .filter((e) => own(e.alert))
      .map((e) => `${e.event} ${e.alert.level} ${e.alert.key}`);

  beforeAll(async () => {
    f = await adminFixture({
      fetch: fakeFetch,
      settings: { webhook: { url: 'https://hooks.example/alert' }, alerts: { lowDiskBytes: 1e9 } },
    });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('warns about a certificate at 40 days, repeats daily, errors at 15 days, clears after renewal', async () => {
    await insertDepot(f.ctx, 'd1', { certNotAfter: new Date(f.clock.t + 41.5 * DAY).toISOString() });
    const step = async (ms: number) => {
      f.clock.advance(ms);
      await report(f.ctx, 'd1', { servedGeneration: 1 });
      const k = await keys();
      await f.admin.webhook!.idle();
      return { keys: k, events: events() };
    };
    expect(await step(0)).toEqual({ keys: [], events: [] });
    expect(await step(DAY + HOUR)).toEqual({
      keys: ['warning certificate:d1'],
      events: ['raised warning certificate:d1'],
    });
    expect(await step(12 * HOUR)).toEqual({ keys: ['warning certificate:d1'], events: [] }); // not a day yet
    expect(await step(12 * HOUR)).toEqual({
      keys: ['warning certificate:d1'],
      events: ['repeated warning certificate:d1'],
    });
    expect(await step(24 * DAY)).toEqual({
      keys: ['error certificate:d1'],
      events: ['raised error certificate:d1'],
    });
    // Renewed: a new certificate far from expiry.
    await f.ctx.db.sql.run('UPDATE machines SET cert_not_after = ? WHERE name = ?', [
      new Date(f.clock.t + 365 * DAY).toISOString(),
      'd1',
    ]);
    expect(await step(0)).toEqual({ keys: [], events: ['cleared error certificate:d1'] });
    await f.ctx.db.sql.run("UPDATE machines SET state = 'blocked' WHERE name = 'd1'");
  });

  it('raises lagging, silent, failing and low-disk alerts and clears each when its cause is gone', async () => {
    await insertDepot(f.ctx, 'd2');
    await report(f.ctx, 'd2', { servedGeneration: 1, freeDiskBytes: 5e8, lastError: 'e1' });
    await report(f.ctx, 'd2', { servedGeneration: 1, freeDiskBytes: 5e8, lastError: 'e2' });
    expect(await keys()).toEqual(['warning low-disk:d2']);
    await report(f.ctx, 'd2', { servedGeneration: 1, freeDiskBytes: 5e8, lastError: 'e3' });
    expect(await keys()).toEqual(['error failing:d2', 'warning low-disk:d2']);
    f.clock.advance(2 * HOUR);
    expect(await keys()).toEqual(['error failing:d2', 'error silent:d2', 'warning low-disk:d2']);
    await report(f.ctx, 'd2', { servedGeneration: 1, freeDiskBytes: 5e10 });
    expect(await keys()).toEqual([]);
    await f.admin.webhook!.idle();
    expect(events().sort()).toEqual(
      [
        'raised warning low-disk:d2',
        'raised error failing:d2',
        'raised error silent:d2',
        'cleared error failing:d2',
        'cleared error silent:d2',
        'cleared warning low-disk:d2',
      ].sort(),
    );
    // Lagging: beyond 5 generations behind (the threshold), or behind for over 6 hours.
    await f.ctx.db.sql.run(
      "INSERT INTO generations (generation, created_at, created_by) VALUES (2, ?, 'test')",
      [f.ctx.db.now().toISOString()],
    );
    expect(await keys()).toEqual([]);
    f.clock.advance(7 * HOUR);
    await report(f.ctx, 'd2', { servedGeneration: 1, targetGeneration: 2, freeDiskBytes: 5e10 });
    expect(await keys()).toEqual(['warning lagging:d2']);
    const viaApi = (await (
      await f.app.request('/v1/admin/alerts', { headers: { authorization: `Bearer ${f.tokens.viewer}` } })
    ).json()) as { alerts: Array<{ key: string; since: string; message: string }> };
    expect(viaApi.alerts.filter((a) => !a.key.startsWith('metadata-expiry:'))).toEqual([
      expect.objectContaining({
        key: 'lagging:d2',
        since: expect.any(String),
        message: expect.stringMatching(/1 generation\(s\) behind for 7 h/),
      }),
    ]);
    await report(f.ctx, 'd2', { servedGeneration: 2, freeDiskBytes: 5e10 });
    expect(await keys()).toEqual([]);
    expect((await f.app.request('/v1/admin/alerts')).status).toBe(401);
    await f.ctx.db.sql.run("UPDATE machines SET state = 'blocked' WHERE name = 'd2'");
  });

  it('keeps alert state across a restart of the monitor (no second announcement)', async () => {
    await insertDepot(f.ctx, 'd3', { certNotAfter: new Date(f.clock.t + 10 * DAY).toISOString() });
    const first = (await f.admin.status({ packages: false })).alerts.find((a) => a.key === 'certificate:d3')!;
    const { since: _since, ...bare } = first;
    const again = await f.admin.monitor.evaluate([bare], f.clock.t + 1000);
    expect(again.transitions.filter((t) => own(t.alert))).toEqual([]);
    expect(again.active[0]!.since).toBe(first.since);
  });
});

describe('webhook: never blocks the master', () => {
  let black: Server;
  const sockets: Socket[] = [];
  let url: string;
  beforeAll(async () => {
    // Accepts connections and never answers a byte.
    black = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => black.listen(0, '127.0.0.1', () => r()));
    url = `https://127.0.0.1:${(black.address() as { port: number }).port}/hook`;
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
  });
  afterAll(async () => {
    await new Promise<void>((r) => black.close(() => r()));
  });

  it('retries with backoff, then gives up, while notify() returns at once', async () => {
    const delays: number[] = [];
    const failed: string[] = [];
    const w = new WebhookNotifier({
      settings: adminSettings({ webhook: { url, timeoutMs: 200, attempts: 3, backoffMs: 1000 } }).webhook,
      log: silentLogger(),
      sleep: async (ms) => {
        delays.push(ms);
      },
      onFailed: (_e, err) => failed.push(err),
    });
    const t = performance.now();
    w.notify({
      event: 'raised',
      master: 'm',
      at: new Date().toISOString(),
      alert: { key: 'k', kind: 'silent', subject: 's', level: 'error', message: 'x' },
    });
    expect(performance.now() - t).toBeLessThan(50);
    await w.idle();
    expect(delays).toEqual([1000, 2000]);
    expect(failed).toEqual(['no answer within 200 ms']);
    expect(w.failed).toBe(1);
    await w.close();
  });

  it('a master whose webhook does not answer still serves its API and dashboard', async () => {
    const f = await adminFixture({ settings: { webhook: { url, timeoutMs: 60_000, attempts: 5 } } });
    try {
      await insertDepot(f.ctx, 'dx', { certNotAfter: new Date(f.clock.t + 5 * DAY).toISOString() });
      for (let i = 0; i < 3; i++) {
        const r = await f.app.request('/v1/admin/status', {
          headers: { authorization: `Bearer ${f.tokens.viewer}` },
        });
        expect(r.status).toBe(200);
      }
      await vi.waitFor(() => expect(sockets.length).toBe(1)); // one delivery in flight, hanging; nothing waits for it
      expect((await f.app.request('/healthz')).status).toBe(200);
      const login = await f.app.request('/dashboard/login');
      expect(login.status).toBe(200);
    } finally {
      await f.close(); // aborts the hanging delivery
    }
  });

  it('drops the oldest notifications beyond its queue bound', async () => {
    const w = new WebhookNotifier({
      settings: adminSettings({ webhook: { url, timeoutMs: 60_000, attempts: 1, maxQueue: 3 } }).webhook,
      log: silentLogger(),
    });
    for (let i = 0; i < 10; i++)
      w.notify({
        event: 'raised',
        master: 'm',
        at: '',
        alert: { key: `k${i}`, kind: 'silent', subject: 's', level: 'error', message: 'x' },
      });
    expect(w.dropped).toBe(6); // one in flight, three queued
    await w.close();
  });
});
