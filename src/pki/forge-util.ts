import {
  createPrivateKey,
  generateKeyPair,
  generateKeyPairSync,
  privateEncrypt,
  randomBytes,
  constants,
} from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { DepotsyncError } from '../errors.js';

/**
 * Glue between node-forge (which builds X.509 structures) and node:crypto (which does the RSA work).
 * forge's pure-JS RSA key generation takes seconds for 3072 bits and its private-key operation is slow,
 * so keys are made by node:crypto and signatures are made by node:crypto through a tiny signer shim.
 */

export interface KeyPairPem {
  keyPem: string;
  publicKeyPem: string;
}

export function generateRsaKeySync(modulusLength: 2048 | 3072): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

const generateKeyPairAsync = promisify(generateKeyPair);

export async function generateRsaKey(modulusLength: 2048 | 3072): Promise<KeyPairPem> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

/** DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2 note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * A stand-in for a forge private key whose `sign(md)` makes an RSASSA-PKCS1-v1_5 SHA-256 signature with
 * node:crypto. forge digests the to-be-signed bytes itself and hands us the message digest object.
 */
export function nodeSigner(keyPem: string): forge.pki.rsa.PrivateKey {
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType !== 'rsa') {
    throw new DepotsyncError(
      'bad-certificate',
      `signing key: expected an RSA key, got ${key.asymmetricKeyType ?? 'unknown'}`,
    );
  }
  const sign = (md: forge.md.MessageDigest): forge.Bytes => {
    if (md.algorithm !== 'sha256')
      throw new DepotsyncError('internal', `signer: only SHA-256 is supported, got ${md.algorithm}`);
    const digest = Buffer.from(md.digest().getBytes(), 'binary');
    const sig = privateEncrypt(
      { key, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([SHA256_DIGEST_INFO, digest]),
    );
    return sig.toString('binary');
  };
  return { sign } as unknown as forge.pki.rsa.PrivateKey;
}

/**
 * A random positive serial of 128 bits as minimal DER INTEGER content in hex (RFC 5280 §4.1.2.2: unique,
 * positive, at most 20 octets; CA/B BR: at least 64 random bits). The first octet is non-zero so the
 * encoding is minimal; a 00 is prepended when the high bit is set so the INTEGER stays positive.
 */
export function randomSerialHex(): string {
  let bytes = randomBytes(16);
  while (bytes[0] === 0) bytes = randomBytes(16);
  const hex = bytes.toString('hex');
  return (bytes[0] ?? 0) >= 0x80 ? `00${hex}` : hex;
}

export function publicKeyFromPem(pem: string, what: string): forge.pki.rsa.PublicKey {
  try {
    return forge.pki.publicKeyFromPem(pem);
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `${what}: not an RSA public key (${(e as Error).message})`, {
      cause: e,
    });
  }
}

export const DAY_MS = 86_400_000;

export function validity(
  now: Date,
  validDays: number,
  override?: { notBefore?: Date; notAfter?: Date },
): { notBefore: Date; notAfter: Date } {
  // Back-date by 5 minutes so a peer whose clock runs a little behind still accepts a fresh certificate.
  const notBefore = override?.notBefore ?? new Date(now.getTime() - 5 * 60_000);
  const notAfter = override?.notAfter ?? new Date(now.getTime() + validDays * DAY_MS);
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new DepotsyncError(
      'bad-input',
      `certificate validity: notAfter ${notAfter.toISOString()} is not after notBefore ${notBefore.toISOString()}`,
    );
  }
  return { notBefore, notAfter };
}

/**
 * A subject attribute encoded as UTF8String: forge defaults to PrintableString, which cannot hold '_'
 * (allowed in machine names), and strict parsers reject such a certificate.
 */
export function utf8Field(name: string, value: string): forge.pki.CertificateField {
  return { name, value, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class };
}
