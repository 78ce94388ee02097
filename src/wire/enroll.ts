import { decodeJson, Fields } from './decode.js';

/**
 * Enrollment over HTTPS (docs/architecture.md, docs/http.md). Public and rate-limited.
 *
 * `POST /v1/enroll` with JSON `EnrollRequest` →
 *   200 `EnrollReply` with state 'approved' (certificate issued at once: valid one-time token), or
 *   202 `EnrollReply` with state 'pending' and a `request` id to poll.
 * `GET /v1/enroll/{request}` → 200 approved (with the certificate) | 202 pending | 403 blocked/refused.
 * The request id is unguessable (it is the only thing that lets a poller collect its certificate).
 */
export interface EnrollRequest {
  name: string;
  role: 'depot' | 'agent';
  csr: string;
  token?: string;
  /** Where a depot serves agents (for the signed depot directory), and its site. */
  url?: string;
  site?: string;
  /** For tiered depots: the parent depot's name. */
  parent?: string;
}

export interface EnrollReply {
  state: 'approved' | 'pending';
  request: string;
  name: string;
  certificate?: string;
  caCertificate?: string;
  message?: string;
}

export const MACHINE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_ENROLL_BODY_BYTES = 32 * 1024;

export function decodeEnrollRequest(value: unknown): EnrollRequest {
  const f = Fields.of('enrollment request', value);
  const req: EnrollRequest = {
    name: f.string('name', { max: 64, pattern: MACHINE_NAME_PATTERN }),
    role: f.oneOf('role', ['depot', 'agent'] as const),
    csr: f.string('csr', { max: 16 * 1024 }),
  };
  const token = f.optionalString('token', { max: 256 });
  const url = f.optionalString('url', { max: 512, pattern: /^https:\/\/[^\s]+$/ });
  const site = f.optionalString('site', { max: 64, pattern: MACHINE_NAME_PATTERN });
  const parent = f.optionalString('parent', { max: 64, pattern: MACHINE_NAME_PATTERN });
  f.done();
  if (token !== undefined) req.token = token;
  if (url !== undefined) req.url = url;
  if (site !== undefined) req.site = site;
  if (parent !== undefined) req.parent = parent;
  return req;
}

export function decodeEnrollReply(value: unknown): EnrollReply {
  const f = Fields.of('enrollment reply', value);
  const reply: EnrollReply = {
    state: f.oneOf('state', ['approved', 'pending'] as const),
    request: f.string('request', { max: 128 }),
    name: f.string('name', { max: 64 }),
  };
  const certificate = f.optionalString('certificate', { max: 32 * 1024 });
  const caCertificate = f.optionalString('caCertificate', { max: 32 * 1024 });
  const message = f.optionalString('message', { max: 1024 });
  f.done();
  if (certificate !== undefined) reply.certificate = certificate;
  if (caCertificate !== undefined) reply.caCertificate = caCertificate;
  if (message !== undefined) reply.message = message;
  return reply;
}

/** A `POST /v1/enroll` body: strict JSON of at most MAX_ENROLL_BODY_BYTES. */
export function parseEnrollRequest(body: Uint8Array, what = 'enrollment request'): EnrollRequest {
  return decodeJson(body, { what, maxBytes: MAX_ENROLL_BODY_BYTES }, decodeEnrollRequest);
}

/** The master's answer to an enrollment (`what` names the request in errors). */
export function parseEnrollReply(body: Uint8Array, what: string): EnrollReply {
  return decodeJson(body, { what, maxBytes: MAX_ENROLL_BODY_BYTES }, decodeEnrollReply);
}
