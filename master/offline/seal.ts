import { randomBytes } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import { wrapKeyForCertificate } from '../../src/pki/key-wrap.js';
import {
  BUNDLE_SEAL_ALGORITHM,
  SEAL_DEFAULTS,
  SEAL_LIMITS,
  type BundleEncryption,
} from '../../src/wire/bundle-crypto.js';
import type { Machine } from '../db/machines.js';

export interface BundleSeal {
  /** The bundle's content key: random, used for this one bundle, never stored. */
  key: Buffer;
  encryption: BundleEncryption;
}

/**
 * `master export --encrypt`: a fresh random 256-bit content key, wrapped with
 * RSA-OAEP-SHA256 for the public key of the depot's current certificate on record, so only that depot
 * (the holder of its machine key) can read the bundle. The key lives in memory for the export only.
 */
export function sealFor(machine: Machine, blockBytes: number = SEAL_DEFAULTS.blockBytes): BundleSeal {
  if (
    !Number.isSafeInteger(blockBytes) ||
    blockBytes < SEAL_LIMITS.blockBytesMin ||
    blockBytes > SEAL_LIMITS.blockBytesMax
  ) {
    throw new DepotsyncError(
      'usage',
      `master export: seal block size must be from ${SEAL_LIMITS.blockBytesMin} to ${SEAL_LIMITS.blockBytesMax} bytes, got ${blockBytes}`,
    );
  }
  if (!machine.certPem) {
    throw new DepotsyncError(
      'not-found',
      `master export --encrypt: depot ${machine.name} has no certificate on record, so there is no key to encrypt the bundle for`,
      {
        hint: 'the depot gets its certificate when its enrollment completes (online: it fetches it after approval; air-gapped: master approve --request, then depot import of the reply); export without --encrypt until then',
      },
    );
  }
  const key = randomBytes(SEAL_LIMITS.keyBytes);
  const wrapped = wrapKeyForCertificate(
    key,
    machine.certPem,
    `certificate of depot ${machine.name} on record`,
  );
  return {
    key,
    encryption: {
      algorithm: BUNDLE_SEAL_ALGORITHM,
      certificateSerial: wrapped.certificateSerial,
      wrappedKey: wrapped.wrapped.toString('base64'),
      blockBytes,
    },
  };
}
