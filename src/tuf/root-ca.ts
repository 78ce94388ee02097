import { X509Certificate } from 'node:crypto';
import type { Root } from '@tufjs/models';
import { DepotsyncError } from '../errors.js';

/**
 * The master's CA certificate, carried inside the signed root metadata. Every machine is given the
 * SHA-256 of `1.root.json`, so the root authenticates the CA too: a new depot or agent fetches the root
 * first, checks its fingerprint, and then talks TLS only to a server of that CA, so the one-time token is
 * never sent to, and no certificate accepted from, a machine in the middle with a CA of its own.
 * Root rotations carry the field over (src/tuf/repository/rotate.ts).
 */
export const ROOT_CA_FIELD = 'x-depotsync-ca-certificate';

/** The unrecognized root field that names `caPem` (for TufRepository.create). */
export function rootCaFields(caPem: string): Record<string, string> {
  return { [ROOT_CA_FIELD]: caPem };
}

/** The CA certificate a verified root names, or undefined when it names none (a master made earlier). */
export function caCertificateOfRoot(root: Root): string | undefined {
  const v = root.unrecognizedFields?.[ROOT_CA_FIELD];
  if (v === undefined) return undefined;
  try {
    if (typeof v !== 'string') throw new Error('not a string');
    const cert = new X509Certificate(v);
    if (!cert.ca) throw new Error('not a CA certificate');
  } catch (e) {
    throw new DepotsyncError(
      'bad-metadata',
      `root v${root.version}: ${ROOT_CA_FIELD} is not a CA certificate (${(e as Error).message})`,
    );
  }
  return v;
}
