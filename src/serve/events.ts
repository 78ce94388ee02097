import type { TLSSocket } from 'node:tls';
import { Hono } from 'hono';
import { intOption } from '../config/validate.js';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { peerIdentity } from '../net/tls.js';
import { encodeComment, encodeEvent, EVENTS_CONTENT_TYPE, type StreamEvent } from '../wire/events.js';
import type { MachineRef, ServeEnv } from './env.js';
import type { AuthorizeMachine } from './mtls.js';

/**
 * `GET /v1/events`, served by the master and by every depot so a
 * tiered child hears from its parent. What a server announces comes from an `EventFeed` it polls:
 * the master's database (a publish by another process commits there), or the depot's served
 * generation (a sync by `depot serve` or by `depot sync` in another process switches it there).
 */
export interface EventFeed {
  /**
   * The generation served now; undefined while there is none. Called every `pollMs` while streams are open.
   */
  generation(): number | undefined | Promise<number | undefined>;
  /** Sync-now requests that arrived since the last call (the master's notify table). */
  syncRequests?():
    Array<{ seq: number; depot: string | null }> | Promise<Array<{ seq: number; depot: string | null }>>;
  /** Forget the requests made so far: called when the first stream opens after none were open. */
  skipPendingRequests?(): void | Promise<void>;
  /** The version of the signed revocation list served now (undefined: none yet). Polled like `generation`. */
  revocations?(): number | undefined | Promise<number | undefined>;
}

export interface EventHubOptions {
  /** How often the feed is polled while at least one stream is open (one cheap query). */
  pollMs: number;
  /** A comment line this often on every stream; each stream's machine is authorized again then. */
  heartbeatMs: number;
  /** Open streams in total (no resource exhaustion: each is a socket and a little memory). */
  maxStreams: number;
  /** Open streams per machine (a reconnect may overlap an old stream for a moment). */
  maxStreamsPerMachine: number;
  /** Bytes queued for a client that does not read before its stream is dropped. */
  maxQueuedBytes: number;
}

export const EVENT_HUB_DEFAULTS: EventHubOptions = {
  pollMs: 1000,
  heartbeatMs: 20_000,
  maxStreams: 1000,
  maxStreamsPerMachine: 2,
  maxQueuedBytes: 64 * 1024,
};

interface Subscriber {
  machine: MachineRef;
  /** Still allowed in (not revoked or blocked since it connected)? */
  allowed(): boolean | Promise<boolean>;
  write(text: string): boolean;
  close(): void;
}

const encoder = new TextEncoder();

/**
 * The open event streams of one server and what they are told. Polls its feed only while a stream is
 * open (no background queries on an idle server), so a generation committed by another process reaches
 * every listener within `pollMs`; `announce()` skips the wait when this process made the change.
 */
export class EventHub {
  readonly options: EventHubOptions;
  private readonly subscribers = new Set<Subscriber>();
  private readonly perMachine = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private lastGeneration: number | undefined;
  private lastRevocations: number | undefined;
  private lastHeartbeatMs = 0;
  private closed = false;
  private readonly clockMs: () => number;
  private readonly log: Logger;
  /** false: no timer; the owner calls `tick()` (tests with an injected clock). */
  private readonly autoPoll: boolean;

  constructor(
    private readonly feed: EventFeed,
    /** `log`: a component logger (`{component: 'master.events'}`). */
    o: { log: Logger; clockMs?: () => number; autoPoll?: boolean } & Partial<EventHubOptions>,
  ) {
    const opts = { ...EVENT_HUB_DEFAULTS, ...o };
    const W = 'event streams';
    intOption(W, 'pollMs', opts.pollMs, 10, 3_600_000);
    intOption(W, 'heartbeatMs', opts.heartbeatMs, 10, 3_600_000);
    intOption(W, 'maxStreams', opts.maxStreams, 1, 1_000_000);
    intOption(W, 'maxStreamsPerMachine', opts.maxStreamsPerMachine, 1, 1000);
    intOption(W, 'maxQueuedBytes', opts.maxQueuedBytes, 1024, 64 * 1024 * 1024);
    this.options = {
      pollMs: opts.pollMs,
      heartbeatMs: opts.heartbeatMs,
      maxStreams: opts.maxStreams,
      maxStreamsPerMachine: opts.maxStreamsPerMachine,
      maxQueuedBytes: opts.maxQueuedBytes,
    };
    this.clockMs = o.clockMs ?? Date.now;
    this.log = o.log;
    this.autoPoll = o.autoPoll ?? true;
  }

