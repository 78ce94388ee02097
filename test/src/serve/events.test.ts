import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { EventHub, type EventFeed } from '../../../src/serve/events.js';
import type { MachineRef } from '../../../src/serve/env.js';
import { decodeEvent, SseDecoder, type StreamEvent } from '../../../src/wire/events.js';

/** Reads what a stream has queued so far, without losing a read that is still pending. */
class Reader {
  private pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  private readonly decoder = new SseDecoder();
  text = '';
  done = false;
  constructor(private readonly r: ReadableStreamDefaultReader<Uint8Array>) {}
  /** Everything available now, decoded. */
  async take(): Promise<StreamEvent[]> {
    const out: StreamEvent[] = [];
    for (;;) {
      this.pending ??= this.r.read();
      const got = await Promise.race([
        this.pending,
        new Promise<null>((res) => setImmediate(() => res(null))),
      ]);
      if (got === null) return out;
      this.pending = undefined;
      if (got.done) {
        this.done = true;
        return out;
      }
      this.text += Buffer.from(got.value).toString('utf8');
      for (const raw of this.decoder.push(Buffer.from(got.value))) {
        const e = decodeEvent(raw);
        if (e) out.push(e);
      }
    }
  }
}

function fixture(opts: Partial<ConstructorParameters<typeof EventHub>[1]> = {}) {
  const state = {
    generation: 5 as number | undefined,
    revocations: undefined as number | undefined,
    requests: [] as Array<{ seq: number; depot: string | null }>,
    skipped: 0,
    t: 1_000_000,
  };
  const feed: EventFeed = {
    generation: () => state.generation,
    revocations: () => state.revocations,
    syncRequests: () => state.requests.splice(0),
    skipPendingRequests: () => {
      state.skipped++;
      state.requests = [];
    },
  };
  const hub = new EventHub(feed, {
    log: silentLogger(),
    autoPoll: false,
    clockMs: () => state.t,
    heartbeatMs: 20_000,
    ...opts,
  });
  const open = (name: string, role: MachineRef['role'] = 'depot', allowed = () => true) =>
    new Reader(hub.open({ name, role, serial: `s-${name}` }, allowed).getReader());
  return { state, hub, open };
}

