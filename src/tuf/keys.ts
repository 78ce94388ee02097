import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { canonicalize } from '../content/canonical-json.js';
import { Key } from '@tufjs/models';
import { DepotsyncError, fromSystemError } from '../errors.js';
import { writeFileAtomic } from '../fs/atomic-write.js';

/**
 * Ed25519 keys in TUF form. A TUF public key is `{keytype, scheme, keyval: {public: <hex of the raw
 * 32 bytes>}}` and its keyid is the hex SHA-256 of that object's canonical JSON (TUF convention).
 * Private keys live on disk as PKCS#8 PEM, mode 0600.
 */
export interface TufPublicKey {
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyval: { public: string };
}

/** Something that signs bytes with one key: a key file today, a hardware token tomorrow. */
export interface Signer {
  readonly keyid: string;
  readonly publicKey: TufPublicKey;
  sign(data: Buffer): Buffer;
}

export interface KeyPair {
  readonly keyid: string;
  readonly publicKey: TufPublicKey;
  readonly privateKey: KeyObject;
  readonly signer: Signer;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function keyIdOf(key: TufPublicKey): string {
  return createHash('sha256').update(canonicalize(key)).digest('hex');
}

export function tufPublicKeyFromKeyObject(key: KeyObject): TufPublicKey {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new DepotsyncError(
      'bad-input',
      `key: expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'a secret key'}`,
    );
  }
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  const raw = Buffer.from(String(jwk.x), 'base64url');
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: raw.toString('hex') } };
}

/** The node:crypto public key for a TUF Ed25519 key; `what` names the key in errors. */
export function publicKeyObject(key: TufPublicKey, what: string): KeyObject {
  if (key.keytype !== 'ed25519' || key.scheme !== 'ed25519') {
    throw new DepotsyncError(
      'bad-metadata',
      `${what}: unsupported key type ${JSON.stringify(key.keytype)}/${JSON.stringify(key.scheme)}`,
      {
        hint: 'depotsync accepts Ed25519 keys only',
      },
    );
  }
  const hex = key.keyval?.public;
  if (typeof hex !== 'string' || !HEX64.test(hex)) {
    throw new DepotsyncError('bad-metadata', `${what}: keyval.public must be 64 lowercase hex digits`);
  }
  const x = Buffer.from(hex, 'hex').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

export function signerFromPrivateKey(privateKey: KeyObject): Signer {
  const publicKey = tufPublicKeyFromKeyObject(privateKey);
  const keyid = keyIdOf(publicKey);
  return { keyid, publicKey, sign: (data: Buffer) => sign(null, data, privateKey) };
}

function pairOf(privateKey: KeyObject): KeyPair {
  const signer = signerFromPrivateKey(privateKey);
  return { keyid: signer.keyid, publicKey: signer.publicKey, privateKey, signer };
}

export function generateKeyPair(): KeyPair {
  return pairOf(generateKeyPairSync('ed25519').privateKey);
}

/** The `@tufjs/models` Key for a TUF public key (for building Root and Delegations). */
export function toModelKey(key: TufPublicKey): Key {
  return new Key({
    keyID: keyIdOf(key),
    keyType: key.keytype,
    scheme: key.scheme,
    keyVal: { ...key.keyval },
  });
}

export function privateKeyToPem(privateKey: KeyObject): string {
  return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function keyPairFromPem(pem: string, what: string): KeyPair {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new DepotsyncError('bad-input', `${what}: not a PEM private key`, {
      cause: e,
      hint: 'expected a PKCS#8 Ed25519 key written by depotsync',
    });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new DepotsyncError('bad-input', `${what}: expected an Ed25519 key, got ${key.asymmetricKeyType}`);
  }
  return pairOf(key);
}

/** Write a private key as PKCS#8 PEM with mode 0600, through a temporary file and rename. */
export async function writePrivateKey(path: string, privateKey: KeyObject): Promise<void> {
  await writeFileAtomic(path, privateKeyToPem(privateKey), { mode: 0o600 });
}

export async function readPrivateKey(path: string): Promise<KeyPair> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `private key ${path}`);
  }
  return keyPairFromPem(pem, `private key ${path}`);
}
