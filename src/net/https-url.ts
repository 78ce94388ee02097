import { DepotsyncError, type ErrorCode } from '../errors.js';

/** An https URL with a host and an optional path: no query, fragment, user or white space. */
export const HTTPS_URL_PATTERN = /^https:\/\/[^\s/?#@]+(?:\/[^\s?#]*)?$/;

/**
 * Refuse anything but https where a URL is configured (a flag, depot.json, agent.json, admin.json): over
 * plain http the one-time enrollment token, operator tokens and every later request would travel in
 * cleartext, and nothing would authenticate the server. `where` names the flag or field.
 */
export function requireHttpsUrl(value: string, where: string, code: ErrorCode = 'usage'): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url?.protocol === 'http:') {
    throw new DepotsyncError(
      code,
      `${where}: ${JSON.stringify(value)} uses plain http://; only https:// is accepted`,
      {
        hint: 'tokens and requests would travel in cleartext; use the https:// address of the same server',
      },
    );
  }
  if (!url || !HTTPS_URL_PATTERN.test(value)) {
    throw new DepotsyncError(
      code,
      `${where}: expected an https:// URL (https://HOST[:PORT][/PATH]), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Refuse a plain http URL by name before a decoder that collects every bad field reports it by pattern. */
export function refusePlainHttp(value: unknown, where: string, code: ErrorCode = 'bad-input'): void {
  if (typeof value === 'string' && /^http:/i.test(value)) requireHttpsUrl(value, where, code);
}