describe('event hub (GET /v1/events)', () => {
  it('sends the current generation on connect and each change once, found by polling its feed', async () => {
    const { state, hub, open } = fixture();
    const a = open('depot-a');
    expect(await a.take()).toEqual([{ kind: 'generation', generation: 5 }]);
    expect(a.text.startsWith(': depotsync events\n\n')).toBe(true);
    await hub.tick();
    expect(await a.take()).toEqual([]); // no change, no event
    state.generation = 6;
    await hub.tick();
    await hub.tick();
    expect(await a.take()).toEqual([{ kind: 'generation', generation: 6 }]);
    hub.close();
  });

  it('sends nothing but a comment on connect while there is no generation yet', async () => {
    const { state, hub, open } = fixture();
    state.generation = undefined;
    const a = open('child');
    expect(await a.take()).toEqual([]);
    expect(a.text).toBe(': depotsync events\n\n');
    state.generation = 1;
    await hub.tick();
    expect(await a.take()).toEqual([{ kind: 'generation', generation: 1 }]);
    hub.close();
  });

  it('passes sync-now requests to depots only, and skips requests made while nobody listened', async () => {
    const { state, hub, open } = fixture();
    state.requests.push({ seq: 1, depot: null }); // made before anyone connected
    const d = open('depot-a');
    const agent = open('agent-1', 'agent');
    expect(state.skipped).toBe(1);
    await d.take();
    await agent.take();
    state.requests.push({ seq: 2, depot: null }, { seq: 3, depot: 'depot-b' });
    await hub.tick();
    expect(await d.take()).toEqual([
      { kind: 'sync-now', seq: 2, depot: null },
      { kind: 'sync-now', seq: 3, depot: 'depot-b' },
    ]);
    expect(await agent.take()).toEqual([]);
    hub.syncNow({ seq: 9, depot: null }); // a depot relaying its upstream's request
    expect(await d.take()).toEqual([{ kind: 'sync-now', seq: 9, depot: null }]);
    hub.close();
  });

  it('sends heartbeats and closes the stream of a machine that is no longer authorized (revoked since it connected)', async () => {
    const { state, hub, open } = fixture();
    let revoked = false;
    const a = open('depot-a', 'depot', () => !revoked);
    const b = open('depot-b');
    await a.take();
    await b.take();
    state.t += 19_999;
    await hub.tick();
    await a.take();
    expect(a.text).not.toMatch(/heartbeat/);
    state.t += 1;
    await hub.tick();
    await a.take();
    expect(a.text).toMatch(/: heartbeat\n\n$/);
    revoked = true;
    state.t += 20_000;
    await hub.tick();
    await a.take();
    expect(a.done).toBe(true);
    await b.take();
    expect(b.done).toBe(false);
    expect(hub.size).toBe(1);
    hub.close();
  });

  it('announces a new revocation list to depots at once (not agents) and drops a just-revoked stream without waiting for a heartbeat', async () => {
    const { state, hub, open } = fixture();
    state.revocations = 3;
    let revoked = false;
    const d = open('depot-a');
    const agent = open('agent-1', 'agent', () => !revoked);
    expect(await d.take()).toEqual([
      { kind: 'generation', generation: 5 },
      { kind: 'revocations', version: 3 },
    ]);
    expect(await agent.take()).toEqual([{ kind: 'generation', generation: 5 }]);
    await hub.tick();
    expect(await d.take()).toEqual([]); // unchanged: nothing
    revoked = true;
    state.revocations = 4;
    await hub.tick(); // no heartbeat is due (the clock did not move)
    expect(await d.take()).toEqual([{ kind: 'revocations', version: 4 }]);
    await agent.take();
    expect(agent.done).toBe(true);
    hub.close();
  });

  it('bounds the streams per machine and in total (429), and frees a slot when a client goes away', async () => {
    const { hub, open } = fixture({ maxStreams: 3, maxStreamsPerMachine: 2 });
    const a1 = open('depot-a');
    open('depot-a');
    let err: unknown;
    try {
      open('depot-a');
    } catch (e) {
      err = e;
    }
    expect(isDepotsyncError(err, 'rate-limited')).toBe(true);
    expect((err as Error).message).toMatch(/depot-a: it already has 2 open event streams \(limit 2\)/);
    open('depot-b');
    expect(() => open('depot-c')).toThrow(/already has 3 open event streams \(limit 3\)/);
    // The client of a1 disconnects: the HTTP layer cancels its body.
    await a1.take();
    await (a1 as unknown as { r: ReadableStreamDefaultReader }).r.cancel();
    expect(hub.size).toBe(2);
    open('depot-c');
    hub.close();
  });

  it('ends every stream on close and refuses new ones', async () => {
    const { hub, open } = fixture();
    const a = open('depot-a');
    const b = open('depot-b');
    hub.close();
    await a.take();
    await b.take();
    expect([a.done, b.done]).toEqual([true, true]);
    expect(hub.size).toBe(0);
    expect(() => open('depot-a')).toThrow(/shutting down/);
  });

  it('drops a client that stops reading instead of queueing without end', async () => {
    const { state, hub } = fixture({ maxQueuedBytes: 1024 });
    hub.open({ name: 'slow', role: 'depot', serial: 's' }, () => true); // nobody reads it
    for (let i = 0; i < 2000 && hub.size > 0; i++) {
      state.generation = 100 + i;
      await hub.tick();
    }
    expect(hub.size).toBe(0);
    hub.close();
  });

  it('keeps going when its feed fails for a moment (a busy database)', async () => {
    const { state, hub, open } = fixture();
    const a = open('depot-a');
    await a.take();
    const feed = (hub as unknown as { feed: EventFeed }).feed;
    const real = feed.generation;
    feed.generation = () => {
      throw new Error('database is locked');
    };
    await hub.tick();
    feed.generation = real;
    state.generation = 8;
    await hub.tick();
    expect(await a.take()).toEqual([{ kind: 'generation', generation: 8 }]);
    hub.close();
  });

  it('validates its options by name', () => {
    expect(() => new EventHub({ generation: () => 1 }, { log: silentLogger(), pollMs: 0 })).toThrow(
      /pollMs must be an integer from 10/,
    );
    expect(
      () => new EventHub({ generation: () => 1 }, { log: silentLogger(), maxStreamsPerMachine: 0 }),
    ).toThrow(/maxStreamsPerMachine/);
  });
});
