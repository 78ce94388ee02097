import { DepotsyncError, type ErrorCode } from '../errors.js';
import { decodeErrorBody } from '../wire/error-body.js';

/**
 * A non-2xx answer from a depotsync server. Carries the HTTP status and the server's own error code
 * (`{"error":{"code","message","hint"}}`), so callers can tell "revoked" from "not found" from "try
 * another depot".
 */
export class HttpError extends DepotsyncError {
  readonly status: number;
  readonly serverCode: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    status: number,
    serverCode: string | undefined,
    hint: string | undefined,
  ) {
    super(code, message, hint ? { hint } : {});
    this.name = 'HttpError';
    this.status = status;
    this.serverCode = serverCode;
  }
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'bad-input',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not-found',
  409: 'conflict',
  413: 'too-large',
  416: 'bad-input',
  429: 'rate-limited',
};

const DEFAULT_HINTS: Partial<Record<ErrorCode, string>> = {
  unauthorized:
    'this machine needs a certificate from the master: enroll it (depotsync depot init / agent init)',
  forbidden: 'ask the master operator to approve, unblock or renew this machine',
  'rate-limited': 'wait a moment and try again',
};

/** Build the error for a non-2xx response from its status and (untrusted, capped) body. */
export function httpErrorFor(label: string, status: number, body: Buffer): HttpError {
  let serverCode: string | undefined;
  let serverMessage: string | undefined;
  let serverHint: string | undefined;
  // The reader already cut the body at the client's error-body limit.
  const doc = decodeErrorBody(body, body.length);
  if (doc) {
    ({ code: serverCode, message: serverMessage, hint: serverHint } = doc);
  } else {
    const text = body.toString('utf8').trim();
    // Only short printable text bodies are worth repeating; anything else is noise (or an attack on logs).
    if (text.length > 0 && text.length <= 200 && /^[\x20-\x7e]+$/.test(text)) serverMessage = text;
  }
  const code = BY_STATUS[status] ?? 'network';
  const detail = [serverCode, serverMessage].filter((s) => s !== undefined).join(': ');
  const message = `${label}: ${status}${detail ? ` ${detail}` : ''}`;
  return new HttpError(
    code,
    message,
    status,
    serverCode,
    serverHint ??
      DEFAULT_HINTS[code] ??
      (status >= 500 ? 'the server failed; try another depot or later' : undefined),
  );
}

const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Map a socket or TLS error of a request to a typed error that names the request. */
export function networkError(label: string, e: unknown): DepotsyncError {
  if (e instanceof DepotsyncError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? '';
  if (CERT_ERRORS.has(code)) {
    return new DepotsyncError(
      'bad-certificate',
      `${label}: server certificate not trusted (${code}: ${err.message})`,
      {
        hint: "the server is not one of this master's servers, or its certificate does not name this host; check the URL",
        cause: e,
      },
    );
  }
  const what: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EHOSTUNREACH: 'host unreachable',
    ECONNRESET: 'connection reset',
    EPIPE: 'connection closed while sending',
    ETIMEDOUT: 'connection timed out',
  };
  return new DepotsyncError(
    'network',
    `${label}: ${what[code] ?? err?.message ?? String(e)}${code && !what[code] ? ` (${code})` : ''}`,
    {
      hint: 'check the URL and the network; a depot falls back to another source',
      cause: e,
    },
  );
}
