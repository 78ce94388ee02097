import { createHash } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { MetadataKind, type Metadata, type Root } from '@tufjs/models';
import { DepotsyncError } from '../../src/errors.js';
import { decodeSigned, parseEnvelope, type Envelope, type RawSignature } from '../../src/tuf/envelope.js';
import { DEFAULT_CLIENT_LIMITS } from '../../src/tuf/client.js';
import { topRoleKeys } from '../../src/tuf/client/checks.js';
import { trustRoot } from '../../src/tuf/client/root.js';
import type { KeyPair, Signer } from '../../src/tuf/keys.js';
import { verifyThreshold } from '../../src/tuf/verify.js';

/**
 * A root signing request: root N+1 for root keys kept off the master. The master writes it (with the
 * root N it follows, and signed by the master's current timestamp key so that a copy altered on the
 * way is refused where it is signed); `master root sign` adds root-key signatures on another machine;
 * `master root import` takes the file back. The master only imports a root whose signed part is the
 * one it asked for (docs/keys.md).
 */
export const ROOT_REQUEST_TYPE = 'depotsync-root-signing-request';
export const ROOT_REQUEST_FORMAT = 1;
/** A request holds two roots; 2 MB is far above any real one and bounds what is parsed. */
export const ROOT_REQUEST_MAX_BYTES = 2 * 1024 * 1024;

export interface RootRequestBody {
  _type: typeof ROOT_REQUEST_TYPE;
  formatVersion: typeof ROOT_REQUEST_FORMAT;
  /** The master's name (master.json) and the fingerprint its depots and agents pin. */
  master: string;
  rootFingerprint: string;
  /** What the new root changes, for the person signing (e.g. "rotate the timestamp key"). */
  purpose: string;
  createdAt: string;
  /** Root N (base64 of its exact bytes): the root whose keys must sign N+1. */
  trustedRoot: string;
  /** Root N+1's `signed` part. */
  root: Record<string, unknown>;
}

export interface RootRequest extends Omit<RootRequestBody, 'root'> {
  root: { signed: Record<string, unknown>; signatures: RawSignature[] };
  /** The master's timestamp key(s) of root N over the canonical JSON of the body. */
  masterSignatures: RawSignature[];
}

const bodyOf = (r: RootRequest): RootRequestBody => {
  const { masterSignatures: _m, root, ...rest } = r;
  return { ...rest, root: root.signed };
};

/**
 * The short digest both sides print, so the operator can compare what the master asked with what is signed.
 */
export function requestDigest(r: Pick<RootRequest, 'root'>): string {
  return createHash('sha256').update(canonicalize(r.root.signed)).digest('hex').slice(0, 16);
}

/** `root`: root N+1 as a metadata file (JSON), with the signatures the master could already add. */
export function createRootRequest(
  o: {
    master: string;
    rootFingerprint: string;
    purpose: string;
    now: Date;
    trustedRoot: Uint8Array;
    root: Uint8Array;
  },
  timestampSigners: readonly Signer[],
): RootRequest {
  const json = JSON.parse(Buffer.from(o.root).toString('utf8')) as RootRequest['root'];
  const body: RootRequestBody = {
    _type: ROOT_REQUEST_TYPE,
    formatVersion: ROOT_REQUEST_FORMAT,
    master: o.master,
    rootFingerprint: o.rootFingerprint,
    purpose: o.purpose,
    createdAt: o.now.toISOString(),
    trustedRoot: Buffer.from(o.trustedRoot).toString('base64'),
    root: json.signed,
  };
  const bytes = Buffer.from(canonicalize(body as never), 'utf8');
  const masterSignatures = timestampSigners.map((s) => ({
    keyid: s.keyid,
    sig: s.sign(bytes).toString('hex'),
  }));
  const { root: _r, ...rest } = body;
  return { ...rest, root: { signed: json.signed, signatures: json.signatures }, masterSignatures };
}

