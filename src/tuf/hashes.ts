import { createHash, timingSafeEqual } from 'node:crypto';
import { DepotsyncError } from '../errors.js';

/** The digests TUF metadata may list for a file, with their hex lengths. */
const ALGORITHMS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

export const HASH_ALGORITHMS: readonly string[] = Object.keys(ALGORITHMS);

/**
 * Check bytes against EVERY hash a signed file entry lists (checking only the strongest or the first
 * would let a mirror pick the one it can forge). An algorithm this client does not know refuses the
 * file: it cannot be verified. `what` names the file and `parent` the metadata that listed it.
 */
export function checkHashes(
  bytes: Uint8Array,
  hashes: Readonly<Record<string, string>>,
  what: string,
  parent: string,
): void {
  const entries = Object.entries(hashes);
  for (const [algo, want] of entries) {
    const hexLen = Object.prototype.hasOwnProperty.call(ALGORITHMS, algo) ? ALGORITHMS[algo] : undefined;
    if (hexLen === undefined) {
      throw new DepotsyncError(
        'bad-metadata',
        `${what}: ${parent} lists a ${JSON.stringify(algo)} hash, an algorithm this client does not support`,
        {
          hint: `supported hash algorithms: ${HASH_ALGORITHMS.join(', ')}`,
        },
      );
    }
    const got = createHash(algo).update(bytes).digest();
    const ok =
      typeof want === 'string' &&
      want.length === hexLen &&
      /^[0-9a-fA-F]+$/.test(want) &&
      timingSafeEqual(got, Buffer.from(want, 'hex'));
    if (!ok) {
      throw new DepotsyncError(
        'hash-mismatch',
        `${what}: ${algo} ${got.toString('hex')} does not match the one in ${parent}`,
        {
          hint: 'the source serves a file that is not the one that was signed; retry or use another source',
        },
      );
    }
  }
}
