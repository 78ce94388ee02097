import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { HttpClient } from '../../../src/net/client.js';
import { HttpError } from '../../../src/net/http-error.js';
import { tlsServerOptions } from '../../../src/net/tls.js';
import {
  acrossEquivalentServers,
  checkUrlList,
  failsOver,
  unionUrls,
  REFUSED_MS,
  UrlPicker,
  type UrlMemory,
  type UrlPickerState,
} from '../../../src/net/url-picker.js';
import { createCa, issueServerCertificate, loadCa } from '../../../src/pki/ca.js';

describe('UrlPicker (order, stickiness, return to the preferred URL)', () => {
  const A = 'https://a.example:8443';
  const B = 'https://b.example:8443';
  const C = 'https://c.example:8443';

  it('tries the preferred URL first, then the others in configured order', () => {
    const p = new UrlPicker({ urls: [A, B, C] });
    expect(p.candidates()).toEqual([A, B, C]);
    expect(p.active).toBe(A);
  });

  it('sticks to the URL that answered after a failover, and the next request starts there', () => {
    let now = 1000;
    const p = new UrlPicker({ urls: [A, B, C], retryPreferredMs: 60_000, now: () => now });
    p.failed(A);
    expect(p.active).toBe(B);
    p.succeeded(B);
    now += 59_999;
    expect(p.candidates()).toEqual([B, A, C]);
    // B fails too: C next, then A (still within its wait), then B.
    p.failed(B);
    expect(p.active).toBe(C);
    expect(p.candidates()).toEqual([C, A, B]);
  });

  it('tries the preferred URL again once retryPreferredMs have passed, and goes back to it', () => {
    let now = 0;
    const p = new UrlPicker({ urls: [A, B], retryPreferredMs: 60_000, now: () => now });
    p.failed(A);
    p.succeeded(B);
    now = 60_000;
    expect(p.candidates()).toEqual([A, B]);
    p.succeeded(A);
    expect(p.active).toBe(A);
    expect(p.candidates()).toEqual([A, B]);
  });

  it('a preferred URL still failing at its retry waits another period', () => {
    let now = 0;
    const p = new UrlPicker({ urls: [A, B], retryPreferredMs: 60_000, now: () => now });
    p.failed(A);
    p.succeeded(B);
    now = 61_000;
    expect(p.candidates()[0]).toBe(A);
    p.failed(A); // failed again at 61 s
    expect(p.active).toBe(B);
    now = 100_000;
    expect(p.candidates()).toEqual([B, A]);
    now = 121_000;
    expect(p.candidates()).toEqual([A, B]);
  });

  it('a URL whose content was refused goes last for REFUSED_MS, even when the preferred is always retried', () => {
    let now = 0;
    const p = new UrlPicker({ urls: [A, B, C], retryPreferredMs: 0, now: () => now });
    p.refuse(A);
    expect(p.active).toBe(B);
    expect(p.candidates()).toEqual([B, C, A]);
    p.refuse(B);
    expect(p.candidates()).toEqual([C, A, B]);
    now = REFUSED_MS;
    expect(p.candidates()[0]).toBe(A);
  });

  it('remembers the URL that answered (and when the preferred failed) for the next process', () => {
    let now = 10_000;
    let saved: UrlPickerState | undefined;
    const memory: UrlMemory = { load: () => saved, save: (s) => (saved = s) };
    const p = new UrlPicker({ urls: [A, B, C], retryPreferredMs: 60_000, now: () => now, memory });
    p.failed(A);
    p.succeeded(B);
    expect(saved).toEqual({ active: B, preferredFailedAt: 10_000 });
    // The next process starts where this one ended, and returns to A on the same schedule.
    now = 20_000;
    const q = new UrlPicker({ urls: [A, B, C], retryPreferredMs: 60_000, now: () => now, memory });
    expect(q.candidates()).toEqual([B, A, C]);
    now = 70_000;
    expect(q.candidates()).toEqual([A, B, C]);
    // A remembered URL no longer configured is ignored.
    expect(new UrlPicker({ urls: [A, C], memory }).candidates()).toEqual([A, C]);
  });

  it('run(): fails over on network errors and 502/503/504, never on 4xx or 500, and names every URL when all fail', async () => {
    const p = new UrlPicker({ urls: [A, B, C] });
    const tried: string[] = [];
    const out = await p.run('probe', async (u) => {
      tried.push(u);
      if (u === A) throw new DepotsyncError('network', `GET ${u}/x: connection refused`);
      if (u === B) throw new HttpError('network', `GET ${u}/x: 503`, 503, undefined, undefined);
      return u;
    });
    expect(out).toBe(C);
    expect(tried).toEqual([A, B, C]);
    expect(p.active).toBe(C);

    for (const status of [401, 403, 404, 409, 400, 500]) {
      const q = new UrlPicker({ urls: [A, B] });
      const seen: string[] = [];
      const e = await q
        .run('probe', async (u) => {
          seen.push(u);
          throw new HttpError('forbidden', `GET ${u}/x: ${status}`, status, undefined, undefined);
        })
        .catch((x: unknown) => x);
      expect(e).toBeInstanceOf(HttpError);
      expect((e as HttpError).status).toBe(status);
      expect(seen).toEqual([A]);
      expect(q.active).toBe(A);
    }

    const all = new UrlPicker({ urls: [A, B] });
    const e = (await all
      .run('status report: POST /v1/status', async (u) => {
        throw new DepotsyncError('timeout', `POST ${u}/v1/status: no data for 100 ms`);
      })
      .catch((x: unknown) => x)) as DepotsyncError;
    expect(e.code).toBe('timeout');
    expect(e.message).toContain('none of the 2 servers answered');
    expect(e.message).toContain(`${A}: POST ${A}/v1/status: no data for 100 ms`);
    expect(e.message).toContain(`${B}: POST ${B}/v1/status: no data for 100 ms`);
    expect(e.hint).toMatch(/every configured master URL failed/);
  });

  it('run(): a request body that cannot be sent twice is not sent to a second URL', async () => {
    const p = new UrlPicker({ urls: [A, B] });
    const seen: string[] = [];
    await expect(
      p.run(
        'upload',
        async (u) => {
          seen.push(u);
          throw new DepotsyncError('network', 'connection reset');
        },
        { replayable: false },
      ),
    ).rejects.toThrow('connection reset');
    expect(seen).toEqual([A]);
    // The next request starts at the other URL.
    expect(p.active).toBe(B);
  });

  it('failsOver classifies errors', () => {
    expect(failsOver(new DepotsyncError('network', 'x'))).toBe(true);
    expect(failsOver(new DepotsyncError('timeout', 'x'))).toBe(true);
    expect(failsOver(new DepotsyncError('bad-certificate', 'x'))).toBe(true);
    for (const s of [502, 503, 504])
      expect(failsOver(new HttpError('network', 'x', s, undefined, undefined))).toBe(true);
    for (const s of [400, 401, 403, 404, 409, 429, 500])
      expect(failsOver(new HttpError('network', 'x', s, undefined, undefined))).toBe(false);
    expect(failsOver(new DepotsyncError('version-rollback', 'x'))).toBe(false);
    expect(failsOver(new Error('plain'))).toBe(false);
  });

  it('acrossEquivalentServers leaves a URL whose content fails verification, each URL at most once', async () => {
    const p = new UrlPicker({ urls: [A, B] });
    const seen: string[] = [];
    const refused: string[] = [];
    const out = await acrossEquivalentServers(
      p,
      async () => {
        seen.push(p.active);
        if (p.active === A) throw new DepotsyncError('version-rollback', 'generation 3 is older than 5');
        return 'ok';
      },
      (url) => refused.push(url),
    );
    expect(out).toBe('ok');
    expect(seen).toEqual([A, B]);
    expect(refused).toEqual([A]);
    // Every URL stale: the verification error, after each was tried once.
    const q = new UrlPicker({ urls: [A, B] });
    let n = 0;
    await expect(
      acrossEquivalentServers(q, async () => {
        n++;
        throw new DepotsyncError('version-rollback', 'stale');
      }),
    ).rejects.toMatchObject({ code: 'version-rollback' });
    expect(n).toBe(2);
    // Not a verification failure: no second try.
    n = 0;
    await expect(
      acrossEquivalentServers(new UrlPicker({ urls: [A, B] }), async () => {
        n++;
        throw new DepotsyncError('forbidden', 'revoked');
      }),
    ).rejects.toMatchObject({ code: 'forbidden' });
    expect(n).toBe(1);
  });

  it('acrossEquivalentServers ends when the only URL answering is the refused one (the others down)', async () => {
    const p = new UrlPicker({ urls: [A, B] });
    let n = 0;
    await expect(
      acrossEquivalentServers(p, () => {
        n++;
        return p.run('update', async (u) => {
          if (u === B) throw new DepotsyncError('network', `${u}: connection refused`);
          throw new DepotsyncError('version-rollback', 'version 3 is older than the trusted version 4');
        });
      }),
    ).rejects.toMatchObject({ code: 'version-rollback' });
    expect(n).toBe(2);
  });

  it('checkUrlList refuses plain http, non-URLs, duplicates and an empty list', () => {
    expect(checkUrlList([A, B], '--master', 'usage')).toEqual([A, B]);
    expect(() => checkUrlList(['http://a.example'], '--master', 'usage')).toThrow(
      expect.objectContaining({ code: 'usage', message: expect.stringContaining('plain http://') }),
    );
    expect(() => checkUrlList(['a.example:8443'], '--master', 'usage')).toThrow(
      expect.objectContaining({
        code: 'usage',
        message: expect.stringContaining('expected an https:// URL'),
      }),
    );
    expect(() => checkUrlList([A, `${A}/`], '--master', 'usage')).toThrow(
      expect.objectContaining({ code: 'usage', message: expect.stringContaining('is given twice') }),
    );
    expect(() => checkUrlList([], 'depot.json: masterUrls')).toThrow(
      expect.objectContaining({ code: 'bad-input' }),
    );
  });

  it('unionUrls: configured first, learnt ones after, no repeats', () => {
    expect(unionUrls([A, B], [`${B}/`, C, A])).toEqual([A, B, C]);
  });
});

