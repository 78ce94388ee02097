import type { MetadataKind, Root } from '@tufjs/models';
import { canonicalize } from '../content/canonical-json.js';
import { DepotsyncError } from '../errors.js';
import { topRoleKeys } from '../tuf/client/checks.js';
import { parseEnvelope } from '../tuf/envelope.js';
import type { Signer } from '../tuf/keys.js';
import { verifyThreshold } from '../tuf/verify.js';
import { Fields } from './decode.js';
import { MACHINE_NAME_PATTERN } from './enroll.js';

/**
 * The validity window of an offline bundle, as a small document of its own: the master
 * signs it with its TUF timestamp key(s), the bundle carries it as the section `validity-window.json`,
 * the importing depot keeps it, and serves it to its agents at `GET /v1/validity-window` (mutual TLS).
 * It says: "generation G with timestamp version T, as exported at issuedAt, may be used by depot NAME and
 * by the agents it serves until validUntil". An agent uses it only to accept metadata from THAT depot
 * (its TLS certificate names it) of exactly that generation; every other machine still refuses expired
 * metadata (freeze protection stays in force everywhere else).
 */
export const VALIDITY_WINDOW_TYPE = 'depotsync-validity-window';
export const VALIDITY_WINDOW_FORMAT = 1;
export const VALIDITY_WINDOW_SECTION = 'validity-window.json';
/** About 400 bytes signed; the cap leaves room for a threshold of several signatures. */
export const VALIDITY_WINDOW_MAX_BYTES = 16 * 1024;

export interface ValidityWindow {
  _type: typeof VALIDITY_WINDOW_TYPE;
  formatVersion: number;
  /** The machine name of the depot the window is for. */
  depot: string;
  /** The snapshot version (generation) and the timestamp version the window covers. */
  generation: number;
  timestampVersion: number;
  /** When the master exported it: the metadata is judged as of this time while the window is open. */
  issuedAt: string;
  validUntil: string;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function encodeValidityWindow(w: ValidityWindow, signers: readonly Signer[]): Buffer {
  const data = canonicalize(w);
  const signatures = signers.map((s) => ({ keyid: s.keyid, sig: s.sign(data).toString('hex') }));
  return Buffer.from(JSON.stringify({ signed: w, signatures }), 'utf8');
}

/**
 * Decode (size cap, envelope, `_type`), verify a threshold of the TIMESTAMP keys of `root` (the root the
 * caller trusts), and only then read the fields. Threats: a forged or altered window (indefinite freeze),
 * a TUF metadata file or a bundle header passed off as a window (wrong-type confusion, by `_type`).
 */
export function verifyValidityWindow(bytes: Uint8Array, root: Root, what: string): ValidityWindow {
  const envelope = parseEnvelope(
    bytes,
    { role: 'validity window', file: what },
    { maxBytes: VALIDITY_WINDOW_MAX_BYTES, type: VALIDITY_WINDOW_TYPE as unknown as MetadataKind },
  );
  try {
    verifyThreshold(envelope, topRoleKeys(root, 'timestamp'));
  } catch (e) {
    const err = e as DepotsyncError;
    throw new DepotsyncError(
      err.code,
      `${what}: not signed by the master's timestamp key (root v${root.version}): ${err.message}`,
      {
        hint: 'the validity window was forged, altered, or comes from another master',
        cause: e,
      },
    );
  }
  const f = Fields.of(what, envelope.signed);
  const w: ValidityWindow = {
    _type: VALIDITY_WINDOW_TYPE,
    formatVersion: f.int('formatVersion', { min: 1, max: VALIDITY_WINDOW_FORMAT }),
    depot: f.string('depot', { max: 64, pattern: MACHINE_NAME_PATTERN }),
    generation: f.int('generation', { min: 1 }),
    timestampVersion: f.int('timestampVersion', { min: 1 }),
    issuedAt: f.string('issuedAt', { pattern: ISO }),
    validUntil: f.string('validUntil', { pattern: ISO }),
  };
  f.done();
  if (Date.parse(w.validUntil) <= Date.parse(w.issuedAt)) {
    throw new DepotsyncError(
      'bad-metadata',
      `${what}: validUntil ${w.validUntil} is not after issuedAt ${w.issuedAt}`,
    );
  }
  return w;
}
