import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../src/fs/atomic-write.js';
import type { Logger } from '../src/log.js';
import type { Ca } from '../src/pki/ca.js';
import { createRevocationList, verifyRevocationList } from '../src/wire/revocations.js';
import type { MasterConfig } from './config.js';
import type { MasterDb } from './db/database.js';
import { revokedSerials } from './db/machines.js';
import type { MasterLayout } from './layout.js';

/** Where the master keeps the current signed revocation list (served at /v1/revocations.json). */
export function revocationListPath(layout: MasterLayout): string {
  return join(layout.sharedDir, 'revocations.json');
}

export function readRevocationList(layout: MasterLayout): Buffer | undefined {
  const p = revocationListPath(layout);
  return existsSync(p) ? readFileSync(p) : undefined;
}

/**
 * Sign a new revocation list from the machine table (revoked certificates, and blocked machines'
 * certificates so that every depot refuses them too) with the next version number.
 */
export async function publishRevocationList(ctx: RevocationContext, versionStep = 1): Promise<Buffer> {
  return await publishRevocationListSync(ctx, versionStep);
}

type RevocationContext = { layout: MasterLayout; config: MasterConfig; ca: Ca; db: MasterDb; log: Logger };

/** The same, synchronously (approving a blocked machine again takes it off the list in the same call). */
export async function publishRevocationListSync(ctx: RevocationContext, versionStep = 1): Promise<Buffer> {
  const current = readRevocationList(ctx.layout);
  let version = 1;
  if (current) {
    const prev = verifyRevocationList(current, ctx.ca.certPem, { now: new Date(0) });
    // A restored master skips ahead (master/backup/epoch.ts): depots refuse an older list.
    version = prev.version + versionStep;
  }
  const serials = await revokedSerials(ctx.db, { includeBlocked: true });
  const bytes = createRevocationList(ctx.ca, serials, version, {
    validDays: ctx.config.revocationListExpiryDays,
  });
  writeFileAtomicSync(revocationListPath(ctx.layout), bytes);
  ctx.log.info({ version, serials: serials.length }, 'revocation list signed');
  return bytes;
}

/**
 * The version of the list on disk, re-read only when the file was replaced (written atomically, by this
 * process or by `master revoke`/`block`/`approve` in another): the event streams poll it each second.
 */
export function revocationListVersionReader(layout: MasterLayout): () => number | undefined {
  let cached: { stamp: string; version: number | undefined } | undefined;
  return () => {
    const st = statSync(revocationListPath(layout), { throwIfNoEntry: false });
    const stamp = st ? `${st.ino}:${st.mtimeMs}:${st.size}` : 'none';
    if (cached?.stamp !== stamp) {
      const bytes = readRevocationList(layout);
      const version = bytes
        ? (JSON.parse(bytes.toString('utf8')) as { signed?: { version?: unknown } }).signed?.version
        : undefined;
      cached = {
        stamp,
        version: typeof version === 'number' && Number.isSafeInteger(version) ? version : undefined,
      };
    }
    return cached.version;
  };
}