describe('HttpClient with several URLs (real HTTPS servers on 127.0.0.1)', () => {
  const ca = (() => {
    const m = createCa({ commonName: 'test CA' });
    return loadCa(m.keyPem, m.certPem);
  })();
  const foreignCa = (() => {
    const m = createCa({ commonName: 'foreign CA' });
    return loadCa(m.keyPem, m.certPem);
  })();
  const cert = (c: typeof ca) =>
    issueServerCertificate(c, { commonName: 'master', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const servers: Array<https.Server | net.Server> = [];
  const sockets = new Set<net.Socket>();
  const hits = new Map<string, number>();
  let good = '';
  let good2 = '';
  let foreign = '';
  let silent = '';
  let refused = '';
  const statusServers = new Map<number, string>();

  const listen = async (s: https.Server | net.Server): Promise<string> => {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const answering = (name: string, status: number, c = ca) =>
    https.createServer({ ...tlsServerOptions({ ...cert(c), caPem: ca.certPem }) }, (req, res) => {
      hits.set(name, (hits.get(name) ?? 0) + 1);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        status === 200
          ? JSON.stringify({ from: name, path: req.url })
          : '{"error":{"code":"x","message":"no"}}',
      );
    });

  beforeAll(async () => {
    good = await listen(answering('good', 200));
    good2 = await listen(answering('good2', 200));
    foreign = await listen(answering('foreign', 200, foreignCa));
    for (const s of [502, 503, 504, 401, 403, 404, 409])
      statusServers.set(s, await listen(answering(`s${s}`, s)));
    // Accepts TCP and never answers: the timeout class.
    silent = await listen(
      net.createServer((sock) => {
        sockets.add(sock);
        sock.on('error', () => undefined);
      }),
    );
    // A port nobody listens on: connection refused.
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    refused = `https://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((r) => closed.close(() => r()));
  });

  afterAll(async () => {
    for (const sock of sockets) sock.destroy();
    for (const s of servers) {
      (s as https.Server).closeAllConnections?.();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  const client = (urls: string[], timeoutMs = 2000) =>
    new HttpClient({ baseUrl: urls[0]!, alternateUrls: urls.slice(1), caPem: ca.certPem, timeoutMs });

  for (const [cls, url] of [
    ['connection refused', () => refused],
    ['TLS handshake with a certificate of another CA', () => foreign],
    ['timeout (no answer)', () => silent],
    ['502', () => statusServers.get(502)!],
    ['503', () => statusServers.get(503)!],
    ['504', () => statusServers.get(504)!],
  ] as const) {
    it(`fails over on ${cls}, and the next request goes to the URL that answered`, async () => {
      const c = client([url(), good], 500);
      try {
        expect(await c.getJson('/v1/x', { maxBytes: 1000 })).toMatchObject({ from: 'good' });
        expect(c.baseUrl.origin).toBe(good);
        const before = hits.get('good') ?? 0;
        await c.getJson('/v1/y', { maxBytes: 1000 });
        expect(hits.get('good')).toBe(before + 1);
      } finally {
        c.close();
      }
    });
  }

  for (const status of [401, 403, 404, 409]) {
    it(`does not fail over on ${status}: the server's answer is returned`, async () => {
      const c = client([statusServers.get(status)!, good]);
      const before = hits.get('good') ?? 0;
      try {
        const e = await c.getJson('/v1/x', { maxBytes: 1000 }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(HttpError);
        expect((e as HttpError).status).toBe(status);
        expect(hits.get('good') ?? 0).toBe(before);
        expect(c.baseUrl.origin).toBe(statusServers.get(status));
      } finally {
        c.close();
      }
    });
  }

  it('returns to the preferred URL after retryPreferredMs', async () => {
    const c = new HttpClient({
      baseUrl: statusServers.get(503)!,
      alternateUrls: [good2],
      caPem: ca.certPem,
      retryPreferredMs: 200,
    });
    try {
      await c.getJson('/v1/x', { maxBytes: 1000 });
      expect(c.baseUrl.origin).toBe(good2);
      const before503 = hits.get('s503') ?? 0;
      await c.getJson('/v1/x', { maxBytes: 1000 });
      expect(hits.get('s503')).toBe(before503); // sticky: the preferred is not asked within the period
      await new Promise((r) => setTimeout(r, 250));
      await c.getJson('/v1/x', { maxBytes: 1000 });
      expect(hits.get('s503')).toBe(before503 + 1); // asked again, still 503: back to good2
      expect(c.baseUrl.origin).toBe(good2);
    } finally {
      c.close();
    }
  });

  it('all URLs down: one error naming each URL and what failed there', async () => {
    const c = client([refused, statusServers.get(503)!], 500);
    try {
      const e = (await c
        .postJson('/v1/status', { a: 1 }, { maxBytes: 1000, what: 'status report' })
        .catch((x: unknown) => x)) as DepotsyncError;
      expect(e.code).toBe('network');
      expect(e.message).toMatch(/^status report: POST \/v1\/status: none of the 2 servers answered/);
      expect(e.message).toContain(`${refused}: status report: POST ${refused}/v1/status: connection refused`);
      expect(e.message).toContain(
        `${statusServers.get(503)}: status report: POST ${statusServers.get(503)}/v1/status: 503`,
      );
    } finally {
      c.close();
    }
  });

  it('addAlternateUrls: URLs learnt later are used after the configured ones', async () => {
    const c = client([refused], 500);
    try {
      expect(c.addAlternateUrls([refused, `${good}/`, good])).toEqual([`${good}/`]);
      expect(await c.getJson('/v1/x', { maxBytes: 1000 })).toMatchObject({ from: 'good' });
      expect(c.baseUrls).toEqual([refused, `${good}/`]);
    } finally {
      c.close();
    }
  });
});
