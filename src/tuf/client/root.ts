import { createHash, timingSafeEqual } from 'node:crypto';
import { MetadataKind, type Root } from '@tufjs/models';
import { DepotsyncError } from '../../errors.js';
import { metaError, type MetaContext } from '../context.js';
import { decodeSigned, parseEnvelope } from '../envelope.js';
import { verifyThreshold } from '../verify.js';
import { checkExpiry, topRoleKeys, type Verified } from './checks.js';

/** The pin an agent is provisioned with: hex SHA-256 of the exact bytes of `1.root.json`. */
export function rootFingerprint(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Wrong-root attack (trusting whichever server answers first): the bytes must hash to the pin. */
export function checkRootFingerprint(bytes: Uint8Array, fingerprint: string, file: string): void {
  const want = fingerprint.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) {
    throw new DepotsyncError(
      'bad-input',
      `root fingerprint must be 64 hex digits (SHA-256 of 1.root.json), got ${JSON.stringify(fingerprint)}`,
    );
  }
  const got = createHash('sha256').update(bytes).digest();
  if (!timingSafeEqual(got, Buffer.from(want, 'hex'))) {
    throw new DepotsyncError(
      'hash-mismatch',
      `root metadata ${file}: SHA-256 ${got.toString('hex')} does not match the pinned fingerprint ${want}`,
      {
        hint: 'this source does not serve the repository you trust; check the --fingerprint and the master URL',
      },
    );
  }
}

/**
 * A root trusted by the caller (pinned by fingerprint, or kept in the trusted store): it must still be
 * well formed and signed by a threshold of its own root keys.
 */
export function trustRoot(bytes: Uint8Array, file: string, maxBytes: number): Verified<Root> {
  const ctx: MetaContext = { role: 'root', file };
  const env = parseEnvelope(bytes, ctx, { maxBytes, type: MetadataKind.Root });
  const self = decodeSigned(
    env,
    'root',
    env.signatures.map((s) => s.keyid).filter((k, i, a) => a.indexOf(k) === i),
  ).signed;
  const kept = verifyThreshold(env, topRoleKeys(self, 'root'));
  return { md: decodeSigned(env, 'root', kept), bytes, file };
}

/**
 * Root N+1 (client workflow 5.3.4-5.3.5): signed by a threshold of the TRUSTED root's keys (so an
 * attacker cannot swap in their own root), then by a threshold of its OWN keys (so the new keys
 * really hold), and its version is exactly N+1 (rollback / skipped-version attack).
 */
export function verifyNextRoot(
  trusted: Verified<Root>,
  bytes: Uint8Array,
  file: string,
  maxBytes: number,
): Verified<Root> {
  const ctx: MetaContext = { role: 'root', file };
  const env = parseEnvelope(bytes, ctx, { maxBytes, type: MetadataKind.Root });
  const byOld = verifyThreshold(env, topRoleKeys(trusted.md.signed, 'root'));
  const candidate = decodeSigned(
    env,
    'root',
    env.signatures.map((s) => s.keyid).filter((k, i, a) => a.indexOf(k) === i),
  ).signed;
  const byNew = verifyThreshold(env, topRoleKeys(candidate, 'root'));
  const md = decodeSigned(env, 'root', new Set([...byOld, ...byNew]));
  const expected = trusted.md.signed.version + 1;
  if (md.signed.version < expected)
    throw metaError(
      'version-rollback',
      ctx,
      `version ${md.signed.version} is not newer than the trusted root v${trusted.md.signed.version}`,
    );
  if (md.signed.version !== expected)
    throw metaError(
      'bad-metadata',
      ctx,
      `version ${md.signed.version} is not ${expected} (the trusted root is v${trusted.md.signed.version})`,
    );
  return { md, bytes, file };
}

/**
 * After the root walk (5.3.10-5.3.11): the final root must not be expired (freeze), must use
 * consistent snapshots unless the caller reads plain TUF repositories (depotsync's mirrors serve
 * `{N}.role.json`), and the caller must forget the
 * trusted timestamp and snapshot if their keys changed (fast-forward attack recovery).
 */
export function finishRootWalk(
  start: Root,
  final: Verified<Root>,
  now: Date,
  requireConsistentSnapshot = true,
): { onlineKeysRotated: boolean } {
  const ctx: MetaContext = { role: 'root', file: final.file };
  checkExpiry(final.md, ctx, now);
  if (requireConsistentSnapshot && !final.md.signed.consistentSnapshot) {
    throw metaError(
      'bad-metadata',
      ctx,
      'consistent_snapshot is false; depotsync requires version-prefixed metadata names',
    );
  }
  const same = (role: string) => {
    const a = start.roles[role];
    const b = final.md.signed.roles[role];
    return (
      !!a &&
      !!b &&
      a.threshold === b.threshold &&
      a.keyIDs.length === b.keyIDs.length &&
      a.keyIDs.every((k) => b.keyIDs.includes(k))
    );
  };
  return { onlineKeysRotated: !(same('timestamp') && same('snapshot') && same('targets')) };
}
