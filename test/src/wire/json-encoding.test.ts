import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync } from 'node:zlib';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { silentLogger } from '../../../src/log.js';
import { HttpClient } from '../../../src/net/client.js';
import { ReadClient } from '../../../src/read/client.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { errorHandler } from '../../../src/serve/http-errors.js';
import { readRoutes, type ReadApiSource } from '../../../src/serve/read-api.js';
import { DeltaDecoder, encodeDeltaRequest } from '../../../src/wire/chunk-delta.js';
import { brEncode, decodeBody, REQUEST_ENCODING_HEADER } from '../../../src/wire/json-encoding.js';

// A snapshot-like document: 256 entries that differ in a digit or two, as TUF's are.
const SNAPSHOT = Buffer.from(
  JSON.stringify({
    signed: {
      _type: 'snapshot',
      meta: Object.fromEntries(
        Array.from({ length: 256 }, (_, i) => [`${1 + (i % 3)}.bin-${i.toString(16)}.json`, { version: 1 }]),
      ),
    },
  }),
);
const MANIFEST = Buffer.from(JSON.stringify({ files: [{ path: 'a', chunks: ['x'.repeat(64)] }] }).repeat(20));

function expectError(f: () => unknown, code: string, message: RegExp): void {
  try {
    f();
    expect.unreachable();
  } catch (e) {
    expect(isDepotsyncError(e, code as never), String(e)).toBe(true);
    expect((e as Error).message).toMatch(message);
  }
}

