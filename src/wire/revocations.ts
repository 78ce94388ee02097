import { constants, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalize } from '../content/canonical-json.js';
import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';
import { normalizeSerial, toX509 } from '../pki/cert-info.js';
import { DAY_MS } from '../pki/forge-util.js';

/**
 * The signed revocation list served at `GET /v1/revocations.json` (docs/http.md). node-forge cannot
 * make CRLs, so the list is a small JSON document signed by the CA key; depots fetch it with every sync
 * and refuse revoked agents without asking the master.
 *
 *   { "signed": { "version": n, "issued": ISO, "expires": ISO, "serials": ["hex", …] },
 *     "signature": { "alg": "RS256" | "PS256", "value": base64 } }
 *
 * The signature covers the canonical JSON bytes of `signed`.
 */
export interface RevocationList {
  version: number;
  issued: Date;
  expires: Date;
  /** Normalised serials (lowercase hex, no leading zeros). */
  serials: ReadonlySet<string>;
}

export const REVOCATION_DEFAULTS = {
  /** A list of 100 000 revoked serials is about 3.5 MB; depots cap the download at this size. */
  maxBytes: 8 * 1024 * 1024,
  validDays: 7,
};

const WHAT = 'revocation list (revocations.json)';

export function isRevoked(list: RevocationList, serial: string): boolean {
  return list.serials.has(normalizeSerial(serial));
}

export function createRevocationList(
  ca: { keyPem: string },
  serials: Iterable<string>,
  version: number,
  opts: { validDays?: number; now?: Date } = {},
): Buffer {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new DepotsyncError(
      'bad-input',
      `${WHAT}: version must be a positive integer, got ${JSON.stringify(version)}`,
    );
  }
  const now = opts.now ?? new Date();
  const validDays = opts.validDays ?? REVOCATION_DEFAULTS.validDays;
  const signed = {
    version,
    issued: now.toISOString(),
    expires: new Date(now.getTime() + validDays * DAY_MS).toISOString(),
    serials: [...new Set([...serials].map(normalizeSerial))].sort(),
  };
  const key = createPrivateKey(ca.keyPem);
  const value = sign('sha256', canonicalize(signed), key).toString('base64');
  return Buffer.from(`${JSON.stringify({ signed, signature: { alg: 'RS256', value } }, null, 1)}\n`, 'utf8');
}

function fail(code: 'bad-metadata' | 'bad-signature', reason: string): DepotsyncError {
  return new DepotsyncError(code, `${WHAT}: ${reason}`, {
    hint:
      code === 'bad-signature'
        ? "the list was not signed by this master's CA; the mirror may be compromised"
        : undefined,
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function verifySignature(signed: unknown, signature: Record<string, unknown>, caKey: KeyObject): boolean {
  const { alg, value } = signature;
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(value))
    throw fail('bad-metadata', 'signature.value is not base64');
  let data: Buffer;
  try {
    data = canonicalize(signed);
  } catch (e) {
    throw fail('bad-metadata', `the signed part has no canonical form (${(e as Error).message})`);
  }
  const sig = Buffer.from(value, 'base64');
  if (alg === 'RS256') return verify('sha256', data, caKey, sig);
  if (alg === 'PS256') {
    return verify(
      'sha256',
      data,
      { key: caKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
      sig,
    );
  }
  throw fail('bad-metadata', `signature.alg ${JSON.stringify(alg)} is not RS256 or PS256`);
}

function isoDate(v: unknown, field: string): Date {
  const d =
    typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?Z$/.test(v)
      ? new Date(v)
      : undefined;
  if (!d || Number.isNaN(d.getTime()))
    throw fail('bad-metadata', `signed.${field} must be an ISO 8601 UTC time, got ${JSON.stringify(v)}`);
  return d;
}

/**
 * Decode and verify a revocation list from the network or disk, in the order TUF's client checks metadata.
 */
export function verifyRevocationList(
  bytes: Buffer,
  caCertPem: string,
  opts: { maxBytes?: number; now?: Date; minVersion?: number } = {},
): RevocationList {
  // Size checked before parsing (endless data); strict, so the signature and the reader see one value.
  const doc = parseStrictJson(bytes, { what: WHAT, maxBytes: opts.maxBytes ?? REVOCATION_DEFAULTS.maxBytes });
  if (!isRecord(doc) || !isRecord(doc.signed) || !isRecord(doc.signature)) {
    throw fail('bad-metadata', 'expected an object with "signed" and "signature" objects');
  }
  // Check the signature before reading any signed field: blocks arbitrary (forged or altered) lists.
  const caKey = toX509(caCertPem, 'CA certificate').publicKey;
  if (!verifySignature(doc.signed, doc.signature, caKey))
    throw fail('bad-signature', 'signature does not verify with the CA key');
  const { version, issued, expires, serials } = doc.signed;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw fail('bad-metadata', `signed.version must be a positive integer, got ${JSON.stringify(version)}`);
  }
  if (
    !Array.isArray(serials) ||
    !serials.every((s) => typeof s === 'string' && /^[0-9a-fA-F]{1,80}$/.test(s))
  ) {
    throw fail('bad-metadata', 'signed.serials must be a list of hexadecimal serials');
  }
  const list: RevocationList = {
    version,
    issued: isoDate(issued, 'issued'),
    expires: isoDate(expires, 'expires'),
    serials: new Set((serials as string[]).map(normalizeSerial)),
  };
  // Check for a rollback attack: an older list would un-revoke machines revoked since.
  if (opts.minVersion !== undefined && version < opts.minVersion) {
    throw new DepotsyncError(
      'version-rollback',
      `${WHAT}: version ${version} is older than version ${opts.minVersion} already seen`,
      {
        hint: 'the server replays an old list; sync from another depot or the master',
      },
    );
  }
  // Check for a freeze attack: an expired list could hide revocations made since.
  const now = opts.now ?? new Date();
  if (list.expires.getTime() <= now.getTime()) {
    throw new DepotsyncError('expired', `${WHAT}: expired at ${list.expires.toISOString()}`, {
      hint: 'the master re-signs the list on a schedule; check that it is running and that this clock is right',
    });
  }
  return list;
}
