import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { readTrustedCa } from '../../src/net/listener-cert.js';
import { resolveProxy } from '../../src/net/proxy.js';
import { HttpClient } from '../../src/net/client.js';
import { decodeEvent, EVENTS_CONTENT_TYPE, SseDecoder, type StreamEvent } from '../../src/wire/events.js';
import { configuredMasterUrls, type NotifyConfig } from '../config.js';
import { unionUrls } from '../../src/net/url-picker.js';
import { learntMasterUrls } from './masters.js';
import type { Depot } from '../depot.js';
import { backoffDelayMs, realTimers, type Timers } from './scheduler.js';
import { explainUpstream } from './upstream.js';

/**
 * "Distribute now", the depot's half: one event stream open to the upstream (the master
 * or a parent depot, `GET /v1/events` over mutual TLS), reconnected with backoff and jitter whenever it
 * drops. An announced generation newer than the served one, or an operator's sync-now for this depot,
 * starts a sync at once instead of at the next interval; the interval stays the fallback.
 *
 * An event is never trusted beyond "go check": it only starts a sync, which verifies everything itself
 * (a lying upstream can at most make the depot ask for a timestamp it already has). Syncs an event starts
 * are at least `minGapMs` apart, and a run that did not reach the announced generation is retried once,
 * not in a loop.
 */
export interface NotifyListenerOptions {
  /**
   * Make the client of one connection (closed when it ends): for the stream alone, with no
   * slow-retrieval floor and an idle timeout of `config.idleTimeoutMs`. Made again for every connection,
   * so a renewed machine certificate is used from the next one on.
   */
  client: () => HttpClient;
  /** The upstream's origin, for messages. */
  origin: string;
  /** This depot's machine name (a sync-now request may name one depot). */
  name: string;
  /** The generation this depot serves now. */
  served: () => number | undefined;
  /** Start a sync now (the scheduler's `runNow`: joins a run in progress). */
  sync: () => Promise<unknown>;
  /** May an announced generation start a sync now (the daily window)? An operator's sync-now always may. */
  mayStart?: () => boolean;
  /** Pass a sync-now request on to this depot's own children. */
  relay?: (request: { seq: number; depot: string | null }) => void;
  /** The version of the signed revocation list this depot enforces now. */
  revocationsVersion?: () => number | undefined;
  /**
   * Fetch, verify and enforce the upstream's signed revocation list now (a newer version was announced).
   * Not held back by the daily window or `minGapMs`: a revoked machine must be refused within seconds.
   */
  refreshRevocations?: () => Promise<unknown>;
  config: Pick<NotifyConfig, 'reconnectBaseMs' | 'reconnectMaxMs' | 'minGapMs'>;
  /** Bytes one connection may deliver before it is dropped and opened again. */
  maxStreamBytes?: number;
  /** A connection that lasted this long was healthy: the next reconnect starts from the base delay. */
  healthyAfterMs?: number;
  timers?: Timers;
  random?: () => number;
  logger: Logger;
}

export const NOTIFY_LISTENER_DEFAULTS = { maxStreamBytes: 16 * 1024 * 1024, healthyAfterMs: 30_000 };

type Reason = 'generation' | 'sync-now';

export class NotifyListener {
  /** Connections opened so far (tests, status). */
  connects = 0;
  /** Syncs started by events. */
  syncsStarted = 0;
  /** The newest generation the upstream announced on the current connection. */
  announced: number | undefined;
  lastError: string | undefined;
  private failures = 0;
  private open = false;
  private stopped = true;
  /** stop() was called: no more syncs start. */
  private closed = false;
  private loop: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;
  private sleepTimer: unknown;
  // Sync triggering.
  private pending: Reason | undefined;
  private running = false;
  private gapTimer: unknown;
  private lastRunEndMs = -Infinity;
  private retriedFor: number | undefined;
  // Revocation list refreshes: one at a time, once more if a newer version was announced meanwhile.
  private revocationsAnnounced: number | undefined;
  private refreshing = false;
  private refreshAgain = false;
  /** Retries of a refresh that still found an older list than announced, and the timer of the next one. */
  private revocationRetries = 0;
  private revocationRetryTimer: unknown;
  /** Refreshes of the revocation list started by events (tests, status). */
  revocationRefreshes = 0;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly maxStreamBytes: number;
  private readonly healthyAfterMs: number;

  constructor(private readonly o: NotifyListenerOptions) {
    this.timers = o.timers ?? realTimers;
    this.random = o.random ?? Math.random;
    this.log = o.logger.child({ component: 'depot.notify' });
    this.maxStreamBytes = o.maxStreamBytes ?? NOTIFY_LISTENER_DEFAULTS.maxStreamBytes;
    this.healthyAfterMs = o.healthyAfterMs ?? NOTIFY_LISTENER_DEFAULTS.healthyAfterMs;
  }

