import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient } from '../../../src/net/client.js';
import { HttpError } from '../../../src/net/http-error.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** A hostile server speaking raw HTTP/1.1, one behaviour per path. */
function evilServer(): net.Server {
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((socket) => {
    let head = '';
    socket.on('error', () => undefined);
    socket.on('close', () => {
      for (const t of timers) clearInterval(t);
    });
    socket.on('data', (d) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const path = head.split(' ')[1];
      head = '';
      switch (path) {
        case '/ok':
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
          break;
        case '/declared-big':
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n');
          break;
        case '/more-than-declared':
          socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0123456789abcdef');
          break;
        case '/short':
          socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
          break;
        case '/endless': {
          // Chunked, never ends: the endless-data attack.
          socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
          const chunk = Buffer.alloc(16 * 1024, 0x61);
          const pump = () => {
            while (
              !socket.destroyed &&
              socket.write(`${chunk.length.toString(16)}\r\n`) &&
              socket.write(chunk) &&
              socket.write('\r\n')
            );
          };
          socket.on('drain', pump);
          pump();
          break;
        }
        case '/trickle': {
          // One byte every 20 ms: the slow-retrieval attack.
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n');
          const t = setInterval(() => socket.write('x'), 20);
          timers.add(t);
          break;
        }
        case '/silent':
          break;
        case '/stall-body':
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
          break;
        default:
          socket.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops');
      }
    });
  });
  return server;
}

/** A well-behaved server for the normal cases. */
function goodServer(): http.Server {
  return http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      if (req.url === '/echo') {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            method: req.method,
            bytes: body.length,
            sha256: createHash('sha256').update(body).digest('hex'),
            type: req.headers['content-type'],
          }),
        );
      } else if (req.url === '/big') {
        res.setHeader('content-length', String(3 * 1024 * 1024));
        res.end(Buffer.alloc(3 * 1024 * 1024, 0x62));
      } else if (req.url === '/forbidden') {
        res.statusCode = 403;
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            error: {
              code: 'revoked',
              message: 'certificate 1a2b of pc-1 was revoked',
              hint: 'ask the operator',
            },
          }),
        );
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { code: 'not-found', message: `no ${req.url}` } }));
      }
    });
  });
}

