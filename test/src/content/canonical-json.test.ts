import { canonicalize as tufCanonicalize } from '@tufjs/canonical-json';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalize,
  canonicalString,
  isCanonical,
  parseStrictJson,
} from '../../../src/content/canonical-json.js';
import { errorOf } from './helpers.js';

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
const parse = (s: string | Uint8Array, maxDepth?: number): unknown =>
  parseStrictJson(typeof s === 'string' ? enc(s) : s, {
    maxBytes: 1 << 20,
    what: 'manifest',
    ...(maxDepth ? { maxDepth } : {}),
  });

describe('canonicalize', () => {
  it('sorts keys at every level and writes no whitespace', () => {
    expect(canonicalString({ b: 1, a: [true, null, 'x', { z: 0, y: -5 }], c: {} })).toBe(
      '{"a":[true,null,"x",{"y":-5,"z":0}],"b":1,"c":{}}',
    );
  });

  it('sorts keys by UTF-16 code units (RFC 8785), not by code point', () => {
    // U+1F600 is D83D DE00 in UTF-16, which sorts before U+E000; by code point it would sort after.
    expect(canonicalString({ '\uE000': 1, '😀': 2, a: 3, B: 4 })).toBe('{"B":4,"a":3,"😀":2,"\uE000":1}');
  });

  it('escapes only quote and backslash (OLPC canonical JSON, as TUF signs)', () => {
    const s = '"\\/é😀\u007f\u2028';
    expect(canonicalString(s)).toBe('"\\"\\\\/é😀\u007f\u2028"');
    expect(canonicalize('é')).toEqual(Buffer.from([0x22, 0xc3, 0xa9, 0x22]));
  });

  it('writes control characters raw in strings and keys, as OLPC and TUF do (PEM keys hold newlines)', () => {
    for (const v of [
      'a\nb',
      '\u0000',
      { k: ['\u001f'] },
      { 'a\tb': 1 },
      '-----BEGIN PUBLIC KEY-----\nMFk=\n"\\',
    ]) {
      expect(canonicalize(v).equals(Buffer.from(tufCanonicalize(v as never), 'utf8'))).toBe(true);
    }
    expect(canonicalString('a\nb')).toBe('"a\nb"');
  });

  it('writes safe integers only', () => {
    expect(canonicalString([0, -1, 9007199254740991, -9007199254740991])).toBe(
      '[0,-1,9007199254740991,-9007199254740991]',
    );
    for (const [v, reason] of [
      [NaN, 'NaN is not a finite number'],
      [Infinity, 'Infinity is not a finite number'],
      [-Infinity, '-Infinity is not a finite number'],
      [1.5, '1.5 is not an integer'],
      [2 ** 53, 'outside the safe integer range'],
      [-0, '-0 has no canonical form'],
    ] as const) {
      const e = errorOf(() => canonicalize({ a: [v] }));
      expect(e.code).toBe('bad-input');
      expect(e.message).toContain('"$.a[0]"');
      expect(e.message).toContain(reason);
    }
  });

  it('refuses values that JSON.stringify would drop or mangle', () => {
    const cases: Array<[unknown, string]> = [
      [{ a: undefined }, 'a undefined cannot be encoded'],
      [{ f: () => 1 }, 'a function cannot be encoded'],
      [{ n: 10n }, 'a bigint cannot be encoded'],
      [{ d: new Date(0) }, 'only plain objects'],
      [{ m: new Map() }, 'only plain objects'],
      [{ b: Buffer.from('x') }, 'only plain objects'],
      ['\ud800x', 'lone UTF-16 surrogate'],
      [{ '\udc00': 1 }, 'lone UTF-16 surrogate'],
    ];
    for (const [v, reason] of cases) {
      const e = errorOf(() => canonicalize(v));
      expect(e.code).toBe('bad-input');
      expect(e.message).toContain(reason);
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(errorOf(() => canonicalize(cyclic)).message).toContain('or a cycle');
  });

  it('accepts null-prototype objects (what a careful parser produces)', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o.b = 2;
    o.a = 1;
    expect(canonicalString(o)).toBe('{"a":1,"b":2}');
  });
});

