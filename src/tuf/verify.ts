import { constants, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { Key } from '@tufjs/models';
import { DepotsyncError, type ErrorCode } from '../errors.js';
import { metaError } from './context.js';
import type { Envelope } from './envelope.js';

/** What a delegator says about a role: its key table, the role's keyids and threshold. */
export interface RoleKeys {
  readonly keys: Readonly<Record<string, Key>>;
  readonly keyids: readonly string[];
  readonly threshold: number;
}

/**
 * The signature schemes of the TUF specification and securesystemslib, all verified by node:crypto:
 * which key types a scheme accepts, the digest, and how the public key and signature are encoded.
 */
interface Scheme {
  readonly keytypes: readonly string[];
  readonly kind: 'ed25519' | 'ecdsa' | 'rsa-pss' | 'rsa-pkcs1';
  readonly digest: string | null;
  readonly curve?: string;
}

const SCHEMES: Readonly<Record<string, Scheme>> = {
  ed25519: { keytypes: ['ed25519'], kind: 'ed25519', digest: null },
  'ecdsa-sha2-nistp256': {
    keytypes: ['ecdsa', 'ecdsa-sha2-nistp256'],
    kind: 'ecdsa',
    digest: 'sha256',
    curve: 'prime256v1',
  },
  'ecdsa-sha2-nistp384': {
    keytypes: ['ecdsa', 'ecdsa-sha2-nistp384'],
    kind: 'ecdsa',
    digest: 'sha384',
    curve: 'secp384r1',
  },
  ...Object.fromEntries<Scheme>(
    ['sha224', 'sha256', 'sha384', 'sha512'].flatMap((h) => [
      [`rsassa-pss-${h}`, { keytypes: ['rsa'], kind: 'rsa-pss', digest: h }],
      [`rsa-pkcs1v15-${h}`, { keytypes: ['rsa'], kind: 'rsa-pkcs1', digest: h }],
    ]),
  ),
};

export const SUPPORTED_SCHEMES: readonly string[] = Object.keys(SCHEMES);

/** A key this client cannot use: unknown key type or scheme, or a public key that does not parse. */
export class UnsupportedKeyError extends DepotsyncError {
  constructor(message: string, cause?: unknown) {
    super('bad-metadata', message, { cause, hint: `supported schemes: ${SUPPORTED_SCHEMES.join(', ')}` });
  }
}

interface VerifyKey {
  readonly obj: KeyObject;
  readonly scheme: Scheme;
}

const keyCache = new Map<string, VerifyKey>();

/** The node:crypto public key and scheme of a TUF key; UnsupportedKeyError names what is wrong. */
export function verifyKeyOf(key: Pick<Key, 'keyType' | 'scheme' | 'keyVal'>): VerifyKey {
  const pub = key.keyVal?.public;
  const cacheId = `${key.keyType}\u0000${key.scheme}\u0000${pub}`;
  const hit = keyCache.get(cacheId);
  if (hit) return hit;
  const scheme = Object.prototype.hasOwnProperty.call(SCHEMES, key.scheme) ? SCHEMES[key.scheme] : undefined;
  if (!scheme)
    throw new UnsupportedKeyError(
      `unsupported signature scheme ${JSON.stringify(key.scheme)} (key type ${JSON.stringify(key.keyType)})`,
    );
  if (!scheme.keytypes.includes(key.keyType)) {
    throw new UnsupportedKeyError(
      `unsupported key type ${JSON.stringify(key.keyType)} for scheme ${JSON.stringify(key.scheme)}`,
    );
  }
  if (typeof pub !== 'string') throw new UnsupportedKeyError(`${key.keyType} key without keyval.public`);
  let obj: KeyObject;
  try {
    if (scheme.kind === 'ed25519') {
      if (!/^[0-9a-f]{64}$/.test(pub)) throw new Error('keyval.public must be 64 lowercase hex digits');
      obj = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pub, 'hex').toString('base64url') },
        format: 'jwk',
      });
    } else {
      obj = createPublicKey({ key: pub, format: 'pem' }); // SubjectPublicKeyInfo PEM, as securesystemslib writes
    }
  } catch (e) {
    throw new UnsupportedKeyError(
      `${key.keyType}/${key.scheme} public key does not parse: ${(e as Error).message}`,
      e,
    );
  }
  const want = scheme.kind === 'ed25519' ? 'ed25519' : scheme.kind === 'ecdsa' ? 'ec' : 'rsa';
  if (
    obj.asymmetricKeyType !== want ||
    (scheme.curve && obj.asymmetricKeyDetails?.namedCurve !== scheme.curve)
  ) {
    throw new UnsupportedKeyError(
      `${key.scheme} key holds a ${obj.asymmetricKeyType} ${obj.asymmetricKeyDetails?.namedCurve ?? ''} public key`.trimEnd(),
    );
  }
  const out = { obj, scheme };
  if (keyCache.size >= 4096) keyCache.clear();
  keyCache.set(cacheId, out);
  return out;
}

