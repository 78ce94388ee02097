import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { Key } from '@tufjs/models';
import { DepotsyncError, type ErrorCode } from '../errors.js';
import { metaError } from './context.js';
import type { Envelope } from './envelope.js';
import { publicKeyObject, type TufPublicKey } from './keys.js';

/** What a delegator says about a role: its key table, the role's keyids and threshold. */
export interface RoleKeys {
  readonly keys: Readonly<Record<string, Key>>;
  readonly keyids: readonly string[];
  readonly threshold: number;
}

const keyCache = new Map<string, KeyObject>();

function nodeKey(key: Key, what: string): KeyObject {
  const hex = key.keyVal.public ?? '';
  const cacheId = `${key.keyType}/${key.scheme}/${hex}`;
  let obj = keyCache.get(cacheId);
  if (!obj) {
    obj = publicKeyObject({ keytype: key.keyType, scheme: key.scheme, keyval: { public: hex } } as TufPublicKey, what);
    if (keyCache.size >= 4096) keyCache.clear();
    keyCache.set(cacheId, obj);
  }
  return obj;
}

const short = (keyid: string) => (keyid.length > 8 ? `${keyid.slice(0, 8)}…` : keyid);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Verify an envelope's signatures against the delegator's keys and threshold, with node:crypto only.
 * Only DISTINCT keys that are listed for the role AND whose signature verifies count: a keyid listed
 * twice, the same key signing twice, or one public key under two keyids count once (threshold
 * inflation); signatures by keys not listed are ignored (arbitrary-key attack). Returns the keyids
 * that counted. Nothing of `signed` beyond `_type` has been interpreted when this runs.
 *
 * Error code when the threshold is not met: `bad-signature` if a listed key's signature did not verify
 * (tampering), else `unknown-key` if no listed key signed but others did, else `threshold-not-met`.
 */
export function verifyThreshold(env: Envelope, role: RoleKeys): string[] {
  const { ctx } = env;
  if (!Number.isSafeInteger(role.threshold) || role.threshold < 1) {
    // A threshold of 0 would accept unsigned metadata.
    throw metaError('bad-metadata', ctx, `the delegating role's threshold must be a positive integer, got ${JSON.stringify(role.threshold)}`);
  }
  const listed = new Set(role.keyids);
  const counted = new Set<string>();
  const countedPublic = new Set<string>();
  const unknown: string[] = [];
  const invalid: string[] = [];
  let duplicates = 0;
  for (const s of env.signatures) {
    const key = listed.has(s.keyid) ? role.keys[s.keyid] : undefined;
    if (!key) {
      unknown.push(s.keyid);
      continue;
    }
    const pub = `${key.keyType}/${key.keyVal.public ?? ''}`;
    if (counted.has(s.keyid) || countedPublic.has(pub)) {
      duplicates++;
      continue;
    }
    let ok = false;
    try {
      const obj = nodeKey(key, `${ctx.role} key ${short(s.keyid)}`);
      ok = /^[0-9a-f]{128}$/.test(s.sig) && cryptoVerify(null, env.signedBytes, obj, Buffer.from(s.sig, 'hex'));
    } catch (e) {
      if (!(e instanceof DepotsyncError)) throw e;
      ok = false; // unsupported or malformed key: this signature cannot count
    }
    if (ok) {
      counted.add(s.keyid);
      countedPublic.add(pub);
    } else {
      invalid.push(s.keyid);
    }
  }
  if (counted.size >= role.threshold) return [...counted];

  const details: string[] = [];
  if (invalid.length) details.push(`${plural(invalid.length, 'invalid signature')} by ${invalid.map(short).join(', ')}`);
  if (unknown.length) details.push(`${plural(unknown.length, 'signature')} by unknown key${unknown.length === 1 ? '' : 's'} ${unknown.map(short).join(', ')}`);
  if (duplicates) details.push(`${plural(duplicates, 'duplicate signature')} counted once`);
  if (!env.signatures.length) details.push('no signatures');
  const code: ErrorCode = invalid.length ? 'bad-signature' : counted.size === 0 && unknown.length ? 'unknown-key' : 'threshold-not-met';
  throw metaError(code, ctx, `threshold not met: ${counted.size} of ${role.threshold} valid signatures (${details.join('; ')})`, {
    hint: 'the metadata was not signed by the keys the trusted root names; it may be forged or from another repository',
  });
}
