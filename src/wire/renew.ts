import { DepotsyncError } from '../errors.js';
import { decodeJson, Fields } from './decode.js';

/**
 * Certificate renewal over mutual TLS (docs/http.md). Both routes speak for the
 * machine its CURRENT client certificate names; nothing in a body can name another machine.
 *
 * `GET /v1/renew`  → 200 `RenewState`: the certificate the master has on record for this machine and
 *                    whether an operator asked for a renewal (`depotsync master renew MACHINE`).
 * `POST /v1/renew` with `RenewRequest` (a CSR for a NEW key) → 200 `RenewReply`: the new certificate
 *                    and the CA chain. The old certificate stays valid until it expires.
 * Refused with 403 and the reason for a blocked, revoked or expired certificate (the mutual-TLS gate).
 */
export interface RenewState {
  machine: string;
  /** Serial of the newest certificate issued to the machine. */
  serial: string;
  notAfter: string;
  renewRequested: boolean;
}

export interface RenewRequest {
  csr: string;
}

export interface RenewReply {
  machine: string;
  serial: string;
  notAfter: string;
  certificate: string;
  caCertificate: string;
}

export const MAX_RENEW_BODY_BYTES = 32 * 1024;

export function decodeRenewRequest(value: unknown): RenewRequest {
  const f = Fields.of('renewal request', value);
  const req: RenewRequest = { csr: f.string('csr', { max: 16 * 1024 }) };
  f.done();
  return req;
}

/** A `POST /v1/renew` body: strict JSON of at most MAX_RENEW_BODY_BYTES. */
export function parseRenewRequest(body: Uint8Array, what = 'renewal request'): RenewRequest {
  return decodeJson(body, { what, maxBytes: MAX_RENEW_BODY_BYTES }, decodeRenewRequest);
}

export function decodeRenewState(value: unknown): RenewState {
  const f = Fields.of('renewal state', value);
  const state: RenewState = {
    machine: f.string('machine', { max: 64 }),
    serial: f.string('serial', { max: 80, pattern: /^[0-9a-f]+$/ }),
    notAfter: f.string('notAfter', { max: 40 }),
    renewRequested: false,
  };
  f.done();
  const flag = (value as Record<string, unknown>).renewRequested;
  if (typeof flag !== 'boolean')
    throw new DepotsyncError(
      'bad-input',
      `renewal state: renewRequested: expected a boolean, got ${JSON.stringify(flag)?.slice(0, 40)}`,
    );
  state.renewRequested = flag;
  return state;
}

export function decodeRenewReply(value: unknown): RenewReply {
  const f = Fields.of('renewal reply', value);
  const reply: RenewReply = {
    machine: f.string('machine', { max: 64 }),
    serial: f.string('serial', { max: 80, pattern: /^[0-9a-f]+$/ }),
    notAfter: f.string('notAfter', { max: 40 }),
    certificate: f.string('certificate', { max: 32 * 1024 }),
    caCertificate: f.string('caCertificate', { max: 32 * 1024 }),
  };
  f.done();
  return reply;
}
