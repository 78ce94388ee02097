import type { Root, Snapshot, Timestamp } from '@tufjs/models';
import { own } from '../codec.js';
import { metadataFileName, metaError, type MetaContext } from '../context.js';
import {
  checkExactVersion,
  checkExpiry,
  checkMetaFile,
  topRoleKeys,
  verifyAndDecode,
  type Verified,
} from './checks.js';

export function snapshotFileName(timestamp: Timestamp): string {
  return metadataFileName('snapshot', timestamp.snapshotMeta.version);
}

/** Download cap for the snapshot: the length the timestamp signed, never more than the configured cap. */
export function snapshotMaxBytes(timestamp: Timestamp, capBytes: number): number {
  return Math.min(timestamp.snapshotMeta.length ?? capBytes, capBytes);
}

/** Client workflow 5.5 for a downloaded snapshot. */
export function verifySnapshot(
  root: Root,
  timestamp: Timestamp,
  trusted: Verified<Snapshot> | undefined,
  bytes: Uint8Array,
  opts: { maxBytes: number; now: Date },
): Verified<Snapshot> {
  const file = snapshotFileName(timestamp);
  const ctx: MetaContext = { role: 'snapshot', file };
  if (bytes.length > opts.maxBytes)
    throw metaError('too-large', ctx, `${bytes.length} bytes exceeds the limit of ${opts.maxBytes} bytes`);
  // 5.5.2 mix-and-match attack: exactly the snapshot the timestamp names.
  checkMetaFile(bytes, timestamp.snapshotMeta, ctx, 'timestamp.json');
  // 5.5.3 signed by a threshold of the root's snapshot keys.
  const fresh = verifyAndDecode(bytes, ctx, 'snapshot', opts.maxBytes, topRoleKeys(root, 'snapshot'));
  // 5.5.4 the version the timestamp names.
  checkExactVersion(fresh.md.signed.version, timestamp.snapshotMeta.version, ctx, 'timestamp.json');
  if (trusted) checkNoRollback(trusted.md.signed, fresh.md.signed, ctx);
  // 5.5.6 freeze attack.
  checkExpiry(fresh.md, ctx, opts.now);
  return fresh;
}

/**
 * 5.5.5 rollback attack: no targets file listed in the trusted snapshot may disappear or go back to an
 * older version (that would un-publish a fix or resurrect a withdrawn package).
 */
export function checkNoRollback(had: Snapshot, got: Snapshot, ctx: MetaContext): void {
  if (got.version < had.version)
    throw metaError(
      'version-rollback',
      ctx,
      `version ${got.version} is older than the trusted version ${had.version}`,
    );
  for (const [name, old] of Object.entries(had.meta)) {
    const now = own(got.meta, name);
    if (!now)
      throw metaError(
        'version-rollback',
        ctx,
        `${name} (version ${old.version} in the trusted snapshot) is no longer listed`,
      );
    if (now.version < old.version) {
      throw metaError(
        'version-rollback',
        ctx,
        `${name} version ${now.version} is older than the trusted version ${old.version}`,
      );
    }
  }
}

/** A stored snapshot: signatures only; it is the rollback baseline and, if current, the final one. */
export function loadStoredSnapshot(root: Root, bytes: Uint8Array, maxBytes: number): Verified<Snapshot> {
  return verifyAndDecode(
    bytes,
    { role: 'snapshot', file: 'stored snapshot.json' },
    'snapshot',
    maxBytes,
    topRoleKeys(root, 'snapshot'),
  );
}

/** The snapshot used for targets must be the one the timestamp names, and not expired. */
export function checkFinalSnapshot(snapshot: Verified<Snapshot>, timestamp: Timestamp, now: Date): void {
  const ctx: MetaContext = { role: 'snapshot', file: snapshot.file };
  checkExactVersion(snapshot.md.signed.version, timestamp.snapshotMeta.version, ctx, 'timestamp.json');
  checkExpiry(snapshot.md, ctx, now);
}