describe('decodeBody', () => {
  it('gives back the plain bytes of a brotli body, and a plain body as it is', () => {
    expect(decodeBody(brEncode(SNAPSHOT), 'br', SNAPSHOT.length, 'x').equals(SNAPSHOT)).toBe(true);
    expect(decodeBody(SNAPSHOT, undefined, 0, 'x')).toBe(SNAPSHOT);
    expect(decodeBody(SNAPSHOT, 'identity', 0, 'x')).toBe(SNAPSHOT);
  });

  it('stops a body that decodes past the cap (bomb)', () => {
    const bomb = brotliCompressSync(Buffer.alloc(8 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(1000);
    expectError(
      () => decodeBody(bomb, 'br', 64 * 1024, 'snapshot'),
      'too-large',
      /more than the limit of 65536/,
    );
  });

  it('refuses a damaged or cut brotli body, and an encoding it did not ask for', () => {
    const damaged = brEncode(SNAPSHOT);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    expectError(() => decodeBody(damaged, 'br', 1 << 20, 'snapshot'), 'corrupt', /does not decode/);
    const cut = brEncode(SNAPSHOT).subarray(0, 100);
    expectError(() => decodeBody(cut, 'br', 1 << 20, 'snapshot'), 'corrupt', /does not decode/);
    expectError(
      () => decodeBody(SNAPSHOT, 'gzip', 1 << 20, 'snapshot'),
      'corrupt',
      /content-encoding "gzip"/,
    );
  });
});

describe('brotli on the read API', () => {
  const chunk = Buffer.alloc(40_000, 7);
  const chunkId = blake3Hex(chunk);
  const source: ReadApiSource = {
    metadata: (name) =>
      name === '3.snapshot.json' ? SNAPSHOT : name === 'timestamp.json' ? MANIFEST : undefined,
    target: (name) => (name.endsWith('.m@1.json') ? MANIFEST : undefined),
    revocations: () => undefined,
    chunks: { has: (id) => id === chunkId, get: async () => chunk },
  };
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(silentLogger()));
  app.route('/', readRoutes(source, silentLogger()));

  it('compresses metadata and manifests only for a client that accepts br, and says on the timestamp it reads br bodies', async () => {
    const ts = await app.request('/v1/metadata/timestamp.json', { headers: { 'accept-encoding': 'br' } });
    expect(ts.headers.get(REQUEST_ENCODING_HEADER)).toBe('br');
    const br = await app.request('/v1/metadata/3.snapshot.json', {
      headers: { 'accept-encoding': 'gzip, br' },
    });
    expect(br.headers.get('content-encoding')).toBe('br');
    expect(br.headers.get(REQUEST_ENCODING_HEADER)).toBeNull();
    const wire = Buffer.from(await br.arrayBuffer());
    expect(wire.length).toBeLessThan(SNAPSHOT.length / 5);
    expect(decodeBody(wire, 'br', SNAPSHOT.length, 'x').equals(SNAPSHOT)).toBe(true);
    // An old client asks for nothing and gets the signed bytes as they are.
    const plain = await app.request('/v1/metadata/3.snapshot.json');
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(Buffer.from(await plain.arrayBuffer()).equals(SNAPSHOT)).toBe(true);
    const target = await app.request(`/v1/targets/${'a'.repeat(64)}.m@1.json`, {
      headers: { 'accept-encoding': 'br' },
    });
    expect(target.headers.get('content-encoding')).toBe('br');
    expect(decodeBody(Buffer.from(await target.arrayBuffer()), 'br', 1 << 20, 'x').equals(MANIFEST)).toBe(
      true,
    );
  });

  it('reads a brotli chunk delta request, and refuses one that does not decode with 400', async () => {
    const body = encodeDeltaRequest([{ bases: [chunkId], offset: 0, target: chunkId }]);
    const ok = await app.request('/v1/chunks/delta', {
      method: 'POST',
      body: new Uint8Array(brEncode(body)),
      headers: { 'content-type': 'application/json', 'content-encoding': 'br' },
    });
    expect(ok.status).toBe(200);
    const recs = new DeltaDecoder([chunkId], 40_000).push(Buffer.from(await ok.arrayBuffer()));
    expect(recs.map((r) => r.kind)).toEqual(['delta']);
    const bad = await app.request('/v1/chunks/delta', {
      method: 'POST',
      body: new Uint8Array(body),
      headers: { 'content-type': 'application/json', 'content-encoding': 'br' },
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/brotli body does not decode/);
  });
});

describe('ReadClient against a server', () => {
  let server: Server;
  let client: ReadClient;
  const seen: Array<{
    url: string;
    encoding: string | undefined;
    accept: string | undefined;
    chosen?: boolean | undefined;
  }> = [];
  /** What the server sends for a metadata name: a bomb, a lie about the encoding, or the real answer. */
  let mode: 'real' | 'bomb' | 'gzip' = 'real';
  beforeAll(async () => {
    const source: ReadApiSource = {
      metadata: (name) =>
        name === '3.snapshot.json' ? SNAPSHOT : name === 'timestamp.json' ? MANIFEST : undefined,
      target: () => undefined,
      revocations: () => undefined,
      chunks: { has: () => false, get: async () => Buffer.alloc(0) },
    };
    const app = new Hono<ServeEnv>();
    app.onError(errorHandler(silentLogger()));
    app.use('*', async (c, next) => {
      const body = c.req.method === 'POST' ? Buffer.from(await c.req.raw.clone().arrayBuffer()) : undefined;
      seen.push({
        url: c.req.path,
        encoding: c.req.header('content-encoding'),
        accept: c.req.header('accept-encoding'),
        chosen:
          body &&
          (
            JSON.parse(decodeBody(body, c.req.header('content-encoding'), 1 << 20, 'x').toString()) as {
              chosen?: boolean;
            }
          ).chosen,
      });
      if (mode === 'bomb' && c.req.path.startsWith('/v1/metadata/'))
        return c.body(new Uint8Array(brotliCompressSync(Buffer.alloc(8 << 20, 32))), 200, {
          'content-encoding': 'br',
        });
      if (mode === 'gzip' && c.req.path.startsWith('/v1/metadata/'))
        return c.body(new Uint8Array(SNAPSHOT), 200, { 'content-encoding': 'gzip' });
      await next();
    });
    app.route('/', readRoutes(source, silentLogger()));
    server = createServer(getRequestListener(app.fetch));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const http = new HttpClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    client = new ReadClient(http, { name: 'test', role: 'depot', refused: 'refused' });
  });
  afterAll(async () => {
    client.close();
    await new Promise((r) => server.close(r));
  });

  it('gets metadata compressed, verifiable as the signed bytes, and then compresses its delta requests', async () => {
    mode = 'real';
    // Before any metadata answer, the server's support is unknown: the request goes plain.
    const ids = Array.from({ length: 40 }, (_, i) => blake3Hex(Buffer.from([i])));
    const pairs = ids.map((target, i) => ({
      bases: ids.slice(Math.max(0, i - 4), i + 1),
      offset: 0,
      target,
    }));
    const lengths = pairs.map(() => 100);
    (await client.delta(pairs, lengths, new AbortController().signal, true, true, true)).body.resume();
    expect(seen.at(-1)).toMatchObject({ url: '/v1/chunks/delta', encoding: undefined, chosen: undefined });
    const got = await client.fetchCounted('3.snapshot.json', SNAPSHOT.length);
    expect(got.bytes.equals(SNAPSHOT)).toBe(true);
    expect(got.wireBytes).toBeLessThan(SNAPSHOT.length / 5);
    expect(seen.at(-1)!.accept).toBe('br');
    // The server's announcement rides on the timestamp, which every sync and fetch asks for first.
    (await client.delta(pairs, lengths, new AbortController().signal, true, true, true)).body.resume();
    expect(seen.at(-1)).toMatchObject({ url: '/v1/chunks/delta', encoding: undefined, chosen: undefined });
    await client.fetch('timestamp.json', 1 << 20);
    const res = await client.delta(pairs, lengths, new AbortController().signal, true, true, true);
    const recs = new DeltaDecoder(ids, 100).push(
      Buffer.concat(await res.body.toArray().then((a) => a as Buffer[])),
    );
    expect(recs.map((r) => r.kind)).toEqual(ids.map(() => 'absent'));
    expect(seen.at(-1)).toMatchObject({ url: '/v1/chunks/delta', encoding: 'br', chosen: true });
  });

  it('refuses a compressed answer that decodes past the signed length (bomb), and an encoding it did not ask for', async () => {
    mode = 'bomb';
    await expect(client.fetch('3.snapshot.json', 64 * 1024)).rejects.toMatchObject({ code: 'too-large' });
    mode = 'gzip';
    await expect(client.fetch('3.snapshot.json', 64 * 1024)).rejects.toMatchObject({ code: 'corrupt' });
    mode = 'real';
  });
});
