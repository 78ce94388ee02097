import { DepotsyncError } from '../errors.js';
import { printable } from './printable.js';
import { parseStrictJson } from './strict-json.js';

export { parseStrictJson, type StrictJsonOptions } from './strict-json.js';

/**
 * Canonical JSON: the one byte form of a value, used for everything that is hashed or signed
 * (a manifest's id is the BLAKE3 hash of these bytes; TUF metadata, bundles, revocation lists and
 * validity windows are signed over them). The project's only implementation.
 *
 * The bytes are OLPC canonical JSON, what TUF, securesystemslib and `@tufjs/canonical-json` sign, so
 * metadata signed by any TUF implementation verifies against them and vice versa. A string's control
 * characters are written raw, as OLPC does (PEM public keys of ECDSA and RSA roles hold newlines);
 * such bytes are not JSON any parser reads back, so `isCanonical` refuses a document holding them.
 *
 * Rules:
 * - UTF-8, no byte order mark, no whitespace outside strings.
 * - Object keys sorted by their UTF-16 code units (RFC 8785 §3.2.3; JavaScript's default string
 *   order). For the ASCII keys every depotsync document uses this is plain byte order.
 * - Numbers: safe integers only (|n| ≤ 2^53 − 1), written in decimal without sign for 0. Fractions,
 *   exponents, NaN, ±Infinity and −0 are refused, so no float formatting question ever arises.
 * - Strings: `"` and `\` escaped as `\"` and `\\`, everything else literal, control characters
 *   included. Lone surrogates are refused (they have no UTF-8 form).
 * - Values: null, booleans, numbers as above, strings, arrays and plain objects. undefined,
 *   functions, symbols, bigints, class instances (Date, Buffer, Map …) are refused, not skipped:
 *   a field silently vanishing from signed bytes is a bug we want to hear about.
 */
export const MAX_CANONICAL_DEPTH = 64;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const CONTROL = /[\u0000-\u001f]/;

export function canonicalize(value: unknown): Buffer {
  const parts: string[] = [];
  write(value, parts, 0, '$');
  return Buffer.from(parts.join(''), 'utf8');
}

/** The canonical text (for tests and logs); `canonicalize` is what gets hashed. */
export function canonicalString(value: unknown): string {
  return canonicalize(value).toString('utf8');
}

/**
 * True when `bytes` parse as strict JSON and are already in canonical form. Used to check that a
 * signed or hashed document has one and only one byte form (two encodings of one value would give a
 * document two ids).
 */
export function isCanonical(bytes: Uint8Array): boolean {
  let canonical: Buffer;
  try {
    canonical = canonicalize(parseStrictJson(bytes, { maxBytes: bytes.length, what: 'document' }));
  } catch {
    return false; // not strict JSON, or a value with no canonical form (a control character)
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(canonical);
}

function fail(at: string, reason: string): never {
  throw new DepotsyncError('bad-input', `canonical JSON: ${printable(at)}: ${reason}`, {
    hint: 'only null, booleans, safe integers, strings, arrays and plain objects can be hashed or signed',
  });
}

function write(v: unknown, out: string[], depth: number, at: string): void {
  if (depth > MAX_CANONICAL_DEPTH) fail(at, `nested deeper than ${MAX_CANONICAL_DEPTH} levels (or a cycle)`);
  switch (typeof v) {
    case 'string':
      out.push(quote(v, at, 'string'));
      return;
    case 'number':
      if (!Number.isFinite(v)) fail(at, `${v} is not a finite number`);
      if (!Number.isInteger(v)) fail(at, `${v} is not an integer`);
      if (!Number.isSafeInteger(v)) fail(at, `${v} is outside the safe integer range ±(2^53 − 1)`);
      if (Object.is(v, -0)) fail(at, '-0 has no canonical form');
      out.push(String(v));
      return;
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return;
    case 'object':
      break;
    default:
      fail(at, `a ${typeof v} cannot be encoded`);
  }
  if (v === null) {
    out.push('null');
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      write(v[i], out, depth + 1, `${at}[${i}]`);
    }
    out.push(']');
    return;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) fail(at, 'only plain objects can be encoded');
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  out.push('{');
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (i > 0) out.push(',');
    out.push(quote(k, at, 'a key'), ':');
    write(obj[k], out, depth + 1, `${at}.${k}`);
  }
  out.push('}');
}

/** Without control characters JSON.stringify writes exactly OLPC's form; with them, OLPC writes them raw. */
function quote(s: string, at: string, what: string): string {
  if (LONE_SURROGATE.test(s)) fail(at, `${what} contains a lone UTF-16 surrogate`);
  if (CONTROL.test(s)) return `"${s.replace(/["\\]/g, '\\$&')}"`;
  return JSON.stringify(s);
}
