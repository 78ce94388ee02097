import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';
import { metadataFileName, ROLE_NAME } from './context.js';

/**
 * Which metadata files carry a client from one generation to another (for offline bundles and for
 * mirrors deciding what to copy): root versions after the client's, the timestamp, the new snapshot,
 * and every targets role (targets.json, bins) whose version differs. Reads the master's own snapshot
 * files, so it decodes without verifying; a client verifies everything it receives anyway.
 */
function snapshotInfo(bytes: Uint8Array, what: string): { version: number; meta: Map<string, number> } {
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, { what, maxBytes: bytes.length });
  } catch (e) {
    throw new DepotsyncError('bad-metadata', `${what}: not strict JSON (${(e as Error).message})`, {
      cause: e,
    });
  }
  const signed = (doc as { signed?: { version?: unknown; meta?: unknown } })?.signed;
  if (
    !signed ||
    typeof signed.version !== 'number' ||
    typeof signed.meta !== 'object' ||
    signed.meta === null
  ) {
    throw new DepotsyncError('bad-metadata', `${what}: not snapshot metadata`);
  }
  const meta = new Map<string, number>();
  for (const [name, m] of Object.entries(signed.meta as Record<string, { version?: unknown }>)) {
    const role = name.replace(/\.json$/, '');
    if (!ROLE_NAME.test(role) || typeof m?.version !== 'number')
      throw new DepotsyncError('bad-metadata', `${what}: bad meta entry ${JSON.stringify(name)}`);
    meta.set(role, m.version);
  }
  return { version: signed.version, meta };
}

export interface DeltaInput {
  /** The client's snapshot (undefined: the client has nothing yet, send every targets role). */
  fromSnapshot?: Uint8Array;
  /** The client's root version (1 for a fresh client, which also needs 1.root.json itself via its pin). */
  fromRootVersion: number;
  toSnapshot: Uint8Array;
  toRootVersion: number;
}

/** File names, in the order a client uses them. */
export function metadataDelta(input: DeltaInput): string[] {
  const to = snapshotInfo(input.toSnapshot, 'target snapshot');
  const from = input.fromSnapshot ? snapshotInfo(input.fromSnapshot, 'base snapshot') : undefined;
  const names: string[] = [];
  for (let v = input.fromRootVersion + 1; v <= input.toRootVersion; v++)
    names.push(metadataFileName('root', v));
  names.push('timestamp.json', metadataFileName('snapshot', to.version));
  for (const [role, version] of to.meta) {
    if (from?.meta.get(role) !== version) names.push(metadataFileName(role, version));
  }
  return names;
}
