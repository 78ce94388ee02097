import { MACHINE_NAME } from '../pki/names.js';
import { decodeJson, Fields } from './decode.js';

/**
 * A depot's report about itself (`POST /v1/status`, mutual TLS; docs/architecture.md). The master records it
 * for the machine its client certificate names, never for a name inside the body.
 */
export interface StatusReport {
  servedGeneration: number;
  targetGeneration: number;
  /** ISO time of the last successful sync, if any. */
  lastSuccess?: string;
  lastError?: string;
  bytesFetched: number;
  chunksFetched: number;
  /** Bytes the current target generation still lacks (for the ETA). */
  bytesRemaining: number;
  scrubOk: number;
  scrubFailed: number;
  freeDiskBytes: number;
  /** Offline depots: end of the validity window of the generation they serve. */
  validUntil?: string;
  /** When the depot made this report (ISO); ordering of file-borne reports uses it. */
  reportedAt: string;
  /** Strictly increasing per depot: a replayed or older report is ignored. */
  sequence: number;
  /**
   * Where the depot syncs from (tiers): 'master', or the parent depot's machine name as its verified TLS
   * certificate names it. Absent when the depot does not know (offline, or never reached its upstream).
   */
  upstream?: string;
  /** Random id of the depot's sequence counter, made with it: a new id says the counter started again. */
  boot?: string;
}

/** The `upstream` of a depot that syncs from the master itself. */
export const UPSTREAM_MASTER = 'master';

export const MAX_STATUS_BODY_BYTES = 64 * 1024;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function decodeStatusReport(value: unknown): StatusReport {
  const f = Fields.of('status report', value);
  const r: StatusReport = {
    servedGeneration: f.int('servedGeneration'),
    targetGeneration: f.int('targetGeneration'),
    bytesFetched: f.int('bytesFetched'),
    chunksFetched: f.int('chunksFetched'),
    bytesRemaining: f.int('bytesRemaining', { optional: true }),
    scrubOk: f.int('scrubOk', { optional: true }),
    scrubFailed: f.int('scrubFailed', { optional: true }),
    freeDiskBytes: f.int('freeDiskBytes', { optional: true }),
    reportedAt: f.string('reportedAt', { pattern: ISO }),
    sequence: f.int('sequence', { min: 1 }),
  };
  const lastSuccess = f.optionalString('lastSuccess', { pattern: ISO });
  const lastError = f.optionalString('lastError', { max: 2000 });
  const validUntil = f.optionalString('validUntil', { pattern: ISO });
  // A machine name (the same rule as certificates) or 'master': nothing else reaches the database or a page.
  const upstream = f.optionalString('upstream', { max: 64, pattern: MACHINE_NAME });
  const boot = f.optionalString('boot', { pattern: /^[0-9a-f]{32}$/ });
  f.done();
  if (lastSuccess !== undefined) r.lastSuccess = lastSuccess;
  if (lastError !== undefined) r.lastError = lastError;
  if (validUntil !== undefined) r.validUntil = validUntil;
  if (upstream !== undefined) r.upstream = upstream;
  if (boot !== undefined) r.boot = boot;
  return r;
}

/** A `POST /v1/status` body: strict JSON of at most MAX_STATUS_BODY_BYTES; `raw` is kept for the record. */
export function parseStatusReport(
  body: Uint8Array,
  what = 'status report',
): { report: StatusReport; raw: unknown } {
  let raw: unknown;
  const report = decodeJson(body, { what, maxBytes: MAX_STATUS_BODY_BYTES }, (v) => {
    raw = v;
    return decodeStatusReport(v);
  });
  return { report, raw };
}