  get size(): number {
    return this.subscribers.size;
  }

  /**
   * Open a stream for `machine` and return its body. Refuses with 'rate-limited' (429) above the
   * per-machine or total limit, and with 'conflict' once the hub is closed (server shutting down).
   */
  open(machine: MachineRef, allowed: () => boolean | Promise<boolean>): ReadableStream<Uint8Array> {
    if (this.closed)
      throw new DepotsyncError('conflict', 'event stream: the server is shutting down', {
        hint: 'reconnect later',
      });
    if (this.subscribers.size >= this.options.maxStreams) {
      throw new DepotsyncError(
        'rate-limited',
        `event stream for ${machine.name}: this server already has ${this.subscribers.size} open event streams (limit ${this.options.maxStreams})`,
        { hint: 'retry later; sync on the interval meanwhile' },
      );
    }
    const mine = this.perMachine.get(machine.name) ?? 0;
    if (mine >= this.options.maxStreamsPerMachine) {
      throw new DepotsyncError(
        'rate-limited',
        `event stream for ${machine.name}: it already has ${mine} open event streams (limit ${this.options.maxStreamsPerMachine})`,
        { hint: 'one stream per machine is enough; close the others' },
      );
    }
    if (this.subscribers.size === 0) {
      Promise.resolve(this.feed.skipPendingRequests?.()).catch((e: unknown) =>
        this.log.warn({ err: (e as Error).message }, 'could not skip pending sync-now requests'),
      );
    }
    let sub: Subscriber | undefined;
    const { options, log } = this;
    const remove = (gone: Subscriber) => this.remove(gone);
    const stream = new ReadableStream<Uint8Array>(
      {
        start: async (controller) => {
          let ended = false;
          sub = {
            machine,
            allowed,
            write(text) {
              if (ended) return false;
              // A client that stops reading is dropped instead of queueing without end.
              if ((controller.desiredSize ?? 0) < -options.maxQueuedBytes) {
                log.info({ machine: machine.name }, 'event stream dropped: the client does not read');
                this.close();
                return false;
              }
              controller.enqueue(encoder.encode(text));
              return true;
            },
            close() {
              if (ended) return;
              ended = true;
              remove(this);
              try {
                controller.close();
              } catch {
                // Already cancelled by the client.
              }
            },
          };
          const primed = this.add(sub);
          sub.write(encodeComment('depotsync events'));
          await primed;
          const g = await this.safeGeneration();
          if (g !== undefined) sub.write(encodeEvent({ kind: 'generation', generation: g }));
          const r = await this.safeRevocations();
          if (r !== undefined && machine.role === 'depot')
            sub.write(encodeEvent({ kind: 'revocations', version: r }));
        },
        cancel: () => {
          // The client went away (the HTTP layer cancels the body when the socket closes).
          if (sub) this.remove(sub);
        },
      },
      { highWaterMark: 16 * 1024, size: (chunk) => chunk.byteLength },
    );
    return stream;
  }

  private ticking: Promise<void> | undefined;

  /** Poll the feed now (tests; `announce` after a change this process made). Polls never overlap. */
  async tick(): Promise<void> {
    while (this.ticking) await this.ticking;
    this.ticking = this.poll();
    try {
      await this.ticking;
    } finally {
      this.ticking = undefined;
    }
  }

  private async poll(): Promise<void> {
    const g = await this.safeGeneration();
    if (g !== undefined && g !== this.lastGeneration) {
      this.lastGeneration = g;
      this.broadcast({ kind: 'generation', generation: g });
    }
    const r = await this.safeRevocations();
    if (r !== undefined && r !== this.lastRevocations) {
      this.lastRevocations = r;
      // A machine revoked or blocked just now loses its stream at once, not at the next heartbeat;
      // depots are told to fetch the new list right away (it reaches them in seconds, not at their next sync).
      await this.dropUnauthorized();
      this.broadcast({ kind: 'revocations', version: r });
    }
    let requests: Array<{ seq: number; depot: string | null }> = [];
    try {
      requests = (await this.feed.syncRequests?.()) ?? [];
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not read sync-now requests; will retry');
    }
    for (const r of requests) {
      this.log.info({ seq: r.seq, depot: r.depot ?? 'all' }, 'sync-now request passed on');
      this.broadcast({ kind: 'sync-now', seq: r.seq, depot: r.depot });
    }
    const now = this.clockMs();
    if (now - this.lastHeartbeatMs >= this.options.heartbeatMs) {
      this.lastHeartbeatMs = now;
      // A machine revoked or blocked since it connected (by a path the feed does not see) loses its
      // stream at the next heartbeat at the latest.
      await this.dropUnauthorized();
      for (const s of [...this.subscribers]) s.write(encodeComment('heartbeat'));
    }
  }

