import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
import type { EventHub } from '../../src/serve/events.js';
import { openDepot, type Depot } from '../../depot/depot.js';
import { createDepotApp } from '../../depot/serve/app.js';
import { depotEventHub } from '../../depot/serve/events.js';
import { startDepotServer, type DepotServer } from '../../depot/serve/server.js';
import { notifyListenerFor, type NotifyListener } from '../../depot/sync/notify-listener.js';
import {
  agentCredentials,
  randomBytesSeeded,
  startUpstream,
  writeDepotDir,
  type Upstream,
} from './fixture.js';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A parent depot's `GET /v1/events` (tiers): a child depot's listener hears the parent's switch and
 * syncs from it for real; sync-now requests are relayed; a revoked agent loses its stream and cannot
 * open another; no certificate, no stream.
 */
describe('depot event stream to child depots (real mutual TLS, real sync)', () => {
  let up: Upstream;
  let parent: Depot;
  let child: Depot;
  let server: DepotServer;
  let hub: EventHub;
  let listener: NotifyListener;
  let parentUrl: string;
  let childSyncs = 0;
  const dirs: string[] = [];
  const clients: HttpClient[] = [];

  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('app', '1.0', randomBytesSeeded(200_000, 1));
    const files = writeDepotDir(up, { name: 'parent' });
    dirs.push(files.dir);
    parent = openDepot(files.dir, { logger: silentLogger(), now: up.clock.now });
    await parent.engine.sync();
    hub = depotEventHub(parent.db, silentLogger(), { pollMs: 20, heartbeatMs: 50 });
    const app = createDepotApp({
      db: parent.db,
      store: parent.store,
      revocations: parent.revocations,
      logger: silentLogger(),
      name: 'parent',
      events: hub,
      metricsToken: false,
    });
    server = await startDepotServer({
      app,
      keyPem: parent.creds.keyPem,
      certPem: parent.creds.certPem,
      caPem: parent.creds.caPem,
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger(),
    });
    parentUrl = `https://127.0.0.1:${server.port}`;
    const cf = writeDepotDir(up, {
      name: 'child',
      upstreamUrl: parentUrl,
      config: { notify: { reconnectBaseMs: 100, reconnectMaxMs: 200, minGapMs: 0 } },
    });
    dirs.push(cf.dir);
    child = openDepot(cf.dir, { logger: silentLogger(), now: up.clock.now });
    listener = notifyListenerFor(child, {
      sync: () => {
        childSyncs++;
        return child.engine.sync();
      },
    });
  });

  afterAll(async () => {
    await listener?.stop();
    clients.forEach((c) => c.close());
    hub?.close();
    await server?.close();
    await child?.close();
    await parent?.close();
    await up?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('refuses a request without a client certificate', async () => {
    const anon = new HttpClient({ baseUrl: parentUrl, caPem: up.ca.certPem });
    clients.push(anon);
    const e = await anon.getStream('/v1/events', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect((e as HttpError).status).toBe(401);
    expect((e as HttpError).serverCode).toBe('no-certificate');
  });

  it("a child depot follows its parent: the parent's switch is announced and the child syncs from it", async () => {
    listener.start();
    // On connect the child hears generation N, which it lacks: it syncs.
    await until('the first sync', () => child.db.served()?.generation === parent.db.served()?.generation);
    const before = childSyncs;
    await up.publish('app', '2.0', randomBytesSeeded(150_000, 2));
    await parent.engine.sync();
    const g = parent.db.served()!.generation;
    await until('the child at the new generation', () => child.db.served()?.generation === g);
    expect(childSyncs).toBe(before + 1);
  });

  it('relays a sync-now request to its children', async () => {
    const before = childSyncs;
    hub.syncNow({ seq: 7, depot: null });
    await until('the sync', () => childSyncs === before + 1);
    hub.syncNow({ seq: 8, depot: 'someone-else' });
    hub.syncNow({ seq: 9, depot: 'child' });
    await until('the sync for the child by name', () => childSyncs === before + 2);
  });

  it('ends the stream of an agent revoked while connected, and refuses its next one (403 revoked)', async () => {
    const bad = agentCredentials(up.ca, 'agent-bad');
    const c = new HttpClient({
      baseUrl: parentUrl,
      caPem: up.ca.certPem,
      keyPem: bad.keyPem,
      certPem: bad.certPem,
      minBytesPerSecond: 0,
    });
    clients.push(c);
    const res = await c.getStream('/v1/events', { maxBytes: 1e6 });
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const ended = new Promise<void>((resolve) => {
      res.body.on('data', () => undefined);
      res.body.on('end', resolve);
      res.body.on('error', () => resolve());
    });
    up.revoke([bad.serial]);
    await parent.engine.sync();
    await ended;
    const e = await c.getStream('/v1/events', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect((e as HttpError).status).toBe(403);
    expect((e as HttpError).serverCode).toBe('revoked');
  });
});