/** One signature over `data` by a TUF key (hex-encoded signature, as in TUF metadata). */
export function verifySignature(
  key: Pick<Key, 'keyType' | 'scheme' | 'keyVal'>,
  data: Buffer,
  sigHex: string,
): boolean {
  const { obj, scheme } = verifyKeyOf(key);
  if (!/^(?:[0-9a-f]{2})+$/.test(sigHex)) return false;
  const sig = Buffer.from(sigHex, 'hex');
  try {
    if (scheme.kind === 'rsa-pss') {
      // Salt length as the signer chose it (securesystemslib signs with the digest length).
      return cryptoVerify(
        scheme.digest,
        data,
        { key: obj, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        sig,
      );
    }
    if (scheme.kind === 'rsa-pkcs1')
      return cryptoVerify(scheme.digest, data, { key: obj, padding: constants.RSA_PKCS1_PADDING }, sig);
    if (scheme.kind === 'ecdsa')
      return cryptoVerify(scheme.digest, data, { key: obj, dsaEncoding: 'der' }, sig);
    return sig.length === 64 && cryptoVerify(null, data, obj, sig);
  } catch {
    return false; // malformed DER or wrong length: not a valid signature
  }
}

const short = (keyid: string) => (keyid.length > 8 ? `${keyid.slice(0, 8)}…` : keyid);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Verify an envelope's signatures against the delegator's keys and threshold, with node:crypto only.
 * A keyid may appear once in the signatures (else the file is refused, as the specification says).
 * Only DISTINCT keys that are listed for the role AND whose signature verifies count: a keyid listed
 * twice or one public key under two keyids count once (threshold inflation); signatures by keys not
 * listed are ignored (arbitrary-key attack). Returns the keyids that counted. Nothing of `signed`
 * beyond `_type` has been interpreted when this runs.
 *
 * Error code when the threshold is not met: `bad-signature` if a listed key's signature did not verify
 * (tampering), else `unknown-key` if no listed key signed but others did, else `threshold-not-met`;
 * keys of an unsupported type or scheme are named as such in the message.
 */
export function verifyThreshold(env: Envelope, role: RoleKeys): string[] {
  const { ctx } = env;
  if (!Number.isSafeInteger(role.threshold) || role.threshold < 1) {
    // A threshold of 0 would accept unsigned metadata.
    throw metaError(
      'bad-metadata',
      ctx,
      `the delegating role's threshold must be a positive integer, got ${JSON.stringify(role.threshold)}`,
    );
  }
  const seen = new Set<string>();
  for (const s of env.signatures) {
    if (seen.has(s.keyid))
      throw metaError(
        'bad-metadata',
        ctx,
        `two signatures carry keyid ${short(s.keyid)}; a keyid may sign once`,
      );
    seen.add(s.keyid);
  }
  const listed = new Set(role.keyids);
  const counted = new Set<string>();
  const countedPublic = new Set<string>();
  const unknown: string[] = [];
  const invalid: string[] = [];
  const unsupported: string[] = [];
  let duplicates = 0;
  for (const s of env.signatures) {
    const key =
      listed.has(s.keyid) && Object.prototype.hasOwnProperty.call(role.keys, s.keyid)
        ? role.keys[s.keyid]
        : undefined;
    if (!key) {
      unknown.push(s.keyid);
      continue;
    }
    const pub = `${key.keyType}/${key.keyVal.public ?? ''}`;
    if (countedPublic.has(pub)) {
      duplicates++;
      continue;
    }
    let ok = false;
    try {
      ok = verifySignature(key, env.signedBytes, s.sig);
    } catch (e) {
      if (!(e instanceof UnsupportedKeyError)) throw e;
      unsupported.push(`${short(s.keyid)}: ${e.message}`);
      continue;
    }
    if (ok) {
      counted.add(s.keyid);
      countedPublic.add(pub);
    } else {
      invalid.push(s.keyid);
    }
  }
  if (counted.size >= role.threshold) return [...counted];

  const details: string[] = [];
  if (unsupported.length)
    details.push(`${plural(unsupported.length, 'key')} not usable (${unsupported.join('; ')})`);
  if (invalid.length)
    details.push(`${plural(invalid.length, 'invalid signature')} by ${invalid.map(short).join(', ')}`);
  if (unknown.length)
    details.push(
      `${plural(unknown.length, 'signature')} by unknown key${unknown.length === 1 ? '' : 's'} ${unknown.map(short).join(', ')}`,
    );
  if (duplicates) details.push(`${plural(duplicates, 'signature')} by an already counted key counted once`);
  if (!env.signatures.length) details.push('no signatures');
  const code: ErrorCode = invalid.length
    ? 'bad-signature'
    : unsupported.length
      ? 'bad-metadata'
      : counted.size === 0 && unknown.length
        ? 'unknown-key'
        : 'threshold-not-met';
  throw metaError(
    code,
    ctx,
    `threshold not met: ${counted.size} of ${role.threshold} valid signatures (${details.join('; ')})`,
    {
      hint: unsupported.length
        ? `this client verifies ${SUPPORTED_SCHEMES.join(', ')}`
        : 'the metadata was not signed by the keys the trusted root names; it may be forged or from another repository',
    },
  );
}
