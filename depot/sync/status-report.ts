import { statfs } from 'node:fs/promises';
import type { Logger } from '../../src/log.js';
import type { HttpClient } from '../../src/net/client.js';
import { MAX_STATUS_BODY_BYTES, type StatusReport } from '../../src/wire/status.js';
import type { DepotDb } from '../db/depot-db.js';

/** Keys of the depot's kv table that the status report reads. */
export const KV = {
  lastSuccess: 'lastSuccess',
  lastError: 'lastError',
  targetGeneration: 'targetGeneration',
  bytesRemaining: 'bytesRemaining',
  scrubOk: 'scrubOk',
  scrubFailed: 'scrubFailed',
  scrubAt: 'scrubAt',
  lastReport: 'lastReport',
} as const;

export async function freeDiskBytes(dir: string): Promise<number> {
  try {
    const s = await statfs(dir);
    return Math.min(Number.MAX_SAFE_INTEGER, s.bavail * s.bsize);
  } catch {
    return 0;
  }
}

/** The depot's report about itself, from its database (DESIGN.md §4.5). */
export function buildStatusReport(db: DepotDb, extra: { chunksFetched: number; bytesFetched: number; freeDiskBytes: number; now: Date }): StatusReport {
  const served = db.served()?.generation ?? 0;
  const num = (k: string) => Number(db.getKv(k) ?? '0') || 0;
  const report: StatusReport = {
    servedGeneration: served,
    targetGeneration: Math.max(served, num(KV.targetGeneration)),
    bytesFetched: extra.bytesFetched,
    chunksFetched: extra.chunksFetched,
    bytesRemaining: num(KV.bytesRemaining),
    scrubOk: num(KV.scrubOk),
    scrubFailed: num(KV.scrubFailed),
    freeDiskBytes: extra.freeDiskBytes,
    reportedAt: extra.now.toISOString(),
    sequence: db.nextSequence(),
  };
  const lastSuccess = db.getKv(KV.lastSuccess);
  const lastError = db.getKv(KV.lastError);
  if (lastSuccess) report.lastSuccess = lastSuccess;
  if (lastError) report.lastError = lastError.slice(0, 2000);
  return report;
}

/**
 * POST the report to the master over mutual TLS (the master files it under the machine its client
 * certificate names). A failed report is logged, never fatal: the sync itself succeeded or failed already.
 */
export async function sendStatusReport(master: HttpClient, report: StatusReport, log: Logger): Promise<boolean> {
  try {
    await master.postJson('/v1/status', report, { maxBytes: MAX_STATUS_BODY_BYTES, what: 'status report' });
    log.debug({ sequence: report.sequence }, 'status reported');
    return true;
  } catch (e) {
    log.warn({ err: (e as Error).message, master: master.baseUrl.origin }, 'status report not delivered');
    return false;
  }
}
