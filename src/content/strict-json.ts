import { DepotsyncError } from '../errors.js';
import { printable } from './printable.js';

/**
 * A small, strict JSON parser for untrusted documents (manifests, request bodies, bundle tables).
 *
 * Why not JSON.parse: it keeps the last of two equal keys, so `{"name":"a",…,"name":"b"}` means one
 * thing to a parser that keeps the first and another to JSON.parse: a known way to get a signature
 * checked over one value and another value used (signature bypass by parser differential). It also
 * accepts floats that lose precision, and it cannot refuse deep nesting before recursing.
 *
 * Refused, each with an error naming the document, the byte position and the reason: documents over
 * `maxBytes` (checked on the length BEFORE decoding or parsing: the endless-data / memory exhaustion
 * attack), invalid UTF-8 (incl. overlong forms and encoded surrogates), a byte order mark, duplicate
 * keys, numbers with a fraction or exponent, -0, integers outside ±(2^53 − 1), lone surrogates in
 * \u escapes, control characters in strings, nesting deeper than `maxDepth`, trailing data.
 * Objects are created with `__proto__` as an ordinary own key (prototype pollution).
 */
export interface StrictJsonOptions {
  /** Refuse larger documents before looking at a single byte. */
  maxBytes: number;
  /** Names the document in errors: "manifest", "batch request", … */
  what: string;
  /** Deepest nesting of arrays and objects accepted (default 32). */
  maxDepth?: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parse untrusted JSON bytes. Nothing but `bytes.length` is read until the size check has passed. */
export function parseStrictJson(bytes: Uint8Array, opts: StrictJsonOptions): unknown {
  // Size first: a 2 GiB document is refused by its length, before it is decoded or parsed.
  if (bytes.length > opts.maxBytes) {
    throw new DepotsyncError(
      'too-large',
      `${opts.what}: ${bytes.length} bytes is over the limit of ${opts.maxBytes} bytes`,
      {
        hint: 'the document is refused before parsing; raise the limit only if the source is trusted to produce documents that large',
      },
    );
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (e) {
    throw new DepotsyncError('bad-json', `${opts.what}: invalid UTF-8 at byte ${firstBadUtf8(bytes)}`, {
      cause: e,
    });
  }
  return new Parser(text, opts.what, opts.maxDepth ?? 32).document();
}

class Parser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly what: string,
    private readonly maxDepth: number,
  ) {}

  document(): unknown {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail('unexpected data after the JSON value');
    return v;
  }

  private fail(reason: string, at = this.i): never {
    // Byte offset, computed only on failure: the scanner works on UTF-16 indexes.
    const byte = Buffer.byteLength(this.s.slice(0, at), 'utf8');
    throw new DepotsyncError('bad-json', `${this.what}: ${reason} at byte ${byte}`);
  }