  /** Is a stream open now? */
  get connected(): boolean {
    return this.open;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Close the stream, cancel waits, and wait for the loop (a sync already started is the scheduler's). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.closed = true;
    this.abort?.abort();
    this.wake?.();
    if (this.gapTimer !== undefined) this.timers.clearTimeout(this.gapTimer);
    this.gapTimer = undefined;
    if (this.revocationRetryTimer !== undefined) this.timers.clearTimeout(this.revocationRetryTimer);
    this.revocationRetryTimer = undefined;
    await this.loop;
  }

  /** The delay before reconnect number `failures` (>= 1): exponential, equal jitter, capped. */
  reconnectDelayMs(failures: number): number {
    return backoffDelayMs(failures, this.o.config.reconnectBaseMs, this.o.config.reconnectMaxMs, this.random);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const startedMs = this.timers.now();
      let why: unknown;
      try {
        await this.connectOnce();
        why = new DepotsyncError('network', `event stream from ${this.o.origin} ended`);
      } catch (e) {
        why = explainUpstream(e, this.o.origin);
      }
      this.abort = undefined;
      this.open = false;
      this.announced = undefined;
      if (this.stopped) break;
      // A connection that stayed up a while was fine: start the backoff again from its base.
      this.failures = this.timers.now() - startedMs >= this.healthyAfterMs ? 1 : this.failures + 1;
      const delay = this.reconnectDelayMs(this.failures);
      this.lastError = (why as Error).message;
      const level = this.failures >= 3 ? 'warn' : 'info';
      this.log[level](
        { err: this.lastError, failures: this.failures, retryInMs: delay },
        'event stream closed; reconnecting (the interval schedule still runs)',
      );
      await this.sleep(delay);
    }
  }

  private async connectOnce(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    const client = this.o.client();
    try {
      await this.listen(client, abort.signal);
    } finally {
      client.close();
    }
  }

  private async listen(client: HttpClient, signal: AbortSignal): Promise<void> {
    const origin = this.o.origin;
    const res = await client.getStream('/v1/events', {
      maxBytes: this.maxStreamBytes,
      what: 'event stream',
      headers: { accept: EVENTS_CONTENT_TYPE },
      signal,
    });
    const type = String(res.headers['content-type'] ?? '');
    if (!type.startsWith(EVENTS_CONTENT_TYPE)) {
      res.body.destroy();
      throw new DepotsyncError(
        'bad-input',
        `event stream from ${origin}: content type ${JSON.stringify(type)}, expected ${EVENTS_CONTENT_TYPE}`,
        {
          hint: 'the upstream does not serve depotsync events (an older version?); the depot syncs on its interval',
        },
      );
    }
    this.connects++;
    this.open = true;
    this.log.info({ upstream: origin }, 'event stream open');
    const decoder = new SseDecoder({}, `event stream from ${origin}`);
    try {
      for await (const chunk of res.body) {
        for (const raw of decoder.push(chunk as Buffer)) {
          const e = decodeEvent(raw, `event stream from ${origin}`);
          if (e) this.handle(e);
        }
      }
    } finally {
      res.body.destroy();
    }
  }

  /** What one event means for this depot (public for tests, which feed events directly). */
  handle(e: StreamEvent): void {
    if (e.kind === 'generation') {
      this.announced = Math.max(this.announced ?? 0, e.generation);
      const served = this.o.served();
      this.log.debug({ announced: e.generation, served }, 'generation announced');
      if (served === undefined || e.generation > served) this.want('generation');
      return;
    }
    if (e.kind === 'revocations') {
      this.revocationsAnnounced = Math.max(this.revocationsAnnounced ?? 0, e.version);
      const kept = this.o.revocationsVersion?.();
      if (kept === undefined || e.version > kept) this.refreshRevocations();
      return;
    }
    const forMe = e.depot === null || e.depot === this.o.name;
    if (e.depot !== this.o.name) this.o.relay?.({ seq: e.seq, depot: e.depot });
    if (forMe) {
      this.log.info({ seq: e.seq }, 'sync requested by the master operator');
      this.want('sync-now');
    }
  }

