import { DepotsyncError } from '../errors.js';
import { MACHINE_NAME } from '../pki/names.js';
import { parseStrictJson } from '../content/strict-json.js';

/**
 * The "distribute now" event stream (`GET /v1/events`): server-sent events over mutual
 * TLS from the master or a parent depot. The wire format is text/event-stream (WHATWG HTML §9.2):
 *
 *   event: generation            the generation the server serves (on connect, then on every change)
 *   data: {"generation":12}
 *
 *   event: sync-now              an operator asked for a sync (`master notify`); depot null = every depot
 *   data: {"seq":3,"depot":"depot-a"}
 *
 *   event: revocations           the version of the signed revocation list served (on connect, on change)
 *   data: {"version":7}
 *
 *   : heartbeat                  a comment every ~20 s, so both ends notice a dead connection
 *
 * An event is a hint, never trusted beyond "go check": the sync it starts verifies everything itself.
 */
export const EVENTS_CONTENT_TYPE = 'text/event-stream';

export type StreamEvent =
  | { kind: 'generation'; generation: number }
  | { kind: 'sync-now'; seq: number; depot: string | null }
  | { kind: 'revocations'; version: number };

/** One event as it goes on the wire. */
export function encodeEvent(e: StreamEvent): string {
  const data =
    e.kind === 'generation'
      ? { generation: e.generation }
      : e.kind === 'revocations'
        ? { version: e.version }
        : { seq: e.seq, depot: e.depot };
  return `event: ${e.kind}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function encodeComment(text: string): string {
  return `: ${text.replace(/[\r\n]/g, ' ')}\n\n`;
}

/** A raw server-sent event: its name (default `message`) and its data lines joined by '\n'. */
export interface RawEvent {
  event: string;
  data: string;
}

export const SSE_DECODER_DEFAULTS = {
  /** Longest line accepted: ours are tens of bytes; a longer one is an endless-data attack. */
  maxLineBytes: 4096,
  /** Most data bytes in one event. */
  maxEventBytes: 8192,
};

/**
 * Incremental text/event-stream parser with caps counted while reading (docs/contributing.md): a line or an
 * event above its cap fails with 'too-large' instead of growing a buffer without end. Comments,
 * `id:` and `retry:` fields are read and dropped.
 */
export class SseDecoder {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private event = '';
  private data: string[] = [];
  private dataBytes = 0;
  private readonly o: typeof SSE_DECODER_DEFAULTS;

  constructor(
    opts: Partial<typeof SSE_DECODER_DEFAULTS> = {},
    private readonly what = 'event stream',
  ) {
    this.o = { ...SSE_DECODER_DEFAULTS, ...opts };
  }

  /** Feed received bytes; returns the events they completed. */
  push(chunk: Buffer): RawEvent[] {
    const out: RawEvent[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      this.count(piece.length);
      const line = (this.partial.length ? Buffer.concat([...this.partial, piece]) : piece)
        .toString('utf8')
        .replace(/\r$/, '');
      this.partial = [];
      this.partialBytes = 0;
      this.line(line, out);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.count(rest.length);
      this.partial.push(Buffer.from(rest));
    }
    return out;
  }

  private count(n: number): void {
    this.partialBytes += n;
    if (this.partialBytes > this.o.maxLineBytes) {
      throw new DepotsyncError('too-large', `${this.what}: a line longer than ${this.o.maxLineBytes} bytes`, {
        hint: 'the upstream is not a depotsync event stream, or is misbehaving',
      });
    }
  }

  private line(line: string, out: RawEvent[]): void {
    if (line === '') {
      if (this.data.length > 0) out.push({ event: this.event || 'message', data: this.data.join('\n') });
      this.event = '';
      this.data = [];
      this.dataBytes = 0;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.event = value;
    else if (field === 'data') {
      this.dataBytes += value.length + 1;
      if (this.dataBytes > this.o.maxEventBytes) {
        throw new DepotsyncError(
          'too-large',
          `${this.what}: an event with more than ${this.o.maxEventBytes} bytes of data`,
          { hint: 'the upstream is not a depotsync event stream, or is misbehaving' },
        );
      }
      this.data.push(value);
    }
  }
}

/**
 * Decode one received event at the border. Returns undefined for event names this version does not
 * know (a newer server may send more); throws 'bad-input' naming the field for a known event that is
 * malformed.
 */
export function decodeEvent(raw: RawEvent, what = 'event stream'): StreamEvent | undefined {
  if (raw.event !== 'generation' && raw.event !== 'sync-now' && raw.event !== 'revocations') return undefined;
  const v = parseStrictJson(Buffer.from(raw.data, 'utf8'), {
    what: `${what}: ${raw.event} event data`,
    maxBytes: SSE_DECODER_DEFAULTS.maxEventBytes,
    maxDepth: 4,
  });
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new DepotsyncError('bad-input', `${what}: ${raw.event} event data is not an object`);
  const o = v as Record<string, unknown>;
  const count = (name: string): number => {
    const n = o[name];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new DepotsyncError(
        'bad-input',
        `${what}: ${raw.event} event: ${name} must be a non-negative integer, got ${JSON.stringify(n)}`,
      );
    }
    return n;
  };
  if (raw.event === 'generation') return { kind: 'generation', generation: count('generation') };
  if (raw.event === 'revocations') return { kind: 'revocations', version: count('version') };
  const depot = o.depot ?? null;
  if (depot !== null && (typeof depot !== 'string' || !MACHINE_NAME.test(depot))) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: sync-now event: depot must be a machine name or null, got ${JSON.stringify(depot)}`,
    );
  }
  return { kind: 'sync-now', seq: count('seq'), depot };
}
