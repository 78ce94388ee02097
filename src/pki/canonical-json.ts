import { DepotsyncError } from '../errors.js';

/**
 * Canonical JSON for the small signed objects of the PKI (the revocation list): object keys sorted by
 * code unit, no insignificant whitespace, integers only. Signer and verifier both serialise the parsed
 * object this way, so formatting changes by a mirror cannot break (or forge) a signature.
 */
export function canonicalize(value: unknown, path = '$'): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new DepotsyncError('bad-metadata', `canonical JSON: ${path} is not a safe integer (${value})`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => canonicalize(v, `${path}[${i}]`)).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalize(obj[k], `${path}.${k}`)}`).join(',')}}`;
  }
  throw new DepotsyncError('bad-metadata', `canonical JSON: ${path} has unsupported type ${typeof value}`);
}
