import { parseStrictJson } from '../content/strict-json.js';
import { isDepotsyncError } from '../errors.js';

/**
 * The body of a non-2xx answer from a depotsync server: `{"error":{"code","message","hint"}}`
 * (src/serve/http-errors.ts writes it). Advisory only: a body that is not that shape gives no fields
 * and the caller falls back on the status, so a hostile server cannot turn an error into anything else.
 * Each field is cut (code 64, message and hint 500 characters) before it reaches a log or a terminal.
 */
export interface ErrorBody {
  code?: string;
  message?: string;
  hint?: string;
}

/** Undefined when the body is not strict JSON of at most `maxBytes`; fields of the wrong type are dropped. */
export function decodeErrorBody(body: Uint8Array, maxBytes: number): ErrorBody | undefined {
  let doc: unknown;
  try {
    doc = parseStrictJson(body, { what: 'error body', maxBytes, maxDepth: 8 });
  } catch (e) {
    if (isDepotsyncError(e)) return undefined;
    throw e;
  }
  const e = (doc as { error?: unknown } | null)?.error;
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return {};
  const { code, message, hint } = e as Record<string, unknown>;
  const out: ErrorBody = {};
  if (typeof code === 'string') out.code = code.slice(0, 64);
  if (typeof message === 'string') out.message = message.slice(0, 500);
  if (typeof hint === 'string') out.hint = hint.slice(0, 500);
  return out;
}
