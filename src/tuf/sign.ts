import { canonicalize } from '../content/canonical-json.js';
import {
  Signature,
  type Metadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { metadataToJSON, signedToJSON } from './codec.js';
import type { Signer } from './keys.js';

export type AnyMetadata = Metadata<Root> | Metadata<Timestamp> | Metadata<Snapshot> | Metadata<Targets>;

/** The bytes a TUF signature is over: the canonical JSON (OLPC) of the `signed` object. */
export function canonicalSignedBytes(md: AnyMetadata): Buffer {
  return canonicalize(signedToJSON(md.signed));
}

/** Add one signature per signer (replacing an older signature by the same key). */
export function signMetadata(md: AnyMetadata, signers: readonly Signer[]): void {
  const bytes = canonicalSignedBytes(md);
  for (const s of signers) {
    md.signatures[s.keyid] = new Signature({ keyID: s.keyid, sig: s.sign(bytes).toString('hex') });
  }
}

/**
 * The file bytes: compact JSON of the whole Metadata, as `md.toJSON()` gives
 * (what mirrors serve byte for byte).
 */
export function serializeMetadata(md: AnyMetadata): Uint8Array {
  return Buffer.from(JSON.stringify(metadataToJSON(md as never)), 'utf8');
}
