import { statfs } from 'node:fs/promises';
import type { Logger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { MACHINE_NAME } from '../../src/pki/names.js';
import { MAX_STATUS_BODY_BYTES, UPSTREAM_MASTER, type StatusReport } from '../../src/wire/status.js';
import type { DepotDb } from '../db/depot-db.js';
import type { Upstream } from './upstream.js';

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
  /** JSON {origin, name}: the identity of the upstream last reached (see upstreamIdentity). */
  upstream: 'upstream',
  /** JSON array: the master URLs the signed depot directory listed at the last sync (sync/masters.ts). */
  masterUrls: 'masterUrls',
  /** JSON {active, preferredFailedAt}: which master URL answered last (sync/masters.ts masterUrlMemory). */
  masterUrlState: 'masterUrlState',
} as const;

const HEALTHZ_MAX_BYTES = 4096;

/**
 * Who this depot syncs from, for the master's tier view: 'master' when the upstream is
 * the master, else the machine name in the parent depot's certificate (OU=depot), as verified against
 * the master's CA on the sync's own connection (a `GET /healthz`, normally over the kept-alive socket).
 * A body or a URL could claim any name; the certificate cannot. Remembered per upstream origin in the
 * kv table, so a report made while the parent is unreachable still names it. Undefined when unknown
 * (an offline bundle, or a parent never reached).
 */
export async function upstreamIdentity(
  db: DepotDb,
  upstream: HttpClient | Upstream,
  master: HttpClient | undefined,
  log: Logger,
): Promise<string | undefined> {
  if (!(upstream instanceof HttpClient)) return undefined;
  const origin = upstream.baseUrl.origin;
  if (upstream === master || origin === master?.baseUrl.origin) return UPSTREAM_MASTER;
  let name: string | undefined;
  try {
    const res = await upstream.getStream('/healthz', {
      maxBytes: HEALTHZ_MAX_BYTES,
      what: 'upstream identity',
    });
    res.body.resume();
    const peer = res.peerSubject;
    log.debug({ upstream: origin, peer }, 'upstream certificate');
    if (peer?.organizationalUnit === 'server') name = UPSTREAM_MASTER;
    else if (peer?.organizationalUnit === 'depot' && MACHINE_NAME.test(peer.commonName))
      name = peer.commonName;
  } catch (e) {
    log.debug(
      { err: (e as Error).message, upstream: origin },
      'upstream identity not read; using the last one known',
    );
  }
  if (name !== undefined) {
    const value = JSON.stringify({ origin, name });
    if (db.getKv(KV.upstream) !== value) db.setKv(KV.upstream, value);
    return name;
  }
  try {
    const known = JSON.parse(db.getKv(KV.upstream) ?? 'null') as { origin?: unknown; name?: unknown } | null;
    return known?.origin === origin && typeof known.name === 'string' ? known.name : undefined;
  } catch {
    return undefined;
  }
}

export async function freeDiskBytes(dir: string): Promise<number> {
  try {
    const s = await statfs(dir);
    return Math.min(Number.MAX_SAFE_INTEGER, s.bavail * s.bsize);
  } catch {
    return 0;
  }
}

/** The depot's report about itself, from its database (docs/architecture.md). */
export function buildStatusReport(
  db: DepotDb,
  extra: {
    chunksFetched: number;
    bytesFetched: number;
    freeDiskBytes: number;
    now: Date;
    upstream?: string | undefined;
  },
): StatusReport {
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
  if (extra.upstream !== undefined) report.upstream = extra.upstream;
  const boot = db.statusBoot();
  if (boot) report.boot = boot;
  return report;
}

/**
 * POST the report to the master over mutual TLS (the master files it under the machine its client
 * certificate names). A failed report is logged, never fatal: the sync itself succeeded or failed already.
 */
export async function sendStatusReport(
  master: HttpClient,
  report: StatusReport,
  log: Logger,
): Promise<boolean> {
  try {
    await master.postJson('/v1/status', report, { maxBytes: MAX_STATUS_BODY_BYTES, what: 'status report' });
    log.debug({ sequence: report.sequence }, 'status reported');
    return true;
  } catch (e) {
    log.warn({ err: (e as Error).message, master: master.baseUrl.origin }, 'status report not delivered');
    return false;
  }
}
