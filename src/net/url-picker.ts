import { DepotsyncError, isDepotsyncError, type ErrorCode } from '../errors.js';
import { HttpError } from './http-error.js';
import { requireHttpsUrl } from './https-url.js';

/** After a failover, how long the last good URL is kept before the preferred one is tried again. */
export const PREFERRED_RETRY_MS = 5 * 60_000;

/** A URL whose content failed verification goes last for this long (it may lag behind for a while). */
export const REFUSED_MS = 10 * 60_000;

/** Answers of a server that is down or overloaded (a proxy or load balancer in front of it says so). */
const UNAVAILABLE_STATUS = new Set([502, 503, 504]);

/**
 * Whether a failed request should go to the next of several equivalent servers (the masters of one
 * catalog): the network failed (refused, reset, unreachable, timed out), the TLS handshake failed, or
 * the server answered 502/503/504. Any other answer (401/403/404/409, a 400 or a 500) is the server's
 * real answer about this request and would be the same elsewhere.
 */
export function failsOver(e: unknown): boolean {
  if (e instanceof HttpError) return UNAVAILABLE_STATUS.has(e.status);
  return (
    isDepotsyncError(e) && (e.code === 'network' || e.code === 'timeout' || e.code === 'bad-certificate')
  );
}

/** What a picker remembers between processes (a one-shot `depot sync` after a failover). */
export interface UrlPickerState {
  /** The URL that answered last. */
  active: string;
  /** When the preferred URL was last found failing (ms since the epoch); 0 = never. */
  preferredFailedAt: number;
}

/** Where a picker keeps its state (a depot: its database). Loaded once; saved on every change. */
export interface UrlMemory {
  load(): UrlPickerState | undefined;
  save(state: UrlPickerState): void;
}

export interface UrlPickerOptions {
  /** Several URLs of equivalent servers, the preferred first. */
  urls: readonly string[];
  /** Names the list in errors ("depot.json: masterUrls", "--master"). */
  where?: string;
  retryPreferredMs?: number;
  now?: () => number;
  memory?: UrlMemory | undefined;
}

/**
 * Which of several equivalent URLs a client tries, in which order: the one that answered last (at
 * first the preferred one), then the others in configured order. After a failover the preferred URL is
 * tried first again once `retryPreferredMs` have passed, so a machine returns to it after a repair;
 * a preferred URL that still fails waits another period. URLs whose content failed verification go
 * last for a while. The state is the client's; `memory` carries the last good URL to the next process.
 */
export class UrlPicker {
  readonly urls: readonly string[];
  private current = 0;
  /** When the preferred URL was last found failing (while the current one is another). */
  private preferredFailedAt = 0;
  private readonly retryMs: number;
  private readonly now: () => number;

  constructor(o: UrlPickerOptions) {
    if (o.urls.length === 0 || new Set(o.urls).size !== o.urls.length)
      throw new DepotsyncError(
        'bad-input',
        `${o.where ?? 'URL list'}: expected distinct URLs, got ${JSON.stringify(o.urls)}`,
      );
    this.urls = [...o.urls];
    this.retryMs = o.retryPreferredMs ?? PREFERRED_RETRY_MS;
    this.now = o.now ?? Date.now;
    this.memory = o.memory;
    const kept = o.memory?.load();
    const i = kept ? this.urls.indexOf(kept.active) : -1;
    // A remembered state about URLs no longer configured (or the clock gone backwards) is dropped.
    if (
      kept &&
      i >= 0 &&
      Number.isSafeInteger(kept.preferredFailedAt) &&
      kept.preferredFailedAt <= this.now()
    ) {
      this.current = i;
      this.preferredFailedAt = kept.preferredFailedAt;
    }
  }

  private readonly memory: UrlMemory | undefined;

  private changed(before: { current: number; at: number }): void {
    if (!this.memory || (before.current === this.current && before.at === this.preferredFailedAt)) return;
    try {
      this.memory.save({ active: this.active, preferredFailedAt: this.preferredFailedAt });
    } catch {
      // Only a hint for the next process: a failed save costs it one failover at most.
    }
  }

  /** Add URLs after the configured ones (learnt later, e.g. from the signed depot directory). */
  extend(urls: readonly string[]): void {
    const added = urls.filter((u) => !this.urls.includes(u));
    if (added.length) (this.urls as string[]).push(...new Set(added));
  }

  /** The URL answering now (the last good one). */
  get active(): string {
    return this.urls[this.current]!;
  }

  /** The URLs to try for one request, in order; each appears once. */
  candidates(): string[] {
    const n = this.urls.length;
    const now = this.now();
    const order: number[] = [];
    if (this.current !== 0 && now - this.preferredFailedAt >= this.retryMs) order.push(0);
    order.push(this.current);
    for (let i = 0; i < n; i++) if (!order.includes(i)) order.push(i);
    // URLs whose content was refused lately go last (stable: the order above otherwise).
    const refused = (i: number) => now - (this.refusedAt.get(i) ?? -Infinity) < REFUSED_MS;
    return [...order.filter((i) => !refused(i)), ...order.filter(refused)].map((i) => this.urls[i]!);
  }

  /** When a URL's content last failed verification (refuse()). */
  private readonly refusedAt = new Map<number, number>();

