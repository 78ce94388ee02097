import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { encodeComment, encodeEvent } from '../../src/wire/events.js';
import { NotifyListener, type NotifyListenerOptions } from '../../depot/sync/notify-listener.js';
import type { Timers } from '../../depot/sync/scheduler.js';

/** Wait for a condition the code under test brings about (no fixed sleeps). */
async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A fake upstream over plain HTTP (the client allows it for tests): each connection gets the next handler. */
async function fakeUpstream(handlers: Array<(res: http.ServerResponse) => void>) {
  const open: http.ServerResponse[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    const h = handlers[Math.min(requests, handlers.length - 1)]!;
    requests++;
    open.push(res);
    h(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    get requests() {
      return requests;
    },
    open,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const sse = (res: http.ServerResponse, ...parts: string[]) => {
  if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  for (const p of parts) res.write(p);
};
const gen = (g: number) => encodeEvent({ kind: 'generation', generation: g });

class FakeTimers implements Timers {
  t = 1_000_000;
  queue: Array<{ at: number; fn: () => void; id: number }> = [];
  private ids = 0;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.ids;
    this.queue.push({ at: this.t + ms, fn, id });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.queue = this.queue.filter((q) => q.id !== h);
  };
  async next(): Promise<void> {
    this.queue.sort((a, b) => a.at - b.at);
    const q = this.queue.shift();
    if (!q) throw new Error('no timer armed');
    this.t = Math.max(this.t, q.at);
    q.fn();
    await settle();
  }
}
const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

const listeners: NotifyListener[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

function listener(
  url: string,
  o: Partial<NotifyListenerOptions> & { served?: () => number | undefined } = {},
) {
  const calls: string[] = [];
  const relayed: Array<{ seq: number; depot: string | null }> = [];
  let served = 5;
  const l: NotifyListener = new NotifyListener({
    client: () => new HttpClient({ baseUrl: url, timeoutMs: 5000, minBytesPerSecond: 0 }),
    origin: url,
    name: 'depot-a',
    served: () => served,
    // Like a real sync: afterwards the depot serves what was announced.
    sync: async () => {
      calls.push('sync');
      served = Math.max(served, l.announced ?? 0);
    },
    relay: (r) => relayed.push(r),
    config: { reconnectBaseMs: 10, reconnectMaxMs: 40, minGapMs: 0 },
    logger: silentLogger(),
    ...o,
  });
  listeners.push(l);
  return { l, calls, relayed };
}

describe('depot notify listener: the event stream to the upstream', () => {
  it('syncs when the announced generation is newer than the served one, not when it is the same', async () => {
    const up = await fakeUpstream([(res) => sse(res, encodeComment('hi'), gen(5))]);
    cleanups.push(up.close);
    const { l, calls } = listener(up.url);
    l.start();
    await until('connected', () => l.connected && l.announced === 5);
    expect(calls).toEqual([]);
    sse(up.open[0]!, gen(6));
    await until('a sync', () => calls.length === 1);
    expect(l.announced).toBe(6);
    expect(l.syncsStarted).toBe(1);
  });

  it('reconnects with backoff after a refusal and after the stream drops, and keeps listening', async () => {
    const up = await fakeUpstream([
      (res) =>
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end('{"error":{"code":"internal","message":"busy"}}'),
      (res) => sse(res, gen(5)) as unknown as void, // then cut below
      (res) => sse(res, gen(7)),
    ]);
    cleanups.push(up.close);
    const { l, calls } = listener(up.url);
    l.start();
    await until('second connection', () => up.open.length >= 2 && l.connected);
    up.open[1]!.destroy(); // the connection drops
    await until('third connection and the sync it causes', () => up.requests >= 3 && calls.length === 1);
    expect(l.connects).toBe(2); // the refused attempt did not count as a connection
    expect(l.announced).toBe(7);
  });

  it('drops a malformed or oversized stream and opens it again', async () => {
    const up = await fakeUpstream([
      (res) => sse(res, 'event: generation\ndata: {"generation":"6"}\n\n'),
      (res) => sse(res, `data: ${'x'.repeat(20_000)}`),
      (res) => sse(res, gen(6)),
    ]);
    cleanups.push(up.close);
    const { l, calls } = listener(up.url);
    l.start();
    await until('the good stream', () => calls.length === 1);
    expect(up.requests).toBe(3);
  });

  it('refuses an answer that is not an event stream (an old upstream), naming it', async () => {
    const up = await fakeUpstream([
      (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
    ]);
    cleanups.push(up.close);
    const { l } = listener(up.url);
    l.start();
    await until('an error', () => l.lastError !== undefined && up.requests >= 2);
    expect(l.lastError).toMatch(/content type "application\/json", expected text\/event-stream/);
    expect(l.connects).toBe(0);
  });

  it('grows the reconnect delay exponentially with jitter, capped', () => {
    const mk = (random: number) =>
      new NotifyListener({
        client: () => {
          throw new Error('unused');
        },
        origin: 'x',
        name: 'd',
        served: () => 0,
        sync: async () => undefined,
        config: { reconnectBaseMs: 1000, reconnectMaxMs: 60_000, minGapMs: 0 },
        logger: silentLogger(),
        random: () => random,
      });
    const low = mk(0);
    const high = mk(0.999999);
    expect([1, 2, 3, 4].map((f) => low.reconnectDelayMs(f))).toEqual([500, 1000, 2000, 4000]);
    expect([1, 2, 3, 4].map((f) => high.reconnectDelayMs(f))).toEqual([999, 1999, 3999, 7999]);
    expect(high.reconnectDelayMs(30)).toBeLessThanOrEqual(60_000);
    expect(low.reconnectDelayMs(30)).toBe(30_000);
  });
});

describe('depot notify listener: what an event starts', () => {
  function driven(o: { window?: boolean; minGapMs?: number } = {}) {
    const timers = new FakeTimers();
    const runs: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
    let served = 5;
    const relayed: unknown[] = [];
    let inWindow = o.window ?? true;
    const l = new NotifyListener({
      client: () => {
        throw new Error('not connected in these tests');
      },
      origin: 'https://up',
      name: 'depot-a',
      served: () => served,
      sync: () => new Promise<void>((resolve, reject) => runs.push({ resolve, reject })),
      mayStart: () => inWindow,
      relay: (r) => relayed.push(r),
      config: { reconnectBaseMs: 1000, reconnectMaxMs: 60_000, minGapMs: o.minGapMs ?? 2000 },
      timers,
      logger: silentLogger(),
    });
    return {
      l,
      timers,
      runs,
      relayed,
      setServed: (g: number) => (served = g),
      setWindow: (w: boolean) => (inWindow = w),
    };
  }

  it('coalesces events during a sync into one more run, at least minGapMs after the last', async () => {
    const d = driven();
    d.l.handle({ kind: 'generation', generation: 6 });
    expect(d.runs.length).toBe(1);
    d.l.handle({ kind: 'generation', generation: 7 });
    d.l.handle({ kind: 'generation', generation: 8 });
    expect(d.runs.length).toBe(1); // one at a time
    d.setServed(6);
    d.runs[0]!.resolve();
    await settle();
    expect(d.runs.length).toBe(1); // waits out the gap
    await d.timers.next();
    expect(d.runs.length).toBe(2);
    d.setServed(8);
    d.runs[1]!.resolve();
    await settle();
    expect(d.timers.queue.length).toBe(0); // nothing more to do
  });

  it('retries a run that did not reach the announced generation once, not in a loop (a lying upstream)', async () => {
    const d = driven({ minGapMs: 0 });
    d.l.handle({ kind: 'generation', generation: 1_000_000 });
    d.runs[0]!.resolve();
    await settle();
    expect(d.runs.length).toBe(2);
    d.runs[1]!.reject(new Error('no such generation'));
    await settle();
    expect(d.runs.length).toBe(2);
    expect(d.timers.queue.length).toBe(0);
  });

  it('leaves an announced generation to the window, but an operator sync-now starts at once', async () => {
    const d = driven({ window: false });
    d.l.handle({ kind: 'generation', generation: 6 });
    expect(d.runs.length).toBe(0);
    d.l.handle({ kind: 'sync-now', seq: 1, depot: 'depot-a' });
    expect(d.runs.length).toBe(1);
    expect(d.relayed).toEqual([]); // addressed to this depot: nothing to relay
  });

  it('relays sync-now requests for all depots or for another depot to its children, and syncs only for itself or all', async () => {
    const d = driven({ minGapMs: 0 });
    d.l.handle({ kind: 'sync-now', seq: 1, depot: 'depot-child' });
    expect(d.runs.length).toBe(0);
    d.l.handle({ kind: 'sync-now', seq: 2, depot: null });
    expect(d.runs.length).toBe(1);
    expect(d.relayed).toEqual([
      { seq: 1, depot: 'depot-child' },
      { seq: 2, depot: null },
    ]);
  });

  it('fetches a newer revocation list at once (ignoring the sync gap and window), never an older or equal one', async () => {
    const up = await fakeUpstream([
      (res) => sse(res, gen(5), encodeEvent({ kind: 'revocations', version: 2 })),
    ]);
    cleanups.push(up.close);
    let kept = 2;
    const refreshed: number[] = [];
    let release: () => void = () => undefined;
    const { l, calls } = listener(up.url, {
      config: { reconnectBaseMs: 10, reconnectMaxMs: 40, minGapMs: 3_600_000 },
      mayStart: () => false,
      revocationsVersion: () => kept,
      refreshRevocations: () =>
        new Promise<void>((resolve) => {
          refreshed.push(kept);
          release = () => {
            kept = 4;
            resolve();
          };
        }),
    });
    l.start();
    await until('connected', () => l.connected && l.announced === 5);
    expect(l.revocationRefreshes).toBe(0); // the version it already enforces
    sse(up.open[0]!, encodeEvent({ kind: 'revocations', version: 3 }));
    await until('a refresh', () => l.revocationRefreshes === 1);
    // Another announcement while the fetch runs: one more fetch afterwards only if still newer.
    sse(up.open[0]!, encodeEvent({ kind: 'revocations', version: 4 }));
    await new Promise((r) => setTimeout(r, 50));
    expect(l.revocationRefreshes).toBe(1);
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(l.revocationRefreshes).toBe(1); // the fetch brought version 4: nothing more to do
    sse(up.open[0]!, encodeEvent({ kind: 'revocations', version: 1 })); // older: ignored
    await new Promise((r) => setTimeout(r, 50));
    expect(l.revocationRefreshes).toBe(1);
    expect(calls).toEqual([]); // revocations never start a catalog sync
  });

  it('asks again, a bounded number of times, while the upstream serves an older list than it announced', async () => {
    const up = await fakeUpstream([
      (res) => sse(res, gen(5), encodeEvent({ kind: 'revocations', version: 2 })),
    ]);
    cleanups.push(up.close);
    let kept = 2;
    let serves = 2; // what the upstream hands out: still the old list (a parent storing the new one)
    const { l } = listener(up.url, {
      config: { reconnectBaseMs: 10, reconnectMaxMs: 40, minGapMs: 3_600_000 },
      mayStart: () => false,
      revocationsVersion: () => kept,
      refreshRevocations: () => {
        kept = serves;
        return Promise.resolve();
      },
    });
    l.start();
    await until('connected', () => l.connected && l.announced === 5);
    sse(up.open[0]!, encodeEvent({ kind: 'revocations', version: 3 }));
    await until('a first refresh', () => l.revocationRefreshes === 1);
    await until('a retry 0.5 s later', () => l.revocationRefreshes === 2, 3_000);
    serves = 3; // the upstream has it now: the next retry brings it, and the retries stop
    await until('the list arrives', () => kept === 3, 5_000);
    const done = l.revocationRefreshes;
    await new Promise((r) => setTimeout(r, 2_500));
    expect(l.revocationRefreshes).toBe(done);
  });
});
