import type { Root, Timestamp } from '@tufjs/models';
import { metaError, type MetaContext } from '../context.js';
import { checkExpiry, topRoleKeys, verifyAndDecode, type Verified } from './checks.js';

export const TIMESTAMP_FILE = 'timestamp.json';

/**
 * Client workflow 5.4. Returns the timestamp to trust from now on: the new one, or the trusted one
 * when the new one has the same version (nothing changed on the repository).
 */
export function verifyTimestamp(
  root: Root,
  trusted: Verified<Timestamp> | undefined,
  bytes: Uint8Array,
  opts: { maxBytes: number; now: Date },
): { timestamp: Verified<Timestamp>; changed: boolean } {
  const ctx: MetaContext = { role: 'timestamp', file: TIMESTAMP_FILE };
  // 5.4.2 arbitrary-software / forgery: signed by a threshold of the root's timestamp keys.
  const fresh = verifyAndDecode(bytes, ctx, 'timestamp', opts.maxBytes, topRoleKeys(root, 'timestamp'));
  let result = fresh;
  let changed = true;
  if (trusted) {
    const had = trusted.md.signed;
    const got = fresh.md.signed;
    // 5.4.3.1 rollback attack: never accept an older timestamp.
    if (got.version < had.version) {
      throw metaError(
        'version-rollback',
        ctx,
        `version ${got.version} is older than the trusted version ${had.version}`,
        {
          hint: 'the source serves old metadata; try another source',
        },
      );
    }
    // 5.4.3.2 rollback attack: the snapshot it names must not be older than the one trusted.
    if (got.snapshotMeta.version < had.snapshotMeta.version) {
      throw metaError(
        'version-rollback',
        ctx,
        `names snapshot version ${got.snapshotMeta.version}, older than the trusted ${had.snapshotMeta.version}`,
      );
    }
    // A generation (snapshot version) is signed once: the same version under another length or SHA-256
    // is a second catalog under a number already used (two signers, or a restored master that
    // published again), and neither may silently replace the other.
    const a = had.snapshotMeta;
    const b = got.snapshotMeta;
    if (
      b.version === a.version &&
      (a.length !== b.length || (a.hashes?.sha256 ?? '') !== (b.hashes?.sha256 ?? ''))
    ) {
      throw metaError(
        'version-rollback',
        ctx,
        `names snapshot version ${b.version} (generation ${b.version}) with other content than the trusted one (length ${b.length ?? '?'}, SHA-256 ${b.hashes?.sha256 ?? '?'})`,
        {
          hint: 'a generation number was reused with different content; this source is not consistent with what was already verified, try another one and tell the master operator',
        },
      );
    }
    if (got.version === had.version) {
      result = trusted;
      changed = false;
    }
  }
  // 5.4.4 freeze attack: the timestamp we keep must not be expired.
  checkExpiry(result.md, ctx, opts.now);
  return { timestamp: result, changed };
}

/** A stored timestamp: signatures only (rollback baseline); expiry is judged on the final one. */
export function loadStoredTimestamp(root: Root, bytes: Uint8Array, maxBytes: number): Verified<Timestamp> {
  return verifyAndDecode(
    bytes,
    { role: 'timestamp', file: `stored ${TIMESTAMP_FILE}` },
    'timestamp',
    maxBytes,
    topRoleKeys(root, 'timestamp'),
  );
}
