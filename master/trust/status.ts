import { existsSync } from 'node:fs';
import type { MasterContext } from '../context.js';
import { onlineKeyPath, readKeyFile, rootKeyFiles } from '../keys.js';
import { masterFingerprint, pendingRootRequest } from './rotate.js';
import { storedRoles, type StoredRole } from './stored.js';

/**
 * `master keys status`: every role's keys, threshold and expiry, and which private keys are on the master.
 */
export interface KeyRoleStatus extends StoredRole {
  daysLeft: number;
  /** How many of the role's private keys are in M/keys (root: may be 0, kept offline). */
  keysOnMaster: number;
  /** The role that signs this role's metadata (bins are delegated by targets). */
  delegatedBy: 'root' | 'targets';
}

export interface KeysStatus {
  master: string;
  rootFingerprint: string;
  /** 'automatic': a threshold of root keys is on the master and `master serve` renews the root. */
  rootRenewal: 'automatic' | 'offline';
  roles: KeyRoleStatus[];
  pendingRootRequest: ReturnType<typeof pendingRootRequest>;
}

export async function keysStatus(
  ctx: Pick<MasterContext, 'db' | 'layout' | 'config'>,
  nowMs: number,
): Promise<KeysStatus> {
  const roles = await storedRoles(ctx.db);
  const onMaster = (r: StoredRole): number => {
    const ids = new Set(r.keyids);
    if (r.role === 'root')
      return rootKeyFiles(ctx.layout.keysDir).filter((f) => ids.has(readKeyFile(f).keyid)).length;
    const file =
      r.role === 'bins' && !existsSync(onlineKeyPath(ctx.layout, 'bins'))
        ? onlineKeyPath(ctx.layout, 'targets')
        : onlineKeyPath(ctx.layout, r.role);
    return existsSync(file) && ids.has(readKeyFile(file).keyid) ? 1 : 0;
  };
  const out = roles.map((r) => ({
    ...r,
    daysLeft: Math.floor((Date.parse(r.expires) - nowMs) / 86_400_000),
    keysOnMaster: onMaster(r),
    delegatedBy: r.role === 'bins' ? ('targets' as const) : ('root' as const),
  }));
  const root = out.find((r) => r.role === 'root');
  return {
    master: ctx.config.name,
    rootFingerprint: await masterFingerprint(ctx),
    rootRenewal: root && root.keysOnMaster >= root.threshold ? 'automatic' : 'offline',
    roles: out,
    pendingRootRequest: pendingRootRequest(ctx),
  };
}

export function keysStatusLines(s: KeysStatus): string {
  const lines = [
    `master ${s.master}, root fingerprint ${s.rootFingerprint}`,
    'role       version  threshold  keys (on master)               expires',
  ];
  for (const r of s.roles) {
    const keys = r.keyids.map((k) => k.slice(0, 8)).join(',');
    lines.push(
      `${r.role.padEnd(10)} ${String(r.version).padStart(7)}  ${`${r.threshold} of ${r.keyids.length}`.padEnd(9)}  ${`${keys} (${r.keysOnMaster})`.padEnd(30)} ${r.expires} (${r.daysLeft} days)`,
    );
  }
  lines.push(
    s.rootRenewal === 'automatic'
      ? 'root renewal: automatic (root keys on the master; master serve renews before expiry)'
      : 'root renewal: offline (depotsync master root renew writes a signing request)',
  );
  if (s.pendingRootRequest) {
    const p = s.pendingRootRequest;
    lines.push(
      `pending root signing request: root v${p.rootVersion} (${p.purpose}), digest ${p.digest}, made ${p.createdAt}`,
    );
  }
  return lines.join('\n');
}
