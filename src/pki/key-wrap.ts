import { constants, createPrivateKey, privateDecrypt, publicEncrypt } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { normalizeSerial, toX509 } from './cert-info.js';

/**
 * Wrapping a symmetric key for a machine (encrypted bundles): RSA-OAEP with SHA-256
 * (and MGF1-SHA-256) under the public key of the machine's certificate, so only the holder of that
 * machine's private key (which never leaves the machine, see csr.ts) can unwrap it. The OAEP label
 * separates this use of the machine key from its TLS signatures: a wrapped key made for another
 * purpose does not unwrap here.
 */
export const KEY_WRAP_LABEL = Buffer.from('depotsync key wrap v1', 'utf8');

const OAEP = {
  padding: constants.RSA_PKCS1_OAEP_PADDING,
  oaepHash: 'sha256',
  oaepLabel: KEY_WRAP_LABEL,
} as const;

export interface WrappedKey {
  /** Serial (normalised) of the certificate whose public key the key is wrapped for. */
  certificateSerial: string;
  wrapped: Buffer;
}

export function wrapKeyForCertificate(key: Uint8Array, certPem: string, what: string): WrappedKey {
  const x = toX509(certPem, what);
  const pub = x.publicKey;
  if (pub.asymmetricKeyType !== 'rsa') {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: its key is ${pub.asymmetricKeyType ?? 'unknown'}, a key can be wrapped only for an RSA certificate key`,
    );
  }
  return {
    certificateSerial: normalizeSerial(x.serialNumber),
    wrapped: publicEncrypt({ key: pub, ...OAEP }, key),
  };
}

/**
 * Unwrap with the machine's private key. Any failure (a damaged or altered wrapped key, a key wrapped
 * for another machine or another certificate's key) is one 'corrupt' error: OAEP does not say which.
 */
export function unwrapKey(wrapped: Uint8Array, keyPem: string, what: string, expectBytes: number): Buffer {
  let key: Buffer;
  try {
    key = privateDecrypt({ key: createPrivateKey(keyPem), ...OAEP }, wrapped);
  } catch (e) {
    throw new DepotsyncError(
      'corrupt',
      `${what}: the wrapped key does not unwrap with this machine's private key (RSA-OAEP failed)`,
      {
        hint: 'the wrapped key was damaged or altered, or it was made for another key; export the file again for this machine',
        cause: e,
      },
    );
  }
  if (key.length !== expectBytes) {
    throw new DepotsyncError(
      'corrupt',
      `${what}: the unwrapped key is ${key.length} bytes, expected ${expectBytes}`,
      { hint: 'export the file again for this machine' },
    );
  }
  return key;
}
