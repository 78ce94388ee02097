import { intOption } from '../../src/config/validate.js';

/**
 * A token bucket on received bytes: `take(n)` resolves once n bytes fit in the rate. Reading from the
 * socket pauses meanwhile, so TCP flow control slows the sender. Shared by every concurrent download;
 * a caller that overdraws waits until its debt is paid, so the long-run rate holds for all of them.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private burst: number;

  constructor(
    private bytesPerSecond: number,
    private readonly opts: {
      burstBytes?: number;
      now?: () => number;
      sleep?: (ms: number) => Promise<void>;
    } = {},
  ) {
    // 0: unlimited (a depot keeps one bucket, so a configuration reload can set or lift the limit).
    intOption('bandwidth limit', 'bytesPerSecond', bytesPerSecond, 0, 2 ** 40);
    this.burst = intOption(
      'bandwidth limit',
      'burstBytes',
      opts.burstBytes ?? Math.max(64 * 1024, Math.floor(bytesPerSecond / 4)),
      1,
      2 ** 40,
    );
    this.tokens = this.burst;
    this.last = this.now();
  }

  private now(): number {
    return (this.opts.now ?? performance.now.bind(performance))();
  }

  /** A new rate from the next `take` on (0 = unlimited); the burst follows unless it was given. */
  setRate(bytesPerSecond: number): void {
    intOption('bandwidth limit', 'bytesPerSecond', bytesPerSecond, 0, 2 ** 40);
    this.bytesPerSecond = bytesPerSecond;
    if (this.opts.burstBytes === undefined) this.burst = Math.max(64 * 1024, Math.floor(bytesPerSecond / 4));
    this.tokens = Math.min(this.tokens, this.burst);
  }

  get rate(): number {
    return this.bytesPerSecond;
  }

  async take(n: number): Promise<void> {
    if (this.bytesPerSecond === 0) return;
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.bytesPerSecond) / 1000);
    this.last = t;
    this.tokens -= n;
    if (this.tokens >= 0) return;
    const waitMs = Math.ceil((-this.tokens * 1000) / this.bytesPerSecond);
    await (this.opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))))(waitMs);
  }
}
