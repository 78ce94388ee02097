import { MACHINE_ROLES, type MachineRole } from '../pki/names.js';
import { decodeJson, Fields } from './decode.js';

/**
 * JSON bodies of the master's admin API (`/v1/admin/...`, operators' API keys). The admin surface is
 * reachable over the network, so its bodies are read like any other: capped, strict, every bad field
 * named. Name and version rules of a package are checked by the master after decoding.
 */
export const MAX_ADMIN_BODY_BYTES = 16 * 1024;

export interface TokenRequest {
  role: MachineRole;
  ttlMs?: number;
}

export interface UnpublishRequest {
  name: string;
  version: string;
}

/** `POST /v1/admin/tokens`: `{"role": "depot"|"agent", "ttlMs"?: N}`. */
export function parseTokenRequest(body: Uint8Array): TokenRequest {
  return decodeJson(body, { what: 'token request', maxBytes: MAX_ADMIN_BODY_BYTES }, (v) => {
    const f = Fields.of('token request', v);
    const role = f.oneOf('role', MACHINE_ROLES);
    const ttlMs = f.optionalInt('ttlMs', { min: 1 });
    f.done();
    return ttlMs === undefined ? { role } : { role, ttlMs };
  });
}

/** `POST /v1/admin/unpublish`: `{"name": "...", "version": "..."}`. */
export function parseUnpublishRequest(body: Uint8Array): UnpublishRequest {
  return decodeJson(body, { what: 'unpublish request', maxBytes: MAX_ADMIN_BODY_BYTES }, (v) => {
    const f = Fields.of('unpublish request', v);
    const out = { name: f.string('name', { max: 200 }), version: f.string('version', { max: 200 }) };
    f.done();
    return out;
  });
}
