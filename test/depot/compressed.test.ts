import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../src/content/manifest.js';
import { silentLogger } from '../../src/log.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { openDepot, type Depot } from '../../depot/depot.js';
import { createDepotApp } from '../../depot/serve/app.js';
import { startDepotServer, type DepotServer } from '../../depot/serve/server.js';
import { decompress } from '../../src/compress/zstd.js';
import { blake3Hex } from '../../src/hash/blake3.js';
import { HttpClient } from '../../src/net/client.js';
import { consume } from '../../src/net/consume.js';
import { agentCredentials, startUpstream, writeDepotDir, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';

/** Text-like bytes (about 3-5× with zstd -3), deterministic. */
function textish(bytes: number, seed: number): Buffer {
  const words = ['depot', 'sync', 'chunk', 'manifest', 'agent', 'master', 'release', 'version', '\n'];
  const parts: string[] = [];
  let x = seed;
  let n = 0;
  while (n < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 97} `;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

/**
 * Rewrite a depot's store as the release before compression left it: every chunk a plain record, the
 * index at schema 1 (no encoding columns).
 */
async function makeStoreFromBefore(dir: string): Promise<number> {
  const storeDir = join(dir, 'store');
  const now = ChunkStore.open(storeDir);
  const old = ChunkStore.open(`${storeDir}.old`, { compressLevel: 0 });
  let n = 0;
  try {
    const db = new Database(join(storeDir, 'chunks-v1', 'index.sqlite'), { readonly: true });
    const ids = (db.prepare('SELECT id FROM chunks').pluck().all() as Buffer[]).map((b) => b.toString('hex'));
    db.close();
    for (const id of ids) {
      await old.putMany([{ id, data: await now.get(id) }]);
      n++;
    }
  } finally {
    await now.close();
    await old.close();
  }
  const db = new Database(join(`${storeDir}.old`, 'chunks-v1', 'index.sqlite'));
  db.exec('ALTER TABLE chunks DROP COLUMN plain; ALTER TABLE chunks DROP COLUMN encoding;');
  db.pragma('user_version = 1');
  db.close();
  rmSync(storeDir, { recursive: true, force: true });
  renameSync(`${storeDir}.old`, storeDir);
  return n;
}

describe('compressed chunks through a depot (real mutual TLS on 127.0.0.1)', () => {
  let up: Upstream;
  let parent: Depot;
  let server: DepotServer;
  let parentUrl: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('docs', '1.0', textish(600_000, 1));
  });

  afterAll(async () => {
    await server?.close();
    await parent?.close();
    await up?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a depot whose store is from before compression migrates, serves and syncs; new chunks arrive and stay compressed', async () => {
    const files = writeDepotDir(up, { name: 'parent' });
    dirs.push(files.dir);
    const first = openDepot(files.dir, { logger: silentLogger(), now: up.clock.now });
    const r1 = await first.engine.sync();
    // The sync moved compressed records and stored them as received.
    expect(r1.chunkWireBytes).toBeLessThan(r1.chunkPlainBytes / 2);
    await first.close();
    expect(await makeStoreFromBefore(files.dir)).toBeGreaterThan(0);

    parent = openDepot(files.dir, { logger: silentLogger(), now: up.clock.now });
    await expectServedComplete(parent);
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

    // A child syncs from the migrated parent: plain records from before, served as they are.
    const cf = writeDepotDir(up, { name: 'child', upstreamUrl: parentUrl });
    dirs.push(cf.dir);
    const child = openDepot(cf.dir, { logger: silentLogger(), now: up.clock.now });
    try {
      const c1 = await child.engine.sync();
      expect(c1.generation).toBe(parent.db.served()!.generation);
      await expectServedComplete(child);

      // A new release: the parent receives it compressed, beside its old plain records; the child too.
      await up.publish('docs', '2.0', textish(600_000, 2));
      const p2 = await parent.engine.sync();
      expect(p2.chunkWireBytes).toBeLessThan(p2.chunkPlainBytes / 2);
      await expectServedComplete(parent);
      const c2 = await child.engine.sync();
      expect(c2.switched).toBe(true);
      expect(c2.chunkWireBytes).toBeLessThan(c2.chunkPlainBytes / 2);
      await expectServedComplete(child);

      const encodings = new Set<string>();
      for (const t of parent.db.liveTargets(['served']))
        for (const id of uniqueChunkIds(decodeManifest(t.bytes)))
          encodings.add((await parent.store.getStored(id)).encoding);
      expect([...encodings].sort()).toEqual(['plain', 'zstd']);

      // A single chunk: the stored frame to a client that accepts zstd, plain bytes to one that does not.
      const creds = agentCredentials(up.ca, 'agent-z');
      const http = new HttpClient({ baseUrl: parentUrl, caPem: up.ca.certPem, ...creds });
      try {
        const ids = [...parent.db.liveTargets(['served'])].flatMap((t) =>
          uniqueChunkIds(decodeManifest(t.bytes)),
        );
        let zstdId: string | undefined;
        for (const id of ids) if ((await parent.store.getStored(id)).encoding === 'zstd') zstdId ??= id;
        const get = async (accept: string | undefined) => {
          const res = await http.request('GET', `/v1/chunks/${zstdId}`, {
            headers: accept ? { 'accept-encoding': accept } : {},
            maxBytes: 1024 * 1024,
            what: 'chunk',
          });
          const parts: Buffer[] = [];
          await consume(res.body, (b: Buffer) => {
            parts.push(Buffer.from(b));
            return undefined;
          });
          return { headers: res.headers, body: Buffer.concat(parts) };
        };
        const z = await get('gzip, zstd');
        expect(z.headers['content-encoding']).toBe('zstd');
        const plainLength = Number(z.headers['x-depotsync-plain-length']);
        expect(blake3Hex(decompress(z.body, { maxBytes: plainLength, exact: true }))).toBe(zstdId);
        const p = await get(undefined);
        expect(p.headers['content-encoding']).toBeUndefined();
        expect(blake3Hex(p.body)).toBe(zstdId);
      } finally {
        http.close();
      }
      expect(parent.store.plainBytes()).toBeGreaterThan(parent.store.stats().bytes);
    } finally {
      await child.close();
    }
  });
});