  /** What `url` served failed verification: it goes last for REFUSED_MS, and the next request starts elsewhere. */
  refuse(url: string): void {
    const i = this.urls.indexOf(url);
    if (i < 0) return;
    this.refusedAt.set(i, this.now());
    this.failed(url);
    // failed() moved on by one; make sure the current URL is not a refused one when another is left.
    const before = { current: this.current, at: this.preferredFailedAt };
    this.current = this.urls.indexOf(this.candidates()[0]!);
    this.changed(before);
  }

  /** `url` answered: it is the one to use from now on. */
  succeeded(url: string): void {
    const i = this.urls.indexOf(url);
    if (i < 0 || i === this.current) return;
    const before = { current: this.current, at: this.preferredFailedAt };
    if (this.current === 0) this.preferredFailedAt = this.now();
    this.current = i;
    this.changed(before);
  }

  /** `url` failed with an error that fails over: the next request starts elsewhere. */
  failed(url: string): void {
    const i = this.urls.indexOf(url);
    if (i < 0) return;
    const before = { current: this.current, at: this.preferredFailedAt };
    if (i === 0) this.preferredFailedAt = this.now();
    if (i === this.current && this.urls.length > 1) this.current = (i + 1) % this.urls.length;
    this.changed(before);
  }

  /**
   * Run `attempt` against the candidates until one succeeds. An error that does not fail over ends
   * it at once (the server's real answer); when `replayable` is false (a streamed request body that
   * cannot be sent twice), only the first candidate is tried. When every URL failed, the error names
   * each URL and what happened there.
   */
  async run<T>(
    what: string,
    attempt: (url: string) => Promise<T>,
    opts: { replayable?: boolean; signal?: AbortSignal | undefined } = {},
  ): Promise<T> {
    const candidates = this.candidates();
    const errors: Array<{ url: string; e: unknown }> = [];
    for (const url of candidates) {
      try {
        const out = await attempt(url);
        this.succeeded(url);
        return out;
      } catch (e) {
        if (!failsOver(e)) throw e;
        this.failed(url);
        errors.push({ url, e });
        if (opts.replayable === false || opts.signal?.aborted || this.urls.length === 1) throw e;
      }
    }
    throw allFailed(what, errors);
  }
}

function allFailed(what: string, errors: Array<{ url: string; e: unknown }>): DepotsyncError {
  const codes = new Set(errors.map(({ e }) => (isDepotsyncError(e) ? e.code : 'network')));
  const code: ErrorCode = codes.size === 1 ? [...codes][0]! : 'network';
  const detail = errors.map(({ url, e }) => `${url}: ${(e as Error).message}`).join('; ');
  return new DepotsyncError(code, `${what}: none of the ${errors.length} servers answered (${detail})`, {
    hint: 'every configured master URL failed; check that at least one master runs and is reachable from here',
    cause: errors[errors.length - 1]?.e,
  });
}

/**
 * A configured list of equivalent https URLs: at least one, each https, none twice (trailing slashes
 * ignored). `code` is 'usage' for flags, 'bad-input' for configuration files.
 */
export function checkUrlList(
  urls: readonly string[],
  where: string,
  code: 'usage' | 'bad-input' = 'bad-input',
): string[] {
  if (!Array.isArray(urls) || urls.length === 0)
    throw new DepotsyncError(
      code,
      `${where}: expected at least one https:// URL, got ${JSON.stringify(urls)}`,
    );
  const seen = new Set<string>();
  return urls.map((u) => {
    if (typeof u !== 'string')
      throw new DepotsyncError(code, `${where}: expected https:// URLs, got ${JSON.stringify(u)}`);
    requireHttpsUrl(u, where, code);
    const key = u.replace(/\/+$/, '');
    if (seen.has(key))
      throw new DepotsyncError(code, `${where}: ${JSON.stringify(u)} is given twice`, {
        hint: 'list each master URL once',
      });
    seen.add(key);
    return u;
  });
}

/** Configured URLs first, then those the signed directory adds (without repeats), in order. */
export function unionUrls(configured: readonly string[], learnt: readonly string[]): string[] {
  const out = configured.map((u) => u.replace(/\/+$/, ''));
  for (const u of learnt) {
    const key = u.replace(/\/+$/, '');
    if (!out.includes(key)) out.push(key);
  }
  return out;
}

/**
 * Verification failures that blame the server's content (a stale master replaying an older generation,
 * a generation number reused with other content, expired or badly signed metadata, a wrong file):
 * another server of the same catalog may be right.
 */
const REFUTED: readonly ErrorCode[] = [
  'version-rollback',
  'bad-signature',
  'threshold-not-met',
  'unknown-key',
  'expired',
  'bad-metadata',
  'hash-mismatch',
];

export function refutesServer(e: unknown): boolean {
  return isDepotsyncError(e) && REFUTED.includes(e.code);
}

/**
 * Run `fn` (a verified update through a client of `picker`); when what the answering URL served fails
 * verification, leave that URL and run `fn` again on the next, each URL at most once. Whatever was
 * trusted before stays trusted: a refused update changes nothing. Without a picker, `fn` runs once.
 */
export async function acrossEquivalentServers<T>(
  picker: UrlPicker | undefined,
  fn: () => Promise<T>,
  onRefused: (url: string, next: string, e: DepotsyncError) => void = () => {},
): Promise<T> {
  const refused = new Set<string>();
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!picker || !refutesServer(e)) throw e;
      // The URL that answered last served it (the others may have failed over to it again).
      const at = picker.active;
      if (refused.has(at)) throw e;
      refused.add(at);
      picker.refuse(at);
      if (refused.size >= picker.urls.length) throw e;
      onRefused(at, picker.active, e as DepotsyncError);
    }
  }
}
