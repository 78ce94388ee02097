import { Transform, type TransformCallback } from 'node:stream';
import { DepotsyncError } from '../errors.js';

export interface BodyGuardOptions {
  label: string;
  maxBytes: number;
  /** Content-Length the server declared, if any. */
  declaredBytes: number | undefined;
  /** Slow-retrieval watchdog: fail when fewer than this many bytes per second arrive over a window. */
  minBytesPerSecond: number;
  rateWindowMs: number;
  highWaterMark: number;
}

/**
 * Passes a response body through while counting it. Fails with 'too-large' the moment more bytes arrive
 * than allowed or declared (endless-data attack), with 'truncated' when the body ends short of its declared
 * length, and with 'timeout' when a window passes with too few bytes while the consumer was keeping up
 * (slow-retrieval attack). A consumer that reads slowly is not blamed on the server.
 */
export class BodyGuard extends Transform {
  bytes = 0;
  private windowBytes = 0;
  private readonly timer: NodeJS.Timeout | undefined = undefined;

  constructor(private readonly o: BodyGuardOptions) {
    super({ highWaterMark: o.highWaterMark });
    if (o.minBytesPerSecond > 0) {
      this.timer = setInterval(() => this.checkRate(), o.rateWindowMs);
      this.timer.unref();
    }
  }

  /** True while the reader, not the server, holds things up (its buffer is full). */
  consumerBehind(): boolean {
    return this.readableLength >= this.readableHighWaterMark || this.writableNeedDrain;
  }

  private checkRate(): void {
    const needed = (this.o.minBytesPerSecond * this.o.rateWindowMs) / 1000;
    if (!this.consumerBehind() && this.windowBytes < needed) {
      this.destroy(
        new DepotsyncError(
          'timeout',
          `${this.o.label}: only ${this.windowBytes} bytes in ${this.o.rateWindowMs} ms (minimum ${this.o.minBytesPerSecond} bytes/s)`,
          {
            hint: 'the server sends too slowly (or stalled); try another depot',
          },
        ),
      );
    }
    this.windowBytes = 0;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.windowBytes += chunk.length;
    if (this.bytes > this.o.maxBytes) {
      cb(
        new DepotsyncError(
          'too-large',
          `${this.o.label}: body exceeds the limit of ${this.o.maxBytes} bytes`,
          { hint: 'the server sends more than this object may be; try another depot' },
        ),
      );
      return;
    }
    if (this.o.declaredBytes !== undefined && this.bytes > this.o.declaredBytes) {
      cb(
        new DepotsyncError(
          'too-large',
          `${this.o.label}: body exceeds its declared Content-Length of ${this.o.declaredBytes} bytes`,
        ),
      );
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.timer) clearInterval(this.timer);
    if (this.o.declaredBytes !== undefined && this.bytes < this.o.declaredBytes) {
      cb(this.truncated());
      return;
    }
    cb();
  }

  truncated(cause?: unknown): DepotsyncError {
    const of = this.o.declaredBytes !== undefined ? ` of ${this.o.declaredBytes} declared` : '';
    return new DepotsyncError('truncated', `${this.o.label}: body ended after ${this.bytes}${of} bytes`, {
      hint: 'the connection was cut; the download resumes on the next attempt',
      cause,
    });
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.timer) clearInterval(this.timer);
    cb(err);
  }
}