describe('HttpClient caps, timeouts and errors', () => {
  let evil: net.Server;
  let good: http.Server;
  let evilUrl = '';
  let goodUrl = '';

  beforeAll(async () => {
    evil = evilServer();
    good = goodServer();
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => good.listen(0, '127.0.0.1', r));
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
    goodUrl = `http://127.0.0.1:${(good.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => evil.close(r));
    good.closeAllConnections();
    await new Promise((r) => good.close(r));
  });

  const failure = (p: Promise<unknown>) =>
    p.then(
      () => {
        throw new Error('expected a failure');
      },
      (e: unknown) => e as Error & { code: string },
    );

  it('reads a small body', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    expect((await c.getBytes('/ok', { maxBytes: 5 })).toString()).toBe('hello');
    c.close();
  });

  it('refuses a declared length over maxBytes before reading the body', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    const e = await failure(c.getBytes('/declared-big', { maxBytes: 1000, what: 'timestamp.json' }));
    expect(e.code).toBe('too-large');
    expect(e.message).toMatch(
      /^timestamp.json: GET http:\/\/127.0.0.1:\d+\/declared-big: declared 10000000 bytes exceeds the limit of 1000/,
    );
    c.close();
  });

  it('stops an endless body at maxBytes (counted while streaming)', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    const e = await failure(c.getBytes('/endless', { maxBytes: 200_000, what: 'snapshot' }));
    expect(e.code).toBe('too-large');
    expect(e.message).toMatch(/snapshot: .*body exceeds the limit of 200000 bytes/);
    c.close();
  });

  it('never hands out more bytes than the declared Content-Length', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    expect((await c.getBytes('/more-than-declared', { maxBytes: 100 })).toString()).toBe('01234');
    c.close();
  });

  it('fails with truncated when the body ends short of its declared length', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    const e = await failure(c.getBytes('/short', { maxBytes: 1000 }));
    expect(e.code).toBe('truncated');
    expect(e.message).toMatch(/body ended after 10 of 100 declared bytes/);
    c.close();
  });

  it('fails with timeout when bytes trickle in below the minimum rate', async () => {
    const c = new HttpClient({ baseUrl: evilUrl, minBytesPerSecond: 1000, rateWindowMs: 150 });
    const e = await failure(c.getBytes('/trickle', { maxBytes: 2_000_000 }));
    expect(e.code).toBe('timeout');
    expect(e.message).toMatch(/only \d+ bytes in 150 ms \(minimum 1000 bytes\/s\)/);
    c.close();
  });

  it('fails with timeout when no response comes', async () => {
    const c = new HttpClient({ baseUrl: evilUrl, timeoutMs: 200 });
    const e = await failure(c.getBytes('/silent', { maxBytes: 10 }));
    expect(e.code).toBe('timeout');
    c.close();
  });

  it('fails with timeout when the body stalls (not with truncated)', async () => {
    const c = new HttpClient({ baseUrl: evilUrl, timeoutMs: 200, minBytesPerSecond: 0 });
    const e = await failure(c.getBytes('/stall-body', { maxBytes: 1000 }));
    expect(e.code).toBe('timeout');
    expect(e.message).toMatch(/no data for 200 ms/);
    c.close();
  });

  it('does not blame the server when the consumer reads slowly', async () => {
    const c = new HttpClient({ baseUrl: goodUrl, minBytesPerSecond: 1000, rateWindowMs: 50, timeoutMs: 100 });
    const res = await c.getStream('/big', { maxBytes: 4 * 1024 * 1024 });
    expect(res.body.readableHighWaterMark).toBe(1024 * 1024);
    await delay(300); // the consumer is busy for six windows while the buffers are full
    let total = 0;
    for await (const chunk of res.body) total += (chunk as Buffer).length;
    expect(total).toBe(3 * 1024 * 1024);
    c.close();
  });

  it('turns a 403 into a forbidden error carrying the server message', async () => {
    const c = new HttpClient({ baseUrl: goodUrl });
    const e = await failure(c.getBytes('/forbidden', { maxBytes: 10 }));
    expect(e).toBeInstanceOf(HttpError);
    expect(e).toMatchObject({
      code: 'forbidden',
      status: 403,
      serverCode: 'revoked',
      hint: 'ask the operator',
    });
    expect(e.message).toMatch(
      /^GET http:\/\/127.0.0.1:\d+\/forbidden: 403 revoked: certificate 1a2b of pc-1 was revoked$/,
    );
    expect(await failure(c.getBytes('/nothing', { maxBytes: 10 }))).toMatchObject({
      code: 'not-found',
      status: 404,
    });
    c.close();
  });

  it('maps a 500 and a refused connection to network errors', async () => {
    const c = new HttpClient({ baseUrl: evilUrl });
    expect(await failure(c.getBytes('/whatever', { maxBytes: 10 }))).toMatchObject({
      code: 'network',
      status: 500,
    });
    c.close();
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const d = new HttpClient({ baseUrl: `http://127.0.0.1:${port}` });
    const e = await failure(d.getBytes('/x', { maxBytes: 10 }));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(/connection refused/);
    d.close();
  });

  it('posts JSON and streams', async () => {
    const c = new HttpClient({ baseUrl: `${goodUrl}/` });
    expect(await c.postJson('/echo', { ids: ['a', 'b'] }, { maxBytes: 1000 })).toMatchObject({
      method: 'POST',
      bytes: 17,
      type: 'application/json',
    });
    const data = Buffer.alloc(1024 * 1024 + 3, 7);
    const res = await c.postStream(
      '/echo',
      Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
      { 'content-type': 'application/octet-stream' },
      { maxBytes: 1000 },
    );
    let text = '';
    for await (const chunk of res.body) text += chunk.toString();
    expect(JSON.parse(text)).toMatchObject({
      bytes: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
    c.close();
  });

  it('leaves no header timer behind when the response comes before the request finished sending', async () => {
    // A timer left armed keeps a finished command's process alive for timeoutMs (seen under wine, where
    // a write's completion can come after the response). Run in a process of its own, timed to its exit.
    const script = `
      import net from 'node:net';
      import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
      import { HttpClient } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/net/client.js')).href)};
      const server = net.createServer((s) => {
        s.once('data', () => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'));
        s.on('error', () => {});
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const c = new HttpClient({ baseUrl: 'http://127.0.0.1:' + server.address().port, timeoutMs: 20000 });
      const body = new Readable({ read() {} });
      body.push('x');
      const res = await c.postStream('/early', body, {}, { maxBytes: 10 });
      for await (const _ of res.body);
      body.push(null); // the request finishes sending only now, after its response
      await new Promise((r) => setTimeout(r, 200));
      c.close();
      server.close();
    `;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8_000);
  }, 40_000);

  it('validates its options, naming the option', () => {
    expect(() => new HttpClient({ baseUrl: 'ftp://x' })).toThrow(
      /baseUrl must start with https:\/\/ or http:\/\//,
    );
    expect(() => new HttpClient({ baseUrl: 'https://x' })).toThrow(/caPem is required/);
    expect(() => new HttpClient({ baseUrl: 'http://x', timeoutMs: 0 })).toThrow(
      /timeoutMs must be an integer >= 1, got 0/,
    );
    expect(() => new HttpClient({ baseUrl: 'http://x', certPem: 'c' })).toThrow(
      /certPem and keyPem go together/,
    );
    expect(new HttpClient({ baseUrl: 'http://x/base/' }).url('/v1/x')).toBe('http://x/base/v1/x');
    expect(() => new HttpClient({ baseUrl: 'http://x' }).url('v1')).toThrow(/path must start with '\/'/);
    expect(() => new HttpClient({ baseUrl: 'http://x' }).url('/a b')).toThrow(/without spaces/);
  });
});
