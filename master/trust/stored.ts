import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from '../db/database.js';
import { binVersions, getMetadataFile, latestMetadata } from '../db/metadata.js';
import type { KeyRole } from '../keys.js';

/**
 * What the stored metadata says about each role (keys, threshold, version, expiry), read straight from
 * the master's database without any private key: for `keys status`, the expiry alerts and key-file
 * recovery. The files were verified when they were signed; nothing here trusts them further.
 */
export interface StoredRole {
  role: KeyRole;
  keyids: string[];
  threshold: number;
  /** The newest version (for bins: the lowest among the bins). */
  version: number;
  /** The earliest expiry (for bins: among all bins). */
  expires: string;
}

interface SignedDoc {
  version: number;
  expires: string;
  roles?: Record<string, { keyids: string[]; threshold: number }>;
  delegations?: { roles: { keyids: string[]; threshold: number }[] };
}

async function signedOf(db: MasterDb, role: string): Promise<SignedDoc> {
  const f = await latestMetadata(db, role);
  if (!f)
    throw new DepotsyncError('corrupt', `master database has no ${role} metadata`, {
      hint: 'restore the master directory from a backup',
    });
  return (JSON.parse(f.bytes.toString('utf8')) as { signed: SignedDoc }).signed;
}

// Bin files are immutable under their version-prefixed names: their expiry is read once.
const binExpiry = new Map<string, string>();

export async function storedRoles(db: MasterDb): Promise<StoredRole[]> {
  const root = await signedOf(db, 'root');
  const top = async (role: 'root' | 'targets' | 'snapshot' | 'timestamp'): Promise<StoredRole> => {
    const s = role === 'root' ? root : await signedOf(db, role);
    const r = root.roles?.[role];
    return {
      role,
      keyids: r?.keyids ?? [],
      threshold: r?.threshold ?? 1,
      version: s.version,
      expires: s.expires,
    };
  };
  const targets = await signedOf(db, 'targets');
  const delegated = targets.delegations?.roles[0];
  let expires = '';
  let version = Number.MAX_SAFE_INTEGER;
  for (const b of await binVersions(db)) {
    const name = `${b.version}.${b.name}.json`;
    let e = binExpiry.get(name);
    if (e === undefined) {
      const f = await getMetadataFile(db, name);
      if (!f) continue;
      e = (JSON.parse(f.bytes.toString('utf8')) as { signed: SignedDoc }).signed.expires;
      binExpiry.set(name, e);
    }
    if (!expires || e < expires) expires = e;
    version = Math.min(version, b.version);
  }
  const bins: StoredRole = {
    role: 'bins',
    keyids: delegated?.keyids ?? [],
    threshold: delegated?.threshold ?? 1,
    version: version === Number.MAX_SAFE_INTEGER ? 0 : version,
    expires,
  };
  return [await top('root'), await top('targets'), bins, await top('snapshot'), await top('timestamp')];
}

/** The keyids the stored metadata names for `role`. */
export async function namedKeyIds(db: MasterDb, role: KeyRole): Promise<string[]> {
  if (role === 'bins') return (await signedOf(db, 'targets')).delegations?.roles[0]?.keyids ?? [];
  return (await signedOf(db, 'root')).roles?.[role]?.keyids ?? [];
}

/** The current root's file bytes and version. */
export async function storedRoot(db: MasterDb): Promise<{ bytes: Buffer; version: number }> {
  const f = await latestMetadata(db, 'root');
  if (!f)
    throw new DepotsyncError('corrupt', 'master database has no root metadata', {
      hint: 'restore the master directory from a backup',
    });
  return { bytes: f.bytes, version: f.version };
}
