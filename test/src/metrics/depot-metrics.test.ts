import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { routeLabel } from '../../../src/metrics/http.js';
import { openDepot, type Depot } from '../../../depot/depot.js';
import { createDepotApp } from '../../../depot/serve/app.js';
import { randomBytesSeeded, startUpstream, writeDepotDir, type Upstream } from '../../depot/fixture.js';

describe('depot /metrics', () => {
  let up: Upstream;
  let depot: Depot;
  let dir: string;

  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('app', '1.0', randomBytesSeeded(200_000, 3));
    const files = writeDepotDir(up, { name: 'metrics-depot' });
    dir = files.dir;
    depot = openDepot(dir, { logger: silentLogger(), now: up.clock.now });
    await depot.engine.sync();
  });
  afterAll(async () => {
    await depot?.close();
    await up?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('makes D/metrics.token (0600) on first start and answers only with that bearer token', async () => {
    const app = createDepotApp({
      db: depot.db,
      store: depot.store,
      revocations: depot.revocations,
      logger: silentLogger(),
      name: 'metrics-depot',
    });
    const path = join(dir, 'metrics.token');
    const token = readFileSync(path, 'utf8').trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await app.request('/metrics')).status).toBe(401);
    expect((await app.request('/metrics', { headers: { authorization: `Bearer ${token}x` } })).status).toBe(
      401,
    );
    const r = await app.request('/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toMatch(/^depotsync_depot_served_generation [1-9]\d*$/m);
    expect(text).toMatch(/^depotsync_depot_lag_generations 0$/m);
    expect(text).toMatch(/^depotsync_certificate_expiry_timestamp_seconds \d{10}$/m);
    expect(text).toMatch(/^depotsync_depot_sync_runs_total\{outcome="ok"\} [1-9]/m);
    expect(text).toMatch(/^depotsync_depot_sync_duration_seconds_count\{outcome="ok"\} [1-9]/m);
    expect(text).toMatch(/^depotsync_depot_fetched_bytes_total [1-9]/m);
    expect(text).toMatch(/^depotsync_depot_fetched_chunks_total [1-9]/m);
    expect(text).toMatch(/^depotsync_http_requests_total\{route="\/metrics",method="GET",status="401"\} 2$/m);
    // A second app on the same directory keeps the token.
    createDepotApp({
      db: depot.db,
      store: depot.store,
      revocations: depot.revocations,
      logger: silentLogger(),
    });
    expect(readFileSync(path, 'utf8').trim()).toBe(token);
  });

  it('labels routes by pattern, never by the raw path (bounded series)', () => {
    expect(routeLabel('/v1/chunks/' + 'a'.repeat(64))).toBe('/v1/chunks/{id}');
    expect(routeLabel('/v1/chunks/batch')).toBe('/v1/chunks/batch');
    expect(routeLabel('/v1/metadata/12.snapshot.json')).toBe('/v1/metadata/{file}');
    expect(routeLabel('/whatever/' + Math.random())).toBe('other');
  });
});
