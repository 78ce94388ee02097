import { canonicalize } from '../content/canonical-json.js';
import { parseStrictJson } from '../content/strict-json.js';
import {
  Metadata,
  type MetadataKind,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { signaturesFromJSON, signedFromJSON } from './codec.js';
import { metaError, type MetaContext } from './context.js';

/**
 * Decode at the border, in two steps (docs/contributing.md, "verify before reading"):
 * 1. `parseEnvelope` caps the size BEFORE parsing, parses JSON and reads only the envelope
 *    (`signed` object, `signatures` list) and `signed._type`;
 * 2. after the signatures were verified over `signedBytes`, `decodeSigned` turns `signed` into the
 *    typed `@tufjs/models` object (schema errors become `bad-metadata` naming role and file).
 */
export interface RawSignature {
  readonly keyid: string;
  readonly sig: string;
}

export interface Envelope {
  readonly ctx: MetaContext;
  readonly type: MetadataKind;
  /** The `signed` object exactly as received (unknown fields kept). */
  readonly signed: Record<string, unknown>;
  readonly signatures: readonly RawSignature[];
  /** Canonical JSON of `signed`: the bytes every signature is over. */
  readonly signedBytes: Buffer;
  /** The file as received, for persisting and re-serving byte for byte. */
  readonly bytes: Uint8Array;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseEnvelope(
  bytes: Uint8Array,
  ctx: MetaContext,
  opts: { maxBytes: number; type: MetadataKind },
): Envelope {
  // Endless-data attack: refuse oversized metadata before spending any work on it.
  if (bytes.length > opts.maxBytes) {
    throw metaError('too-large', ctx, `${bytes.length} bytes exceeds the limit of ${opts.maxBytes} bytes`, {
      hint: 'the mirror sent more than any valid file of this role; try another source',
    });
  }
  let doc: unknown;
  try {
    // Strict: a duplicate key would let the signature cover one value and the client use another.
    doc = parseStrictJson(bytes, { what: 'metadata', maxBytes: opts.maxBytes });
  } catch (e) {
    throw metaError('bad-metadata', ctx, `not strict UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isPlainObject(doc)) throw metaError('bad-metadata', ctx, 'expected a JSON object');
  const { signed, signatures } = doc;
  if (!isPlainObject(signed)) throw metaError('bad-metadata', ctx, '"signed" must be an object');
  if (!Array.isArray(signatures)) throw metaError('bad-metadata', ctx, '"signatures" must be an array');
  const sigs: RawSignature[] = [];
  signatures.forEach((s, i) => {
    if (!isPlainObject(s) || typeof s.keyid !== 'string' || typeof s.sig !== 'string') {
      throw metaError('bad-metadata', ctx, `signatures[${i}] must be {keyid: string, sig: string}`);
    }
    sigs.push({ keyid: s.keyid, sig: s.sig });
  });
  // Wrong-role confusion: a snapshot signed by a key that is also a timestamp key is not a timestamp.
  if (signed._type !== opts.type) {
    throw metaError(
      'bad-metadata',
      ctx,
      `signed._type is ${JSON.stringify(signed._type)}, expected ${JSON.stringify(opts.type)}`,
    );
  }
  let canonical: Buffer;
  try {
    canonical = canonicalize(signed);
  } catch (e) {
    throw metaError(
      'bad-metadata',
      ctx,
      'signed part cannot be canonicalised (floats or unsupported values)',
      { cause: e },
    );
  }
  return { ctx, type: opts.type, signed, signatures: sigs, signedBytes: canonical, bytes };
}

type Kinds = { root: Root; timestamp: Timestamp; snapshot: Snapshot; targets: Targets };

/**
 * The typed metadata of an envelope whose signatures were verified. `keptKeyids` are the keyids whose
 * signatures are carried over (one per keyid: the models refuse duplicates, the verifier counts them once).
 */
export function decodeSigned<K extends keyof Kinds>(
  env: Envelope,
  kind: K,
  keptKeyids: Iterable<string>,
): Metadata<Kinds[K]> {
  const keep = new Set(keptKeyids);
  const seen = new Set<string>();
  const signatures = env.signatures.filter(
    (s) => keep.has(s.keyid) && !seen.has(s.keyid) && seen.add(s.keyid),
  );
  let md: Metadata<Kinds[K]>;
  try {
    md = new Metadata(signedFromJSON(kind, env.signed) as Kinds[K], signaturesFromJSON(signatures));
  } catch (e) {
    throw metaError('bad-metadata', env.ctx, `schema: ${(e as Error).message}`, { cause: e });
  }
  const { version, expires } = md.signed;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw metaError(
      'bad-metadata',
      env.ctx,
      `version must be a positive integer, got ${JSON.stringify(version)}`,
    );
  }
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(expires) || Number.isNaN(Date.parse(expires))) {
    throw metaError(
      'bad-metadata',
      env.ctx,
      `expires must be an ISO 8601 UTC date, got ${JSON.stringify(expires)}`,
    );
  }
  return md;
}