  /**
   * The event only means "go check": the list is fetched from the upstream and verified (CA signature,
   * expiry, no rollback) before it is enforced, so a lying upstream can at most cause a fetch.
   */
  private refreshRevocations(): void {
    if (this.closed || !this.o.refreshRevocations) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    this.refreshAgain = false;
    this.revocationRefreshes++;
    const announced = this.revocationsAnnounced;
    this.log.info(
      { announced, kept: this.o.revocationsVersion?.() },
      'new revocation list announced; fetching it now',
    );
    this.o
      .refreshRevocations()
      .catch((e: unknown) => {
        this.log.warn(
          { err: (e as Error).message },
          'revocation list refresh failed; the next sync fetches it',
        );
      })
      .finally(() => {
        this.refreshing = false;
        const kept = this.o.revocationsVersion?.() ?? 0;
        // Once more only when a newer version was announced while this one ran (no loop on a liar).
        const newer = (this.revocationsAnnounced ?? 0) > kept && this.revocationsAnnounced !== announced;
        if (this.refreshAgain && newer) this.refreshRevocations();
        else if ((this.revocationsAnnounced ?? 0) > kept) this.retryRevocations();
        else this.revocationRetries = 0;
      });
  }

  /**
   * The upstream announced a list it did not serve yet (a parent depot relays the event while it
   * stores the list, or the fetch failed): ask again a few times, 0.5 s doubling, rather than wait for
   * the next sync. Bounded, so an upstream that announces what it never serves costs a few fetches.
   */
  private retryRevocations(): void {
    if (this.closed || this.revocationRetryTimer !== undefined || this.revocationRetries >= 6) return;
    const waitMs = 500 * 2 ** this.revocationRetries++;
    this.revocationRetryTimer = this.timers.setTimeout(() => {
      this.revocationRetryTimer = undefined;
      this.refreshRevocations();
    }, waitMs);
  }

  private want(reason: Reason): void {
    if (this.pending !== 'sync-now') this.pending = reason;
    if (!this.running && this.gapTimer === undefined) this.fire();
  }

  private fire(): void {
    if (this.closed || this.running || !this.pending) return;
    const wait = this.lastRunEndMs + this.o.config.minGapMs - this.timers.now();
    if (wait > 0) {
      this.gapTimer = this.timers.setTimeout(() => {
        this.gapTimer = undefined;
        this.fire();
      }, wait);
      return;
    }
    const reason = this.pending;
    this.pending = undefined;
    if (reason === 'generation' && this.o.mayStart && !this.o.mayStart()) {
      this.log.info('new generation announced outside the sync window; it is fetched when the window opens');
      return;
    }
    this.running = true;
    this.syncsStarted++;
    this.o
      .sync()
      .catch(() => undefined) // the scheduler logs and backs off
      .finally(() => {
        this.running = false;
        this.lastRunEndMs = this.timers.now();
        const served = this.o.served() ?? 0;
        // The run may have been one already in progress, started before the announcement: go once more.
        if (this.announced !== undefined && this.announced > served && this.retriedFor !== this.announced) {
          this.retriedFor = this.announced;
          this.pending ??= 'generation';
        }
        this.fire();
      });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.timers.clearTimeout(this.sleepTimer);
        this.wake = undefined;
        resolve();
      };
      this.sleepTimer = this.timers.setTimeout(() => this.wake?.(), ms);
    });
  }
}

/** The listener of an open depot: its upstream, its current machine certificate, its notify settings. */
export function notifyListenerFor(
  depot: Pick<Depot, 'config' | 'creds' | 'db' | 'log'>,
  o: Pick<NotifyListenerOptions, 'sync' | 'mayStart' | 'relay' | 'refreshRevocations' | 'timers' | 'random'>,
): NotifyListener {
  const { config } = depot;
  return new NotifyListener({
    ...o,
    name: config.name,
    origin: new URL(config.upstreamUrl).origin,
    served: () => depot.db.served()?.generation,
    revocationsVersion: () => depot.db.revocationsVersion(),
    client: () =>
      new HttpClient({
        baseUrl: config.upstreamUrl,
        // From the master: its other URLs too (configured, then signed), as the sync's client.
        alternateUrls:
          config.upstreamUrl === config.masterUrl
            ? unionUrls(configuredMasterUrls(config), learntMasterUrls(depot.db)).slice(1)
            : [],
        caPem: depot.creds.caPem,
        listenerCaPem: readTrustedCa(config.tls.caFile),
        proxy: resolveProxy('depot.json', config),
        certPem: depot.creds.certPem,
        keyPem: depot.creds.keyPem,
        // Silence longer than this (heartbeats come about every 20 s) means a dead connection.
        timeoutMs: config.notify.idleTimeoutMs,
        // An event stream is quiet by design: no slow-retrieval floor (the byte cap still holds).
        minBytesPerSecond: 0,
        maxSockets: 1,
        logger: depot.log,
      }),
    config: config.notify,
    logger: depot.log,
  });
}