  private async dropUnauthorized(): Promise<void> {
    for (const s of [...this.subscribers]) {
      if (!(await this.stillAllowed(s))) {
        this.log.info(
          { machine: s.machine.name },
          'event stream closed: the machine is no longer authorized',
        );
        s.close();
      }
    }
  }

  /** Tell every stream the current generation now (this process just switched or committed one). */
  announce(): void {
    void this.tick();
  }

  /** Pass a sync-now request on (a depot relays its upstream's to its own children). */
  syncNow(request: { seq: number; depot: string | null }): void {
    this.broadcast({ kind: 'sync-now', seq: request.seq, depot: request.depot });
  }

  /** End every stream and refuse new ones (shutdown). */
  close(): void {
    this.closed = true;
    for (const s of [...this.subscribers]) s.close();
    this.stopPolling();
  }

  private broadcast(e: StreamEvent): void {
    const text = encodeEvent(e);
    for (const s of [...this.subscribers]) {
      // Sync-now and revocations concern depots only (a depot relays them on to its own children).
      if (e.kind !== 'generation' && s.machine.role !== 'depot') continue;
      s.write(text);
    }
  }

  private async stillAllowed(s: Subscriber): Promise<boolean> {
    try {
      return await s.allowed();
    } catch (e) {
      this.log.warn(
        { err: (e as Error).message, machine: s.machine.name },
        'could not re-check an event stream; keeping it',
      );
      return true;
    }
  }

  private async safeGeneration(): Promise<number | undefined> {
    try {
      return await this.feed.generation();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not read the served generation; will retry');
      return this.lastGeneration;
    }
  }

  private async safeRevocations(): Promise<number | undefined> {
    try {
      return await this.feed.revocations?.();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not read the revocation list version; will retry');
      return this.lastRevocations;
    }
  }

  /** Resolves once the first stream's starting point (generation, revocations) is read. */
  private async add(s: Subscriber): Promise<void> {
    this.subscribers.add(s);
    this.perMachine.set(s.machine.name, (this.perMachine.get(s.machine.name) ?? 0) + 1);
    this.log.debug({ machine: s.machine.name, streams: this.subscribers.size }, 'event stream opened');
    if (this.subscribers.size === 1) {
      this.lastHeartbeatMs = this.clockMs();
      if (this.autoPoll && !this.timer) {
        this.timer = setInterval(() => void this.tick(), this.options.pollMs);
        this.timer.unref();
      }
      this.lastGeneration = await this.safeGeneration();
      this.lastRevocations = await this.safeRevocations();
    }
  }

  private remove(s: Subscriber): void {
    if (!this.subscribers.delete(s)) return;
    const n = (this.perMachine.get(s.machine.name) ?? 1) - 1;
    if (n <= 0) this.perMachine.delete(s.machine.name);
    else this.perMachine.set(s.machine.name, n);
    if (this.subscribers.size === 0) this.stopPolling();
    this.log.debug({ machine: s.machine.name, streams: this.subscribers.size }, 'event stream closed');
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * The route, mounted after the mutual-TLS gate (so only an authorized machine gets here). `authorize`
 * is the gate's own decision, run again on the connection's certificate at every heartbeat: a stream
 * outlives the request that opened it, and a revoked machine must not keep hearing.
 */
export function eventRoutes(
  hub: EventHub,
  o: { authorize: AuthorizeMachine; now?: () => Date },
): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  app.get('/v1/events', (c) => {
    const machine = c.get('machine');
    const socket = c.env?.incoming?.socket as TLSSocket | undefined;
    const allowed = async () => {
      if (!socket || socket.destroyed) return false;
      const peer = peerIdentity(socket, o.now ? { now: o.now } : {});
      return peer.kind === 'cert' && (await o.authorize(peer)).ok;
    };
    const body = hub.open(machine, allowed);
    return new Response(body, {
      status: 200,
      headers: {
        'content-type': `${EVENTS_CONTENT_TYPE}; charset=utf-8`,
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      },
    });
  });
  return app;
}
