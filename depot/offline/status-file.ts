import { createPrivateKey, sign } from 'node:crypto';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { removeStaleTempFiles, writeFileAtomic } from '../../src/fs/atomic-write.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { encodeStatusFile, OFFLINE_FILE_FORMAT, STATUS_FILE_TYPE } from '../../src/wire/offline-files.js';
import type { DepotCredentials } from '../depot.js';
import type { DepotDb } from '../db/depot-db.js';
import type { DepotLayout } from '../layout.js';
import { buildStatusReport, freeDiskBytes } from '../sync/status-report.js';
import { currentWindow } from './window.js';

export interface StatusFileResult {
  file: string;
  sequence: number;
}

/**
 * Write the depot's status report into D/outbox/, signed with its machine key, so it
 * can travel to the master (`master import-status`). Same report as online (generation served, the
 * validity window's end, chunks and bytes imported, scrub results, last error, free disk); the
 * sequence number is strictly increasing, so the master ignores a replayed or older file; older status
 * files of this depot are removed from the outbox.
 */
export async function writeStatusFile(
  d: { db: DepotDb; layout: DepotLayout; creds: DepotCredentials; name: string },
  extra: { chunks: number; bytes: number; now: Date },
): Promise<StatusFileResult> {
  const report = buildStatusReport(d.db, {
    chunksFetched: extra.chunks,
    bytesFetched: extra.bytes,
    freeDiskBytes: await freeDiskBytes(d.layout.dir),
    now: extra.now,
  });
  const window = currentWindow(d.db);
  if (window) report.validUntil = window.validUntil;
  const key = createPrivateKey(d.creds.keyPem);
  const bytes = encodeStatusFile(
    {
      _type: STATUS_FILE_TYPE,
      formatVersion: OFFLINE_FILE_FORMAT,
      machine: d.name,
      certSerial: certificateInfo(d.creds.certPem).serial,
      report,
    },
    (data) => sign('sha256', data, key),
  );
  await mkdir(d.layout.outbox, { recursive: true });
  const file = join(d.layout.outbox, `status-${d.name}-${String(report.sequence).padStart(8, '0')}.json`);
  await writeFileAtomic(file, bytes);
  // A newer report supersedes the older ones (the master ignores them anyway): the outbox keeps only
  // the newest, so weeks of scheduled runs do not pile up files to carry.
  const prefix = `status-${d.name}-`;
  // A writer killed mid-write left its temporary file: nobody else removes it.
  await removeStaleTempFiles(d.layout.outbox, prefix);
  for (const f of await readdir(d.layout.outbox)) {
    if (f.startsWith(prefix) && f.endsWith('.json') && join(d.layout.outbox, f) !== file)
      await unlink(join(d.layout.outbox, f)).catch(() => undefined);
  }
  return { file, sequence: report.sequence };
}
