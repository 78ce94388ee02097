import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
import { openDepot, type Depot } from '../../depot/depot.js';
import { createDepotApp } from '../../depot/serve/app.js';
import { startDepotServer, type DepotServer } from '../../depot/serve/server.js';
import { pruneUnreferenced } from '../../depot/sync/prune.js';
import { scrub } from '../../depot/sync/scrub.js';
import {
  agentCredentials,
  randomBytesSeeded,
  startUpstream,
  writeDepotDir,
  type Published,
  type Upstream,
} from './fixture.js';
import { expectServedComplete } from './helpers.js';

describe('depot serving agents and child depots (real mutual TLS on 127.0.0.1)', () => {
  let up: Upstream;
  let parent: Depot;
  let server: DepotServer;
  let parentUrl: string;
  let pkg: Published;
  let good: ReturnType<typeof agentCredentials>;
  let bad: ReturnType<typeof agentCredentials>;
  const dirs: string[] = [];
  const clients: HttpClient[] = [];

  function agent(creds?: { keyPem: string; certPem: string }): HttpClient {
    const c = new HttpClient({
      baseUrl: parentUrl,
      caPem: up.ca.certPem,
      ...(creds ? { keyPem: creds.keyPem, certPem: creds.certPem } : {}),
    });
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    up = await startUpstream();
    pkg = await up.publish('app', '1.0', randomBytesSeeded(400_000, 11));
    const files = writeDepotDir(up, { name: 'parent' });
    dirs.push(files.dir);
    parent = openDepot(files.dir, { logger: silentLogger(), now: up.clock.now });
    await parent.engine.sync();
    const app = createDepotApp({
      db: parent.db,
      store: parent.store,
      revocations: parent.revocations,
      logger: silentLogger(),
      name: 'parent',
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
    good = agentCredentials(up.ca, 'agent-good');
    bad = agentCredentials(up.ca, 'agent-bad');
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    await server?.close();
    await parent?.close();
    await up?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('serves the switched generation byte for byte: timestamp, metadata, manifest, chunks with Range and ETag', async () => {
    const a = agent(good);
    const ts = await a.getBytes('/v1/metadata/timestamp.json', { maxBytes: 16_384 });
    expect(ts.equals(up.files.get('timestamp.json')!)).toBe(true);
    const gen = up.repo.generation;
    expect(
      (await a.getBytes(`/v1/metadata/${gen}.snapshot.json`, { maxBytes: 1e6 })).equals(
        up.files.get(`${gen}.snapshot.json`)!,
      ),
    ).toBe(true);
    expect((await a.getBytes(`/v1/targets/${pkg.name}`, { maxBytes: 1e6 })).equals(pkg.bytes)).toBe(true);
    const id = pkg.chunkIds[0]!;
    const chunk = await up.store.get(id);
    const res = await a.getStream(`/v1/chunks/${id}`, { maxBytes: 1e6, headers: { range: 'bytes=10-19' } });
    expect(res.status).toBe(206);
    expect(res.headers.etag).toBe(`"${id}"`);
    const parts: Buffer[] = [];
    for await (const p of res.body) parts.push(p as Buffer);
    expect(Buffer.concat(parts).equals(chunk.subarray(10, 20))).toBe(true);
    const cached = await a
      .request('GET', `/v1/chunks/${id}`, { maxBytes: 1e6, headers: { 'if-none-match': `"${id}"` } })
      .catch((e: unknown) => e);
    expect((cached as HttpError).status ?? (cached as { status: number }).status).toBe(304);
  });

  it('answers /healthz and root metadata without a certificate, everything else only with one', async () => {
    const anon = agent();
    expect(await anon.getJson('/healthz', { maxBytes: 4096 })).toMatchObject({
      status: 'ok',
      generation: up.repo.generation,
    });
    expect(
      (await anon.getBytes('/v1/metadata/1.root.json', { maxBytes: 1e6 })).equals(
        up.files.get('1.root.json')!,
      ),
    ).toBe(true);
    const e = await anon
      .getBytes('/v1/metadata/timestamp.json', { maxBytes: 16_384 })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect((e as HttpError).status).toBe(401);
    expect((e as HttpError).serverCode).toBe('no-certificate');
  });

  it('refuses an agent the master revoked, once the depot has synced the signed revocation list', async () => {
    expect(
      (await agent(bad).getBytes('/v1/metadata/timestamp.json', { maxBytes: 16_384 })).length,
    ).toBeGreaterThan(0);
    up.revoke([bad.serial]);
    await parent.engine.sync();
    const e = await agent(bad)
      .getBytes('/v1/metadata/timestamp.json', { maxBytes: 16_384 })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect((e as HttpError).status).toBe(403);
    expect((e as HttpError).serverCode).toBe('revoked');
    // Others are still served, and the depot re-serves the list itself byte for byte.
    const list = await agent(good).getBytes('/v1/revocations.json', { maxBytes: 1e6 });
    expect(list.equals(parent.db.revocations()!.bytes)).toBe(true);
  });

  it('a child depot syncs from its parent (tiers) with the same verification, and only after the parent switched', async () => {
    const files = writeDepotDir(up, { name: 'child', upstreamUrl: parentUrl });
    dirs.push(files.dir);
    const child = openDepot(files.dir, { logger: silentLogger(), now: up.clock.now });
    try {
      const r1 = await child.engine.sync();
      expect(r1.generation).toBe(parent.db.served()!.generation);
      await expectServedComplete(child);
      expect(child.db.served()!.timestamp.equals(parent.db.served()!.timestamp)).toBe(true);

      const v2 = randomBytesSeeded(400_000, 11);
      v2.fill(1, 200_000, 205_000);
      const p2 = await up.publish('app', '1.1', v2);
      // The parent has not synced: the child sees nothing new.
      expect((await child.engine.sync()).switched).toBe(false);
      await parent.engine.sync();
      const r3 = await child.engine.sync();
      expect(r3.generation).toBe(up.repo.generation);
      expect(r3.chunksFetched).toBe(p2.chunkIds.filter((id) => !pkg.chunkIds.includes(id)).length);
      await expectServedComplete(child);
      // Status reports go to the master, not to the parent.
      expect(up.reports.some((r) => r.machine === 'child')).toBe(true);
    } finally {
      await child.close();
    }
  });

  it('collects chunks no generation needs any more, and keeps every served one', async () => {
    up.unpublish(pkg.path);
    await parent.engine.sync();
    const { decodeManifest, uniqueChunkIds } = await import('../../src/content/manifest.js');
    const live = new Set(
      [...parent.db.liveTargets(['served'])].flatMap((t) => uniqueChunkIds(decodeManifest(t.bytes))),
    );
    const only1 = pkg.chunkIds.filter((id) => !live.has(id));
    expect(only1.length).toBeGreaterThan(0);
    const r = await parent.engine.exclusive('gc', () => pruneUnreferenced(parent, { graceMs: 0 }));
    expect(r.removed).toBe(only1.length);
    expect(r.targetsPruned).toBe(1);
    await expectServedComplete(parent);
    for (const id of only1) expect(parent.store.has(id)).toBe(false);
    expect(parent.db.targetBytes(pkg.name)).toBeUndefined();
  });

  it('scrubs: a chunk damaged on disk is quarantined, counted, and fetched again by the next sync', async () => {
    const [t] = parent.db.slotTargets('served');
    const manifest = parent.db.targetBytes(t!.name)!;
    const { decodeManifest } = await import('../../src/content/manifest.js');
    const id = decodeManifest(manifest).files[0]!.chunks[2]!.id;
    const data = await parent.store.get(id);
    // Flip one byte of the chunk inside its pack file.
    const packs = join(parent.store.root, 'packs');
    let flipped = false;
    for (const f of readdirSync(packs)) {
      const bytes = readFileSync(join(packs, f));
      const at = bytes.indexOf(data.subarray(0, 64));
      if (at >= 0) {
        bytes[at + 100] = (bytes[at + 100]! ^ 0x55) & 0xff;
        writeFileSync(join(packs, f), bytes);
        flipped = true;
      }
    }
    expect(flipped).toBe(true);
    const s = await scrub(parent, { bytesPerSecond: 1 << 30 });
    expect(s.failed).toBe(1);
    expect(s.ok).toBeGreaterThan(0);
    expect(parent.store.has(id)).toBe(false);
    const r = await parent.engine.sync();
    expect(r.chunksFetched).toBe(1);
    await expectServedComplete(parent);
    expect(up.reports.filter((x) => x.machine === 'parent').at(-1)!.report).toMatchObject({ scrubFailed: 1 });
    expect(
      isDepotsyncError(
        await parent.store.get(id).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(false);
  });
});
