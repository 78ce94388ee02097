import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { decodeEvent, encodeComment, encodeEvent, SseDecoder } from '../../../src/wire/events.js';

const dec = (text: string | Buffer[], opts = {}) => {
  const d = new SseDecoder(opts);
  const parts = typeof text === 'string' ? [Buffer.from(text)] : text;
  return parts.flatMap((p) => d.push(p));
};

describe('event stream wire format', () => {
  it('round-trips generation and sync-now events, ignoring comments', () => {
    const text =
      encodeComment('hello') +
      encodeEvent({ kind: 'generation', generation: 12 }) +
      encodeComment('heartbeat') +
      encodeEvent({ kind: 'sync-now', seq: 3, depot: null }) +
      encodeEvent({ kind: 'sync-now', seq: 4, depot: 'depot-a' });
    const events = dec(text).map((r) => decodeEvent(r));
    expect(events).toEqual([
      { kind: 'generation', generation: 12 },
      { kind: 'sync-now', seq: 3, depot: null },
      { kind: 'sync-now', seq: 4, depot: 'depot-a' },
    ]);
  });

  it('reassembles events split at any byte, and accepts CRLF line ends', () => {
    const text = Buffer.from(encodeEvent({ kind: 'generation', generation: 7 }).replace(/\n/g, '\r\n'));
    for (let cut = 1; cut < text.length; cut++) {
      expect(dec([text.subarray(0, cut), text.subarray(cut)]).map((r) => decodeEvent(r))).toEqual([
        { kind: 'generation', generation: 7 },
      ]);
    }
    // One byte at a time.
    expect(dec([...text].map((b) => Buffer.from([b]))).length).toBe(1);
  });

  it('joins multi-line data and defaults the event name to message (ignored by decodeEvent)', () => {
    const [raw] = dec('data: a\ndata: b\n\n');
    expect(raw).toEqual({ event: 'message', data: 'a\nb' });
    expect(decodeEvent(raw!)).toBeUndefined();
    expect(decodeEvent({ event: 'future-thing', data: '{}' })).toBeUndefined();
  });

  it('refuses a line or an event above its cap instead of buffering without end (endless data)', () => {
    const d = new SseDecoder({ maxLineBytes: 64 });
    let err: unknown;
    try {
      for (let i = 0; i < 100; i++) d.push(Buffer.alloc(10, 0x61)); // no newline, ever
    } catch (e) {
      err = e;
    }
    expect(isDepotsyncError(err, 'too-large')).toBe(true);
    expect((err as Error).message).toMatch(/line longer than 64 bytes/);
    expect(() => dec(`${'data: xxxxxxxxxx\n'.repeat(20)}\n`, { maxEventBytes: 100 })).toThrow(
      /more than 100 bytes of data/,
    );
  });

  it('names the field of a malformed known event', () => {
    expect(() => decodeEvent({ event: 'generation', data: 'nope' })).toThrow(
      /generation event data: unexpected character "n" at byte 0/,
    );
    expect(() => decodeEvent({ event: 'generation', data: '[1]' })).toThrow(/not an object/);
    expect(() => decodeEvent({ event: 'generation', data: '{"generation":-1}' })).toThrow(
      /generation must be a non-negative integer, got -1/,
    );
    expect(() => decodeEvent({ event: 'generation', data: '{"generation":"5"}' })).toThrow(
      /generation must be a non-negative integer, got "5"/,
    );
    expect(() => decodeEvent({ event: 'sync-now', data: '{"seq":1.5}' })).toThrow(/non-integer number/);
    expect(() => decodeEvent({ event: 'sync-now', data: '{"seq":1,"seq":2}' })).toThrow(
      /duplicate key "seq"/,
    );
    expect(() => decodeEvent({ event: 'sync-now', data: `{"seq":1,"pad":"${'x'.repeat(9000)}"}` })).toThrow(
      /over the limit of 8192 bytes/,
    );
    expect(() => decodeEvent({ event: 'sync-now', data: '{"seq":1,"depot":"../x y"}' })).toThrow(
      /depot must be a machine name or null/,
    );
    expect(() => decodeEvent({ event: 'revocations', data: '{"version":1e400}' })).toThrow(
      /revocations event data: non-integer number/,
    );
    expect(() => decodeEvent({ event: 'revocations', data: '{"version":-1}' })).toThrow(
      /revocations event: version must be a non-negative integer, got -1/,
    );
    expect(() => decodeEvent({ event: 'revocations', data: '{}' })).toThrow(
      /version must be a non-negative integer, got undefined/,
    );
    const [raw] = new SseDecoder().push(Buffer.from(encodeEvent({ kind: 'revocations', version: 12 })));
    expect(decodeEvent(raw!)).toEqual({ kind: 'revocations', version: 12 });
  });

  it('keeps comments on one line', () => {
    expect(encodeComment('a\nb')).toBe(': a b\n\n');
  });
});