  private ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  private value(depth: number): unknown {
    const c = this.s.charCodeAt(this.i);
    if (c === 0x22) return this.string();
    if (c === 0x7b) return this.object(depth + 1);
    if (c === 0x5b) return this.array(depth + 1);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.s.startsWith('true', this.i)) return ((this.i += 4), true);
    if (this.s.startsWith('false', this.i)) return ((this.i += 5), false);
    if (this.s.startsWith('null', this.i)) return ((this.i += 4), null);
    if (Number.isNaN(c)) this.fail('unexpected end of data');
    if (this.s.startsWith('NaN', this.i) || this.s.startsWith('Infinity', this.i))
      this.fail('NaN and Infinity are not JSON');
    this.fail(`unexpected character ${printable(this.s[this.i])}`);
  }

  private object(depth: number): Record<string, unknown> {
    if (depth > this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`);
    const out: Record<string, unknown> = {};
    this.i++; // {
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) return (this.i++, out);
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail('expected a string key');
      const keyAt = this.i;
      const key = this.string();
      // Duplicate keys: parser-differential signature bypass (see the header).
      if (Object.prototype.hasOwnProperty.call(out, key)) this.fail(`duplicate key ${printable(key)}`, keyAt);
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail('expected ":"');
      this.i++;
      this.ws();
      const v = this.value(depth);
      // `__proto__` becomes an own property, never the prototype (prototype pollution).
      if (key === '__proto__')
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      else out[key] = v;
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
      } else if (c === 0x7d) {
        this.i++;
        return out;
      } else this.fail('expected "," or "}"');
    }
  }

  private array(depth: number): unknown[] {
    if (depth > this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`);
    const out: unknown[] = [];
    this.i++; // [
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) return (this.i++, out);
    for (;;) {
      out.push(this.value(depth));
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
      } else if (c === 0x5d) {
        this.i++;
        return out;
      } else this.fail('expected "," or "]"');
    }
  }

  private number(): number {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === 0x2d) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) i++;
    else if (first >= 0x31 && first <= 0x39) while (isDigit(s.charCodeAt(i))) i++;
    else this.fail('invalid number', start);
    const next = s.charCodeAt(i);
    if (next === 0x2e || next === 0x65 || next === 0x45)
      this.fail('non-integer number (fractions and exponents are not accepted)', start);
    if (isDigit(next)) this.fail('number with a leading zero', start);
    this.i = i;
    const text = s.slice(start, i);
    if (text === '-0') this.fail('negative zero', start);
    const n = Number(text);
    if (!Number.isSafeInteger(n)) this.fail('integer outside ±(2^53 − 1)', start);
    return n;
  }

  private string(): string {
    const s = this.s;
    const start = ++this.i; // after the opening quote
    let i = start;
    // Fast path: no escapes.
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return s.slice(start, i);
      }
      if (c === 0x5c) break;
      if (c < 0x20) this.fail('control character in a string', i);
      if (Number.isNaN(c)) this.fail('unterminated string', i);
      i++;
    }
    let out = '';
    let run = start; // start of the literal run not yet copied to `out`
    let escaped = false;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c !== 0x22 && c !== 0x5c && c >= 0x20) {
        i++;
        continue;
      }
      out += s.slice(run, i);
      if (c === 0x22) break;
      if (Number.isNaN(c)) this.fail('unterminated string', i);
      if (c < 0x20) this.fail('control character in a string', i);
      const e = s[i + 1];
      const simple = e === undefined ? undefined : ESCAPES[e];
      if (simple !== undefined) {
        out += simple;
        i += 2;
      } else if (e === 'u') {
        const hex = s.slice(i + 2, i + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail('invalid \\u escape', i);
        out += String.fromCharCode(parseInt(hex, 16));
        escaped = true;
        i += 6;
      } else this.fail('invalid escape', i);
      run = i;
    }
    if (escaped && LONE_SURROGATE.test(out)) this.fail('\\u escape makes a lone surrogate', start - 1);
    this.i = i + 1;
    return out;
  }
}

const ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Byte offset of the first invalid UTF-8 sequence (only called on the error path). */
function firstBadUtf8(b: Uint8Array): number {
  // Binary search for the longest prefix a streaming decoder accepts (a prefix may end inside a
  // character, so "accepted" is monotonic in the prefix length).
  let lo = 0;
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (validPrefix(b, mid)) lo = mid;
    else hi = mid - 1;
  }
  // The accepted prefix ends inside a character (truncated at the end of the input, or a lead byte
  // whose continuation is wrong, such as an encoded surrogate): point at that character's lead byte.
  if (!validPrefix(b, lo, false)) {
    while (lo > 0 && ((b[lo - 1] as number) & 0xc0) === 0x80) lo--;
    if (lo > 0) lo--;
  }
  return lo;
}

function validPrefix(b: Uint8Array, n: number, stream = true): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b.subarray(0, n), { stream });
    return true;
  } catch {
    return false;
  }
}
