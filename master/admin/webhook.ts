import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { WebhookSettings } from './config.js';

/**
 * Alert notifications to a webhook: a JSON POST per event, retried with exponential backoff, and NEVER
 * awaited by the master. `notify` only queues; one delivery runs at a time, each bounded by `timeoutMs`;
 * the queue is bounded (oldest dropped first). A webhook that does not answer costs the master one
 * pending request and a few timers, nothing else.
 */
export interface WebhookEvent {
  event: 'raised' | 'repeated' | 'cleared';
  master: string;
  at: string;
  alert: { key: string; kind: string; subject: string; level: string; message: string; since?: string };
}

export interface WebhookDeps {
  settings: WebhookSettings;
  log: Logger;
  /** Injected in tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  onDelivered?: (e: WebhookEvent, attempts: number) => void;
  onFailed?: (e: WebhookEvent, err: string) => void;
}

export class WebhookNotifier {
  private readonly queue: WebhookEvent[] = [];
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  dropped = 0;
  delivered = 0;
  failed = 0;

  constructor(private readonly d: WebhookDeps) {
    if (!d.settings.url)
      throw new DepotsyncError(
        'bad-input',
        'WebhookNotifier: settings.url is empty; create no notifier instead',
      );
  }

  /** Queue an event; returns at once. */
  notify(e: WebhookEvent): void {
    if (this.closed) return;
    if (this.queue.length >= this.d.settings.maxQueue) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(e);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** Wait until the queue is empty (tests), or stop trying (close). */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    this.abort.abort();
    await this.running?.catch(() => undefined);
  }

  private async drain(): Promise<void> {
    for (let e = this.queue.shift(); e && !this.closed; e = this.queue.shift()) await this.deliver(e);
  }

  private async deliver(e: WebhookEvent): Promise<void> {
    const { url, attempts, backoffMs, timeoutMs } = this.d.settings;
    const doFetch = this.d.fetch ?? fetch;
    const sleep = this.d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
    let lastError = '';
    for (let attempt = 1; attempt <= attempts && !this.closed; attempt++) {
      // A plain controller and timer, held here: Node 20's AbortSignal.timeout/any signals can be garbage
      // collected before they fire, which would leave a delivery to a silent server hanging for ever.
      const ac = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        ac.abort();
      }, timeoutMs);
      const onClose = () => ac.abort();
      this.abort.signal.addEventListener('abort', onClose);
      try {
        const res = await doFetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(e),
          signal: ac.signal,
          redirect: 'error',
        });
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) {
          this.delivered++;
          this.d.onDelivered?.(e, attempt);
          return;
        }
        lastError = `HTTP ${res.status}`;
      } catch (err) {
        lastError = timedOut ? `no answer within ${timeoutMs} ms` : (err as Error).message;
      } finally {
        clearTimeout(timer);
        this.abort.signal.removeEventListener('abort', onClose);
      }
      this.d.log.warn(
        { url: redact(url), attempt, attempts, err: lastError, alert: e.alert.key },
        'webhook delivery failed',
      );
      if (attempt < attempts) await sleep(backoffMs * 2 ** (attempt - 1));
    }
    this.failed++;
    this.d.onFailed?.(e, lastError);
    this.d.log.error({ url: redact(url), err: lastError, alert: e.alert.key }, 'webhook delivery given up');
  }
}

/** Webhook URLs often carry a secret in the path or query: log the origin only. */
function redact(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}