describe('parseStrictJson', () => {
  it('parses ordinary JSON, whitespace and escapes included', () => {
    expect(parse(' {"a" : [1, -2, true, false, null, "x\\u00e9\\ud83d\\ude00\\n\\/"], "b": {}} \n')).toEqual({
      a: [1, -2, true, false, null, 'xé😀\n/'],
      b: {},
    });
    expect(parse('"plain"')).toBe('plain');
    expect(parse('0')).toBe(0);
  });

  it('refuses duplicate keys, naming the key and its byte position', () => {
    const text = '{"format":1,"name":"good","version":"1","name":"evil"}';
    const e = errorOf(() => parse(text));
    expect(e.code).toBe('bad-json');
    expect(e.message).toBe(`manifest: duplicate key "name" at byte ${text.lastIndexOf('"name"')}`);
    // Nested objects too, and positions count UTF-8 bytes, not characters.
    const nested = '{"é":{"k":1,"k":2}}';
    expect(errorOf(() => parse(nested)).message).toBe('manifest: duplicate key "k" at byte 13');
  });

  it('refuses a 2 GiB document by its length, before reading a single byte', () => {
    const touched: PropertyKey[] = [];
    const huge = new Proxy(new Uint8Array(0), {
      get(target, prop) {
        touched.push(prop);
        if (prop === 'length') return 2 * 1024 ** 3;
        throw new Error(`the parser read ${String(prop)} of a document it should have refused by size`);
      },
    });
    const e = errorOf(() => parseStrictJson(huge, { maxBytes: 5 * 1024 * 1024, what: 'targets metadata' }));
    expect(e.code).toBe('too-large');
    expect(e.message).toBe('targets metadata: 2147483648 bytes is over the limit of 5242880 bytes');
    expect(touched.every((p) => p === 'length')).toBe(true);
  });

  it('accepts a document exactly at the limit', () => {
    expect(parseStrictJson(enc('[1]'), { maxBytes: 3, what: 'x' })).toEqual([1]);
    expect(errorOf(() => parseStrictJson(enc('[1] '), { maxBytes: 3, what: 'x' })).code).toBe('too-large');
  });

  it('refuses non-integer numbers, -0, leading zeros and integers beyond 2^53', () => {
    for (const [text, reason] of [
      ['{"size":1.5}', 'non-integer number'],
      ['{"size":1e3}', 'non-integer number'],
      ['{"size":1E3}', 'non-integer number'],
      ['{"size":0.0}', 'non-integer number'],
      ['{"size":-0}', 'negative zero'],
      ['{"size":01}', 'leading zero'],
      ['{"size":9007199254740992}', 'integer outside'],
      ['{"size":-}', 'invalid number'],
      ['{"size":+1}', 'unexpected character "+"'],
    ]) {
      const e = errorOf(() => parse(text as string));
      expect(e.code).toBe('bad-json');
      expect(e.message).toMatch(/^manifest: .* at byte 8$/);
      expect(e.message).toContain(reason);
    }
  });

  it('refuses NaN and Infinity', () => {
    expect(errorOf(() => parse('[NaN]')).message).toBe('manifest: NaN and Infinity are not JSON at byte 1');
    expect(errorOf(() => parse('[Infinity]')).message).toContain('NaN and Infinity are not JSON');
    expect(errorOf(() => parse('[-Infinity]')).message).toContain('invalid number');
  });

  it('refuses invalid UTF-8, naming the byte', () => {
    const cases: Array<[number[], number]> = [
      [[0x22, 0xff, 0x22], 1],
      [[0x22, 0x61, 0xc0, 0x80, 0x22], 2], // overlong NUL
      [[0x22, 0xed, 0xa0, 0x80, 0x22], 1], // encoded surrogate
      [[0x22, 0x61, 0x62, 0xe2, 0x82], 3], // truncated at the end
    ];
    for (const [bytes, at] of cases) {
      const e = errorOf(() => parse(Uint8Array.from(bytes)));
      expect(e.code).toBe('bad-json');
      expect(e.message).toBe(`manifest: invalid UTF-8 at byte ${at}`);
    }
  });

  it('refuses a byte order mark, trailing data and truncated documents', () => {
    expect(errorOf(() => parse('\ufeff{}')).message).toContain('unexpected character "\\ufeff" at byte 0');
    expect(errorOf(() => parse('{} x')).message).toBe(
      'manifest: unexpected data after the JSON value at byte 3',
    );
    expect(errorOf(() => parse('{}{}')).message).toContain('unexpected data after the JSON value');
    expect(errorOf(() => parse('{"a":[1,2')).message).toContain('expected "," or "]"');
    expect(errorOf(() => parse('{"a":"xy')).message).toContain('unterminated string');
    expect(errorOf(() => parse('')).message).toBe('manifest: unexpected end of data at byte 0');
    expect(errorOf(() => parse('[1,]')).message).toContain('unexpected character "]"');
    expect(errorOf(() => parse('{"a":1,}')).message).toContain('expected a string key');
    expect(errorOf(() => parse("{'a':1}")).message).toContain('expected a string key');
  });

  it('refuses control characters, bad escapes and lone surrogates in strings', () => {
    expect(errorOf(() => parse('"a\tb"')).message).toBe('manifest: control character in a string at byte 2');
    expect(errorOf(() => parse('"a\\x"')).message).toContain('invalid escape');
    expect(errorOf(() => parse('"\\u12"')).message).toContain('invalid \\u escape');
    expect(errorOf(() => parse('"\\ud800"')).message).toContain('lone surrogate');
    expect(errorOf(() => parse('"\\ude00\\ud83d"')).message).toContain('lone surrogate');
  });

  it('refuses nesting deeper than the limit before recursing further', () => {
    const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    expect(parse(deep(32))).toBeInstanceOf(Array);
    const e = errorOf(() => parse(deep(33)));
    expect(e.message).toBe('manifest: nested deeper than 32 levels at byte 32');
    expect(errorOf(() => parse(deep(100_000))).code).toBe('bad-json'); // no stack overflow
    expect(errorOf(() => parse('{"a":{"b":{}}}', 2)).message).toContain('nested deeper than 2 levels');
  });

  it('keeps "__proto__" as an ordinary key (no prototype pollution)', () => {
    const v = parse('{"__proto__":{"polluted":true},"a":1}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(v)).toEqual(['__proto__', 'a']);
    expect(canonicalString(v)).toBe('{"__proto__":{"polluted":true},"a":1}');
    expect(errorOf(() => parse('{"__proto__":1,"__proto__":2}')).message).toContain(
      'duplicate key "__proto__"',
    );
  });

  it('round-trips through canonicalize', () => {
    const value = {
      z: [1, 'a\u007f"\\', { y: null, x: [] }],
      é: -42,
      '': 'empty key',
      long: 'x'.repeat(10_000),
    };
    const bytes = canonicalize(value);
    expect(parse(bytes)).toEqual(value);
    expect(canonicalize(parse(bytes))).toEqual(bytes);
    expect(JSON.parse(bytes.toString('utf8'))).toEqual(value);
  });
});

describe('isCanonical', () => {
  it('accepts exactly the canonical form', () => {
    expect(isCanonical(enc('{"a":1,"b":[true]}'))).toBe(true);
    expect(isCanonical(enc('{"b":[true],"a":1}'))).toBe(false); // unsorted
    expect(isCanonical(enc('{"a": 1}'))).toBe(false); // whitespace
    expect(isCanonical(enc('"\\/"'))).toBe(false); // needless escape
    expect(isCanonical(enc('"\\u0041"'))).toBe(false);
    expect(isCanonical(enc('"\\u001F"'))).toBe(false); // upper-case hex
    expect(isCanonical(enc('"\\u001f"'))).toBe(false); // a control character has no canonical form
    expect(isCanonical(enc('{"a":1,"a":1}'))).toBe(false); // not even strict JSON
  });
});

describe('canonicalize and @tufjs/canonical-json (what TUF signatures are over)', () => {
  // Strings from all of Unicode, including control characters, lone surrogates, quote and backslash.
  const str = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.constantFrom('"', '\\', '\n', '\ud800', 'é😀'),
  );
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.constant(null),
      fc.boolean(),
      fc.maxSafeInteger(),
      str,
      fc.array(tie('v')),
      fc.dictionary(str, tie('v')),
    ),
  })).v;

  it('writes the same bytes for every value it accepts, and refuses only lone surrogates and -0', () => {
    fc.assert(
      fc.property(value, (v) => {
        let ours: Buffer;
        try {
          ours = canonicalize(v);
        } catch (e) {
          expect((e as Error).message).toMatch(/lone UTF-16 surrogate|-0 has no canonical form/);
          return;
        }
        expect(ours.equals(Buffer.from(tufCanonicalize(v as never), 'utf8'))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees on a TUF-shaped document', () => {
    const signed = {
      _type: 'targets',
      spec_version: '1.0.31',
      version: 7,
      expires: '2030-01-01T00:00:00Z',
      targets: {
        'firefox@1.0.json': {
          length: 1234,
          hashes: { sha256: 'ab'.repeat(32) },
          custom: { name: 'firefox' },
        },
      },
    };
    expect(canonicalize(signed).toString('utf8')).toBe(tufCanonicalize(signed));
  });
});
