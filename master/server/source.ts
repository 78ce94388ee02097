import { statSync } from 'node:fs';
import type { ReadApiSource } from '../../src/serve/read-api.js';
import type { MasterContext } from '../context.js';
import { getManifestBySha256 } from '../db/manifests.js';
import { getMetadataFile } from '../db/metadata.js';
import { readRevocationList, revocationListPath } from '../revocations.js';

/**
 * What the master serves through the shared read API: signed metadata byte for byte from the database
 * (a generation and its metadata commit in one transaction, so nothing half made is ever visible),
 * manifests as TUF targets under their consistent-snapshot names, the signed revocation list, chunks.
 */
export function masterReadSource(ctx: Pick<MasterContext, 'db' | 'store' | 'layout'>): ReadApiSource {
  let revocations: { bytes: Buffer | undefined; stamp: string } | undefined;

  return {
    async metadata(name) {
      return (await getMetadataFile(ctx.db, name))?.bytes;
    },
    async target(name) {
      // `{sha256}.{name}@{version}.json`: the hash picks the manifest; the rest must be the target path of a
      // version with exactly that manifest, so one manifest cannot be fetched under another package's name.
      const sha256 = name.slice(0, 64);
      const targetPath = name.slice(65);
      if (name[64] !== '.' || !/^[0-9a-f]{64}$/.test(sha256) || !targetPath.endsWith('.json'))
        return undefined;
      const manifest = await getManifestBySha256(ctx.db, sha256);
      if (!manifest) return undefined;
      // Read-only lookup of a version row; the catalog module has no "by sha256 and path" query.
      const version = await ctx.db.sql.get(
        'SELECT 1 AS one FROM package_versions WHERE manifest_sha256 = ? AND target_path = ? LIMIT 1',
        [sha256, targetPath],
      );
      return version ? manifest.bytes : undefined;
    },
    revocations() {
      // Re-read when the file was replaced (it is written atomically: new inode), by this process or by
      // `master revoke` in another one; a stat per request is cheap next to the TLS work.
      const st = statSync(revocationListPath(ctx.layout), { throwIfNoEntry: false });
      const stamp = st ? `${st.ino}:${st.mtimeMs}:${st.size}` : 'none';
      if (!revocations || revocations.stamp !== stamp)
        revocations = { bytes: readRevocationList(ctx.layout), stamp };
      return revocations.bytes;
    },
    async latestRootVersion() {
      const r = await ctx.db.sql.get<{ v: number | null }>(
        "SELECT MAX(version) AS v FROM metadata_files WHERE role = 'root'",
      );
      return r?.v ?? undefined;
    },
    chunks: ctx.store,
  };
}
