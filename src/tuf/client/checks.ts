import type { MetaFile, Metadata, MetadataKind, Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { metaError, type MetaContext } from '../context.js';
import { decodeSigned, parseEnvelope } from '../envelope.js';
import { checkHashes } from '../hashes.js';
import { verifyThreshold, type RoleKeys } from '../verify.js';

type Model = Root | Timestamp | Snapshot | Targets;

/** Metadata the client verified, with the exact bytes (persisted and re-served byte for byte). */
export interface Verified<T extends Model> {
  readonly md: Metadata<T>;
  readonly bytes: Uint8Array;
  readonly file: string;
}

export function topRoleKeys(root: Root, role: string): RoleKeys {
  const r = root.roles[role];
  return { keys: root.keys, keyids: r?.keyIDs ?? [], threshold: r?.threshold ?? 0 };
}

/** Size cap, envelope, signatures by the delegator's keys, then (only then) the typed schema. */
export function verifyAndDecode<K extends 'root' | 'timestamp' | 'snapshot' | 'targets'>(
  bytes: Uint8Array,
  ctx: MetaContext,
  kind: K,
  maxBytes: number,
  keys: RoleKeys,
): Verified<{ root: Root; timestamp: Timestamp; snapshot: Snapshot; targets: Targets }[K]> {
  const env = parseEnvelope(bytes, ctx, { maxBytes, type: kind as MetadataKind });
  const kept = verifyThreshold(env, keys);
  return { md: decodeSigned(env, kind, kept), bytes, file: ctx.file };
}

/** Freeze attack: metadata past its expiry is refused, judged at the update's fixed start time. */
export function checkExpiry(md: Metadata<Model>, ctx: MetaContext, now: Date): void {
  if (now.getTime() >= Date.parse(md.signed.expires)) {
    throw metaError(
      'expired',
      ctx,
      `version ${md.signed.version} expired at ${md.signed.expires} (now ${now.toISOString()})`,
      {
        hint: "the source serves stale metadata (a freeze attack, or the master stopped re-signing); check the master, or this computer's clock",
      },
    );
  }
}

/** Mix-and-match attack: the file must be the exact one (length, every listed hash) its parent names. */
export function checkMetaFile(bytes: Uint8Array, meta: MetaFile, ctx: MetaContext, parent: string): void {
  if (meta.length !== undefined && bytes.length !== meta.length) {
    throw metaError(
      'hash-mismatch',
      ctx,
      `length ${bytes.length} does not match ${meta.length} in ${parent}`,
      {
        hint: 'the source mixes files of different generations; retry or use another source',
      },
    );
  }
  if (meta.hashes) checkHashes(bytes, meta.hashes, `${ctx.role} metadata ${ctx.file}`, parent);
}

/** Rollback attack: a version below the expected one; anything else but equal is malformed. */
export function checkExactVersion(got: number, expected: number, ctx: MetaContext, parent: string): void {
  if (got < expected)
    throw metaError(
      'version-rollback',
      ctx,
      `version ${got} is older than version ${expected} named by ${parent}`,
    );
  if (got !== expected)
    throw metaError('bad-metadata', ctx, `version ${got} is not version ${expected} named by ${parent}`);
}
