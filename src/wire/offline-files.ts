import { canonicalize } from '../content/canonical-json.js';
import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError, isDepotsyncError } from '../errors.js';
import { Fields } from './decode.js';
import { MACHINE_NAME_PATTERN } from './enroll.js';
import { decodeStatusReport, MAX_STATUS_BODY_BYTES, type StatusReport } from './status.js';

/**
 * The small files that cross an air gap besides bundles (docs/architecture.md): an air-gapped depot's
 * enrollment request (depot → master; the reply is a bundle of purpose 'enrollment') and its signed
 * status report (depot → master, in D/outbox/).
 */
export const ENROLL_REQUEST_TYPE = 'depotsync-enroll-request';
export const STATUS_FILE_TYPE = 'depotsync-status-file';
export const OFFLINE_FILE_FORMAT = 1;
export const MAX_ENROLL_REQUEST_BYTES = 32 * 1024;
export const MAX_STATUS_FILE_BYTES = MAX_STATUS_BODY_BYTES + 8 * 1024;

export interface EnrollRequestFile {
  _type: typeof ENROLL_REQUEST_TYPE;
  formatVersion: number;
  name: string;
  role: 'depot';
  csr: string;
  /** SHA-256 of the 1.root.json the depot pinned: the request is for that master only. */
  rootFingerprint: string;
  createdAt: string;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function parseCapped(bytes: Uint8Array, max: number, what: string): unknown {
  try {
    return parseStrictJson(bytes, { what, maxBytes: max });
  } catch (e) {
    if (!isDepotsyncError(e, 'bad-json')) throw e;
    throw new DepotsyncError('bad-json', e.message, { hint: 'the file is damaged or not a depotsync file' });
  }
}

export function encodeEnrollRequest(r: EnrollRequestFile): Buffer {
  return Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
}

export function decodeEnrollRequest(bytes: Uint8Array, what = 'enrollment request file'): EnrollRequestFile {
  const f = Fields.of(what, parseCapped(bytes, MAX_ENROLL_REQUEST_BYTES, what));
  const r: EnrollRequestFile = {
    _type: f.oneOf('_type', [ENROLL_REQUEST_TYPE] as const),
    formatVersion: f.int('formatVersion', { min: 1, max: OFFLINE_FILE_FORMAT }),
    name: f.string('name', { max: 64, pattern: MACHINE_NAME_PATTERN }),
    role: f.oneOf('role', ['depot'] as const),
    csr: f.string('csr', { max: 16 * 1024 }),
    rootFingerprint: f.string('rootFingerprint', { pattern: /^[0-9a-f]{64}$/ }),
    createdAt: f.string('createdAt', { pattern: ISO }),
  };
  f.done();
  return r;
}

/** What a depot signs about itself; `machine` and `certSerial` say whose key must verify it. */
export interface StatusFileSigned {
  _type: typeof STATUS_FILE_TYPE;
  formatVersion: number;
  machine: string;
  certSerial: string;
  report: StatusReport;
}

export interface DecodedStatusFile {
  signed: StatusFileSigned;
  /** Canonical JSON of `signed`: what the signature is over. */
  signedBytes: Buffer;
  signature: Buffer;
  /** The report as it was in the file (for the master's raw record). */
  rawReport: unknown;
}

export function statusSignedBytes(signed: StatusFileSigned): Buffer {
  return canonicalize(signed);
}

export function encodeStatusFile(signed: StatusFileSigned, sign: (data: Buffer) => Buffer): Buffer {
  // Canonical JSON has no form for control characters: an error message's line breaks become spaces.
  const { lastError } = signed.report;
  if (lastError !== undefined) {
    signed = {
      ...signed,
      report: { ...signed.report, lastError: lastError.replace(/[\u0000-\u001f]/g, ' ') },
    };
  }
  return Buffer.from(
    `${JSON.stringify({ signed, signature: sign(statusSignedBytes(signed)).toString('base64') })}\n`,
  );
}

/** Decode at the border (size, envelope, schema); the caller verifies `signature` over `signedBytes`. */
export function decodeStatusFile(bytes: Uint8Array, what = 'status file'): DecodedStatusFile {
  const doc = parseCapped(bytes, MAX_STATUS_FILE_BYTES, what);
  const outer = Fields.of(what, doc);
  const sig = outer.string('signature', { max: 2048, pattern: /^[A-Za-z0-9+/]+={0,2}$/ });
  outer.done();
  const signedRaw = (doc as { signed?: unknown }).signed;
  const f = Fields.of(`${what}: signed`, signedRaw);
  const head = {
    _type: f.oneOf('_type', [STATUS_FILE_TYPE] as const),
    formatVersion: f.int('formatVersion', { min: 1, max: OFFLINE_FILE_FORMAT }),
    machine: f.string('machine', { max: 64, pattern: MACHINE_NAME_PATTERN }),
    certSerial: f.string('certSerial', { max: 80, pattern: /^[0-9a-fA-F]{1,80}$/ }),
  };
  f.done();
  const rawReport = (signedRaw as { report?: unknown }).report;
  const signed: StatusFileSigned = { ...head, report: decodeStatusReport(rawReport) };
  let signedBytes: Buffer;
  try {
    signedBytes = canonicalize(signedRaw);
  } catch {
    throw new DepotsyncError('bad-input', `${what}: the signed part cannot be canonicalised`);
  }
  return { signed, signedBytes, signature: Buffer.from(sig, 'base64'), rawReport };
}
