import { generateKeyPair, readPrivateKey, writePrivateKey, type KeyPair } from '../src/tuf/keys.js';
import type { OnlineSigners } from '../src/tuf/repository.js';
import type { MasterLayout } from './layout.js';

export const TUF_ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;
export type TufRole = (typeof TUF_ROLES)[number];

/** Make the four role keys of a new master, written with mode 0600. */
export async function createRoleKeys(layout: MasterLayout): Promise<Record<TufRole, KeyPair>> {
  const out = {} as Record<TufRole, KeyPair>;
  for (const role of TUF_ROLES) {
    const pair = generateKeyPair();
    await writePrivateKey(layout.key(role), pair.privateKey);
    out[role] = pair;
  }
  return out;
}

/** The online signers (timestamp, snapshot, targets; bins are signed by the targets key). */
export async function loadOnlineSigners(layout: MasterLayout): Promise<OnlineSigners> {
  const [timestamp, snapshot, targets] = await Promise.all([
    readPrivateKey(layout.key('timestamp')),
    readPrivateKey(layout.key('snapshot')),
    readPrivateKey(layout.key('targets')),
  ]);
  return { timestamp: timestamp.signer, snapshot: snapshot.signer, targets: targets.signer };
}
