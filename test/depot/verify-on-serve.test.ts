import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../src/content/manifest.js';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { HttpError } from '../../src/net/http-error.js';
import { BatchDecoder, BATCH_CONTENT_TYPE } from '../../src/wire/chunk-batch.js';
import { DEFAULT_SERVING } from '../../depot/config.js';
import { startDepotService, type DepotService } from '../../depot/service.js';
import {
  agentCredentials,
  randomBytesSeeded,
  startUpstream,
  writeDepotDir,
  type DepotFiles,
  type Upstream,
} from './fixture.js';

/** Flip one byte of chunk `data` inside whichever pack file holds it (disk rot). */
function rot(storeRoot: string, data: Buffer): void {
  const packs = join(storeRoot, 'packs');
  for (const f of readdirSync(packs)) {
    const bytes = readFileSync(join(packs, f));
    const at = bytes.indexOf(data.subarray(0, 64));
    if (at < 0) continue;
    bytes[at + 100] = (bytes[at + 100]! ^ 0x55) & 0xff;
    writeFileSync(join(packs, f), bytes);
    return;
  }
  throw new Error('chunk not found in any pack');
}

async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('depot serve verifies chunks before serving them (disk rot)', () => {
  let up: Upstream;
  let files: DepotFiles;
  let service: DepotService;
  let agent: HttpClient;
  let ids: string[];

  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('rotting', '1.0', randomBytesSeeded(600_000, 5));
    // hotChunkBytes 0: every chunk comes from disk (the in-memory copies are checked as they go in).
    files = writeDepotDir(up, {
      name: 'rotting',
      config: { serving: { hotChunkBytes: 0 }, notify: { enabled: false } },
    });
    service = (await startDepotService(files.dir, {
      logger: silentLogger(),
      listen: '127.0.0.1:0',
      open: { now: up.clock.now },
    }))!;
    await service.sync.runNow();
    const { keyPem, certPem } = agentCredentials(up.ca, 'agent-rot');
    agent = new HttpClient({
      baseUrl: `https://127.0.0.1:${service.server.port}`,
      caPem: up.ca.certPem,
      keyPem,
      certPem,
    });
    const [t] = service.depot.db.slotTargets('served');
    ids = uniqueChunkIds(decodeManifest(service.depot.db.targetBytes(t!.name)!));
  });
  afterAll(async () => {
    agent?.close();
    await service?.stop();
    await up?.close();
    if (files) rmSync(files.dir, { recursive: true, force: true });
  });

  const quarantined = (id: string) =>
    existsSync(service.depot.store.quarantineDir) &&
    readdirSync(service.depot.store.quarantineDir).some((f) => f.startsWith(id));
  const intact = (id: string) =>
    service.depot.store.has(id) &&
    service.depot.store.get(id, { verify: true }).then(
      () => true,
      () => false,
    );

  async function batch(want: string[]): Promise<Array<Buffer | undefined>> {
    const res = await agent.postStream(
      '/v1/chunks/batch',
      Buffer.from(JSON.stringify({ ids: want })),
      { 'content-type': 'application/json' },
      { maxBytes: 1 << 26 },
    );
    expect(res.headers['content-type']).toBe(BATCH_CONTENT_TYPE);
    // Streamed straight to the socket, yet with the HSTS header every depot answer carries.
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const dec = new BatchDecoder(want, 1 << 20);
    const out: Array<Buffer | undefined> = [];
    for await (const piece of res.body)
      for (const r of dec.push(piece as Buffer)) out.push(r.data && Buffer.from(r.data));
    dec.finish();
    return out;
  }

  it('is on by default, with no window in which a chunk checked once is trusted', () => {
    expect(DEFAULT_SERVING).toMatchObject({ verifyOnServe: true, verifiedTtlMs: 0 });
  });

  it('never serves a rotted chunk, even one it served a moment ago; quarantines it and fetches it again', async () => {
    const [a, b] = [ids[1]!, ids[2]!];
    const good = await service.depot.store.get(a);
    // Served (and checked) once, then the disk rots under it.
    expect((await batch([a]))[0]!.equals(good)).toBe(true);
    rot(service.depot.store.root, good);
    const records = await batch([a, b]);
    expect(records[0]).toBeUndefined(); // sent as missing: the agent takes it from another source
    expect(records[1]!.equals(await service.depot.store.get(b))).toBe(true);
    // The bad copy is kept aside for inspection, then a sync brings a good one back.
    await until(() => quarantined(a), 'the quarantined copy');
    await until(() => intact(a), 'the chunk to be fetched again');
    expect((await batch([a]))[0]!.equals(good)).toBe(true);
  });

  it('refuses a rotted chunk on GET /v1/chunks/{id} too', async () => {
    const c = ids[3]!;
    const good = await service.depot.store.get(c);
    rot(service.depot.store.root, good);
    const e = await agent.getBytes(`/v1/chunks/${c}`, { maxBytes: 1 << 20 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect((e as HttpError).status).toBe(404);
    const health = await agent.getStream('/healthz', { maxBytes: 4096 });
    expect(health.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    for await (const _ of health.body) void _;
    await until(() => quarantined(c), 'the quarantined copy');
    await until(() => intact(c), 'the chunk to be fetched again');
    expect((await agent.getBytes(`/v1/chunks/${c}`, { maxBytes: 1 << 20 })).equals(good)).toBe(true);
  });
});
