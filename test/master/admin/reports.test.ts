import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetStatus } from '../../../master/admin/status-model.js';
import {
  bearer,
  call,
  enrollWithToken,
  startTestMaster,
  type MachineIdentity,
  type TestMaster,
} from '../server/helpers.js';

/** Status reports and metrics over real mutual TLS on 127.0.0.1. */
describe('status reports and /metrics on a real master', () => {
  let m: TestMaster;
  let a: MachineIdentity;
  let b: MachineIdentity;
  const report = (over: Record<string, unknown> = {}) => ({
    servedGeneration: 1,
    targetGeneration: 1,
    bytesFetched: 10,
    chunksFetched: 1,
    reportedAt: new Date().toISOString(),
    sequence: 1,
    ...over,
  });
  const status = async () =>
    (await call(m, '/v1/admin/status', { headers: bearer(m.tokens.viewer) })).json() as FleetStatus;

  beforeAll(async () => {
    m = await startTestMaster();
    a = await enrollWithToken(m, 'depot-a');
    b = await enrollWithToken(m, 'depot-b');
  });
  afterAll(async () => {
    await m?.close();
  });

  it('files a report under the machine of the client certificate, whatever name the body claims', async () => {
    const r = await call(m, '/v1/status', {
      cert: a.cert,
      key: a.keyPem,
      body: report({ name: 'depot-b', machine: 'depot-b', lastError: 'forged' }),
    });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ machine: 'depot-a', outcome: 'recorded' });
    const s = await status();
    expect(s.depots.find((d) => d.name === 'depot-a')).toMatchObject({
      servedGeneration: 1,
      lastError: 'forged',
    });
    expect(s.depots.find((d) => d.name === 'depot-b')).toMatchObject({
      servedGeneration: null,
      state: 'never-reported',
    });
    // Without a certificate there is nobody to file it under.
    expect((await call(m, '/v1/status', { body: report({ sequence: 2 }) })).status).toBe(401);
  });

  it('refuses a 10 MB status report by size, declared or streamed, and stores nothing', async () => {
    const big = Buffer.from(JSON.stringify(report({ sequence: 5, lastError: 'x'.repeat(10 * 1024 * 1024) })));
    const declared = await call(m, '/v1/status', {
      cert: b.cert,
      key: b.keyPem,
      body: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(declared.status).toBe(413);
    const streamed = await call(m, '/v1/status', {
      cert: b.cert,
      key: b.keyPem,
      body: big,
      chunkedBytes: 256 * 1024,
      headers: { 'content-type': 'application/json' },
    });
    expect(streamed.status).toBe(413);
    expect(streamed.json().error.code).toBe('too-large');
    expect((await status()).depots.find((d) => d.name === 'depot-b')!.servedGeneration).toBeNull();
  });

  it('answers /metrics only with an operator token, in Prometheus text with conventional names', async () => {
    expect((await call(m, '/metrics')).status).toBe(401);
    expect((await call(m, '/metrics', { headers: bearer('A'.repeat(43)) })).status).toBe(401);
    // A machine certificate is not an operator credential.
    expect((await call(m, '/metrics', { cert: a.cert, key: a.keyPem })).status).toBe(401);
    await call(m, '/v1/metadata/timestamp.json', { cert: a.cert, key: a.keyPem });
    const r = await call(m, '/metrics', { headers: bearer(m.tokens.viewer) });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    const text = r.body.toString('utf8');
    expect(text).toMatch(
      /^depotsync_http_requests_total\{route="\/v1\/status",method="POST",status="200"\} 1$/m,
    );
    expect(text).toMatch(
      /^depotsync_http_requests_total\{route="\/v1\/status",method="POST",status="413"\} 2$/m,
    );
    expect(text).toMatch(/^depotsync_served_bytes_total\{kind="metadata"\} \d+$/m);
    expect(text).toMatch(/^depotsync_depot_served_generation\{depot="depot-a"\} 1$/m);
    expect(text).toMatch(/^depotsync_depot_lag_generations\{depot="depot-a"\} 0$/m);
    expect(text).toMatch(
      /^depotsync_certificate_expiry_timestamp_seconds\{subject="depot-a",role="depot"\} \d{10}$/m,
    );
    expect(text).toMatch(/^depotsync_enrollment_queue_length 0$/m);
    expect(text).toMatch(/^depotsync_depots\{state="never-reported"\} 1$/m);
    expect(text).toMatch(
      /^depotsync_http_request_duration_seconds_bucket\{le="0.005",route="\/v1\/status"\} \d+$/m,
    );
    // Every counter ends in _total; every name starts with depotsync_.
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      expect(name).toMatch(/^depotsync_/);
      if (type === 'counter') expect(name).toMatch(/_total$/);
    }
  });
});
