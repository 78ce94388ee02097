import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudoRandomBytes } from '../../helpers/tmp.js';
import type { FleetStatus } from '../../../master/admin/status-model.js';
import { statusCommand } from '../../../cli/status-command.js';
import { silentLogger } from '../../../src/log.js';
import { adminFixture, insertDepot, publishBytes, report, type AdminFixture } from './helpers.js';

const MIN = 60_000;

describe('status model: per depot and per package version', () => {
  let f: AdminFixture;
  let s: FleetStatus;
  const t0 = Date.parse('2031-03-01T10:00:00.000Z');

  beforeAll(async () => {
    f = await adminFixture({ start: t0, settings: { alerts: { silentMinutes: 30 } } });
    for (const name of ['d-current', 'd-lag', 'd-fail', 'd-silent', 'd-never'])
      await insertDepot(f.ctx, name);
    await insertDepot(f.ctx, 'd-child', { parent: 'd-current' });
    await insertDepot(f.ctx, 'd-grandchild', { parent: 'd-child' });
    await insertDepot(f.ctx, 'd-blocked', { state: 'blocked' });
    await insertDepot(f.ctx, 'agent-1', { role: 'agent' });
    expect(await publishBytes(f, 'tool', '1.0', pseudoRandomBytes(50_000, 1))).toBe(2);
    f.clock.advance(10 * MIN);
    await report(f.ctx, 'd-silent', { servedGeneration: 2 });
    // d-lag fetched 60 MB over the last 2 minutes of reports: 0.5 MB/s.
    await report(f.ctx, 'd-lag', { servedGeneration: 2, bytesFetched: 1 });
    f.clock.advance(50 * MIN);
    expect(await publishBytes(f, 'tool', '2.0', pseudoRandomBytes(50_000, 2))).toBe(3);
    f.clock.advance(MIN);
    await report(f.ctx, 'd-lag', {
      servedGeneration: 2,
      targetGeneration: 3,
      bytesFetched: 30_000_000,
      bytesRemaining: 90_000_000,
    });
    await report(f.ctx, 'd-current', {
      servedGeneration: 3,
      scrubOk: 40,
      scrubFailed: 1,
      freeDiskBytes: 5e11,
      lastSuccess: new Date(f.clock.t).toISOString(),
    });
    await report(f.ctx, 'd-child', { servedGeneration: 3 });
    await report(f.ctx, 'd-grandchild', { servedGeneration: 3 });
    for (let i = 0; i < 3; i++)
      await report(f.ctx, 'd-fail', {
        servedGeneration: 2,
        targetGeneration: 3,
        lastError: `sync from https://m failed: timeout ${i}`,
      });
    f.clock.advance(MIN);
    await report(f.ctx, 'd-lag', {
      servedGeneration: 2,
      targetGeneration: 3,
      bytesFetched: 30_000_000,
      bytesRemaining: 60_000_000,
    });
    f.clock.advance(MIN);
    s = await f.admin.status();
  });
  afterAll(async () => {
    await f?.close();
  });

  const depot = (name: string) => s.depots.find((d) => d.name === name)!;

  it('lists approved and blocked depots (not agents, not pending), each in one state', () => {
    expect(s.generation).toBe(3);
    expect(s.depots.map((d) => d.name)).toEqual([
      'd-blocked',
      'd-child',
      'd-current',
      'd-fail',
      'd-grandchild',
      'd-lag',
      'd-never',
      'd-silent',
    ]);
    expect(Object.fromEntries(s.depots.map((d) => [d.name, d.state]))).toEqual({
      'd-blocked': 'blocked',
      'd-child': 'current',
      'd-current': 'current',
      'd-fail': 'failing',
      'd-grandchild': 'current',
      'd-lag': 'lagging',
      'd-never': 'never-reported',
      'd-silent': 'silent',
    });
    expect(s.summary).toMatchObject({
      depots: 8,
      current: 3,
      lagging: 1,
      failing: 1,
      silent: 1,
      'never-reported': 1,
      blocked: 1,
    });
  });

  it('gives tier and parent by walking parents', () => {
    expect([depot('d-current').tier, depot('d-child').tier, depot('d-grandchild').tier]).toEqual([1, 2, 3]);
    expect(depot('d-grandchild').parent).toBe('d-child');
  });

  it('computes lag in generations and in time, bytes left, and an ETA from recent throughput', () => {
    const d = depot('d-lag');
    expect(d).toMatchObject({
      servedGeneration: 2,
      targetGeneration: 3,
      lagGenerations: 1,
      bytesRemaining: 60_000_000,
    });
    // Generation 3 was published 3 minutes before "now".
    expect(d.lagSeconds).toBe(180);
    expect(d.lagSince).toBe(new Date(t0 + 60 * MIN).toISOString());
    // 60 MB received over the 52 minutes its three reports span... the two newest carry 60 MB in 52 min.
    expect(d.throughputBytesPerSecond).toBeCloseTo(60_000_000 / (52 * 60), 3);
    expect(d.etaSeconds).toBe(Math.ceil(60_000_000 / (60_000_000 / (52 * 60))));
    expect(depot('d-current')).toMatchObject({
      lagGenerations: 0,
      lagSeconds: 0,
      etaSeconds: null,
      scrub: { ok: 40, failed: 1 },
      freeDiskBytes: 5e11,
    });
  });

  it('counts failed syncs in a row and keeps the last error', () => {
    expect(depot('d-fail')).toMatchObject({
      consecutiveFailures: 3,
      lastError: 'sync from https://m failed: timeout 2',
    });
    expect(depot('d-current').consecutiveFailures).toBe(0);
  });

  it('shows certificate days left and the last time each depot was seen', () => {
    expect(depot('d-current').certificate.daysLeft).toBe(364);
    expect(depot('d-silent').lastSeen).toBe(new Date(t0 + 10 * MIN).toISOString());
    expect(depot('d-never').lastSeen).toBeNull();
  });

  it('counts, per package version, the depots where it is complete, in progress, failed or waiting, and names them', () => {
    const v1 = s.packages.find((p) => p.version === '1.0')!;
    const v2 = s.packages.find((p) => p.version === '2.0')!;
    // Approved depots: 7 (the blocked one is not counted).
    expect(v1).toMatchObject({ generation: 2, complete: 6, inProgress: 0, failed: 0, waiting: 1 });
    expect(v2).toMatchObject({
      generation: 3,
      complete: 3,
      inProgress: 1,
      failed: 1,
      waiting: 2,
      inProgressDepots: ['d-lag'],
      failedDepots: ['d-fail'],
    });
  });

  it('answers GET /v1/admin/status with that model (docs/http.md), and 401 without a token', async () => {
    expect((await f.app.request('/v1/admin/status')).status).toBe(401);
    const r = await f.app.request('/v1/admin/status', {
      headers: { authorization: `Bearer ${f.tokens.viewer}` },
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as FleetStatus;
    expect(body.generation).toBe(3);
    expect(body.depots.find((d) => d.name === 'd-lag')).toMatchObject({
      name: 'd-lag',
      servedGeneration: 2,
      targetGeneration: 3,
      lastSeen: expect.any(String),
      lastError: null,
    });
    expect(body.alerts.length).toBeGreaterThan(0);
    expect(body.packages).toHaveLength(2);
    const lean = (await (
      await f.app.request('/v1/admin/status?packages=none', {
        headers: { authorization: `Bearer ${f.tokens.viewer}` },
      })
    ).json()) as FleetStatus;
    expect(lean.packages).toEqual([]);
    expect(lean.summary.packages).toBe(2);
    const which = await f.app.request('/v1/admin/status/package?name=tool&version=2.0', {
      headers: { authorization: `Bearer ${f.tokens.viewer}` },
    });
    expect(await which.json()).toMatchObject({
      generation: 3,
      depots: {
        complete: ['d-child', 'd-current', 'd-grandchild'],
        inProgress: ['d-lag'],
        failed: ['d-fail'],
        waiting: ['d-never', 'd-silent'],
      },
    });
    expect(
      (
        await f.app.request('/v1/admin/status?packages=some', {
          headers: { authorization: `Bearer ${f.tokens.viewer}` },
        })
      ).status,
    ).toBe(400);
  });

  it('depotsync status --dir M prints it as tables, or the same model as JSON', async () => {
    const out = await statusCommand.run({
      values: { dir: f.dir },
      positionals: [],
      json: false,
      log: silentLogger(),
      stdout: process.stdout,
      stderr: process.stderr,
    });
    expect(out.human).toMatch(/^DEPOT\s+STATE\s+TIER\s+UPSTREAM\s+SERVED\s+TARGET/m);
    expect(out.human).toMatch(/^d-lag\s+lagging\s+1\s+master\s+2\s+3\s+1 gen/m);
    expect(out.human).toMatch(/^tool@2\.0\s+3\s+3\s+1\s+1\s+2$/m);
    expect((out.json as FleetStatus).depots).toHaveLength(8);
    await expect(
      statusCommand.run({
        values: { dir: f.dir + '-nope' },
        positionals: [],
        json: true,
        log: silentLogger(),
        stdout: process.stdout,
        stderr: process.stderr,
      }),
    ).rejects.toThrow(/neither a master directory/);
  });
});