const bad = (what: string, msg: string, hint?: string) =>
  new DepotsyncError('bad-input', `${what}: ${msg}`, hint ? { hint } : {});

/** Decode a request file's bytes: shape only (the signatures are checked by `checkRootRequest`). */
export function decodeRootRequest(bytes: Uint8Array, what: string): RootRequest {
  if (bytes.length > ROOT_REQUEST_MAX_BYTES)
    throw new DepotsyncError('too-large', `${what}: ${bytes.length} bytes, above ${ROOT_REQUEST_MAX_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new DepotsyncError('bad-input', `${what}: not JSON`, { cause: e });
  }
  const d = doc as Record<string, unknown>;
  if (typeof d !== 'object' || d === null || d._type !== ROOT_REQUEST_TYPE) {
    throw bad(
      what,
      `not a root signing request (_type is ${JSON.stringify(d?._type)})`,
      'give the file written by depotsync master keys rotate / master root renew',
    );
  }
  if (d.formatVersion !== ROOT_REQUEST_FORMAT)
    throw bad(
      what,
      `formatVersion ${JSON.stringify(d.formatVersion)} is not supported (expected ${ROOT_REQUEST_FORMAT})`,
    );
  for (const f of ['master', 'rootFingerprint', 'purpose', 'createdAt', 'trustedRoot'] as const) {
    if (typeof d[f] !== 'string') throw bad(what, `field ${f} must be a string`);
  }
  const root = d.root as Record<string, unknown> | undefined;
  if (
    typeof root !== 'object' ||
    root === null ||
    typeof root.signed !== 'object' ||
    root.signed === null ||
    !Array.isArray(root.signatures)
  ) {
    throw bad(what, 'field root must be {signed, signatures}');
  }
  const sigs = (list: unknown, field: string): RawSignature[] => {
    if (!Array.isArray(list)) throw bad(what, `field ${field} must be an array`);
    return list.map((s: unknown, i) => {
      const x = s as Record<string, unknown>;
      if (typeof x !== 'object' || x === null || typeof x.keyid !== 'string' || typeof x.sig !== 'string')
        throw bad(what, `${field}[${i}] must be {keyid, sig}`);
      return { keyid: x.keyid, sig: x.sig };
    });
  };
  return {
    _type: ROOT_REQUEST_TYPE,
    formatVersion: ROOT_REQUEST_FORMAT,
    master: d.master as string,
    rootFingerprint: d.rootFingerprint as string,
    purpose: d.purpose as string,
    createdAt: d.createdAt as string,
    trustedRoot: d.trustedRoot as string,
    root: {
      signed: root.signed as Record<string, unknown>,
      signatures: sigs(root.signatures, 'root.signatures'),
    },
    masterSignatures: sigs(d.masterSignatures, 'masterSignatures'),
  };
}

export function encodeRootRequest(r: RootRequest): string {
  return `${JSON.stringify(r, null, 1)}\n`;
}

export interface CheckedRequest {
  trusted: Root;
  next: Metadata<Root>;
  /** Root N+1 as a metadata file (compact JSON, every signature of the request). */
  rootBytes: Buffer;
}

/**
 * Verify a request as far as a machine without the master can: root N is signed by its own root keys;
 * the body is signed by root N's timestamp key (altered in transit otherwise); root N+1 is exactly N+1.
 */
export function checkRootRequest(r: RootRequest, what: string): CheckedRequest {
  const trustedBytes = Buffer.from(r.trustedRoot, 'base64');
  const trusted = trustRoot(trustedBytes, `${what}: trustedRoot`, DEFAULT_CLIENT_LIMITS.rootMaxBytes).md
    .signed;
  const body = bodyOf(r);
  const env: Envelope = {
    ctx: { role: 'root signing request', file: what },
    type: MetadataKind.Root,
    signed: body as never,
    signatures: r.masterSignatures,
    signedBytes: Buffer.from(canonicalize(body as never), 'utf8'),
    bytes: new Uint8Array(),
  };
  try {
    verifyThreshold(env, topRoleKeys(trusted, 'timestamp'));
  } catch (e) {
    throw new DepotsyncError(
      'bad-signature',
      `${what}: the request was altered, or was not made by master ${JSON.stringify(r.master)} (its master signature does not verify: ${(e as Error).message})`,
      {
        hint: 'ask the master for a new request (depotsync master keys rotate / master root renew) and sign that one',
        cause: e,
      },
    );
  }
  const rootBytes = Buffer.from(JSON.stringify(r.root), 'utf8');
  const renv = parseEnvelope(
    rootBytes,
    { role: 'root', file: `${what}: root` },
    { maxBytes: DEFAULT_CLIENT_LIMITS.rootMaxBytes, type: MetadataKind.Root },
  );
  const next = decodeSigned(
    renv,
    'root',
    renv.signatures.map((s) => s.keyid),
  );
  if (next.signed.version !== trusted.version + 1) {
    throw bad(
      what,
      `the new root is version ${next.signed.version}, but it follows root v${trusted.version}`,
    );
  }
  return { trusted, next, rootBytes };
}

export interface SignOutcome {
  request: RootRequest;
  signedBy: string[];
  /** Valid signatures of old and new root keys now on the request, and the thresholds they must meet. */
  old: { valid: number; threshold: number };
  new: { valid: number; threshold: number };
}

const validCount = (root: Buffer, by: Root, what: string): number => {
  const env = parseEnvelope(
    root,
    { role: 'root', file: what },
    { maxBytes: DEFAULT_CLIENT_LIMITS.rootMaxBytes, type: MetadataKind.Root },
  );
  const role = topRoleKeys(by, 'root');
  try {
    return verifyThreshold(env, { ...role, threshold: 1 }).length;
  } catch {
    return 0;
  }
};

/**
 * `master root sign`: add the signatures of `keys` to the request's root N+1. Each key must be a root
 * key of root N or N+1 (else the request is for another master, or the key is the wrong one).
 */
export function signRootRequest(
  r: RootRequest,
  keys: readonly KeyPair[],
  what: string,
  fingerprint?: string,
): SignOutcome {
  if (fingerprint !== undefined && fingerprint.trim().toLowerCase() !== r.rootFingerprint) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: the request is for master ${JSON.stringify(r.master)} with root fingerprint ${r.rootFingerprint}, not ${fingerprint}`,
      {
        hint: 'this request belongs to another master; do not sign it',
      },
    );
  }
  const { trusted, next } = checkRootRequest(r, what);
  const allowed = new Set([...(trusted.roles.root?.keyIDs ?? []), ...(next.signed.roles.root?.keyIDs ?? [])]);
  for (const k of keys) {
    if (!allowed.has(k.keyid)) {
      throw new DepotsyncError(
        'bad-input',
        `${what}: key ${k.keyid.slice(0, 16)}… is not a root key of master ${JSON.stringify(r.master)} (neither root v${trusted.version} nor v${next.signed.version} lists it)`,
        {
          hint: 'the request is for another master, or this is not one of its root keys',
        },
      );
    }
  }
  // Over the canonical bytes of the signed part exactly as requested (nothing re-encoded in between).
  const data = Buffer.from(canonicalize(r.root.signed as never), 'utf8');
  const sigs = new Map(r.root.signatures.map((s) => [s.keyid, s]));
  for (const k of keys) sigs.set(k.keyid, { keyid: k.keyid, sig: k.signer.sign(data).toString('hex') });
  const request: RootRequest = { ...r, root: { signed: r.root.signed, signatures: [...sigs.values()] } };
  const bytes = Buffer.from(JSON.stringify(request.root), 'utf8');
  return {
    request,
    signedBy: keys.map((k) => k.keyid),
    old: { valid: validCount(bytes, trusted, what), threshold: trusted.roles.root?.threshold ?? 1 },
    new: { valid: validCount(bytes, next.signed, what), threshold: next.signed.roles.root?.threshold ?? 1 },
  };
}
