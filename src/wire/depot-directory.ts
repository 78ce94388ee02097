import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { canonicalize } from '../content/canonical-json.js';
import { DepotsyncError } from '../errors.js';
import { MACHINE_NAME } from '../pki/names.js';
import { Fields } from './decode.js';

/**
 * The signed depot directory: each depot's name, URL and site, as the master operator sets
 * them. It travels as the target `depots.json` of the top-level targets role: its document is the
 * target's `custom.depotDirectory`, and the target's length and SHA-256 are those of the document's
 * canonical bytes. targets.json is signed by the targets key, pinned by version (and hash) in the
 * snapshot, and mirrored byte for byte by every depot and offline bundle, so the directory reaches
 * agents through any mirror and is verified exactly like the catalog: signatures and threshold
 * (a mirror cannot forge it), expiry (freeze), and the snapshot version plus the directory's own
 * `version` (rollback).
 */
export const DEPOT_DIRECTORY_TARGET = 'depots.json';
export const DIRECTORY_CUSTOM_KEY = 'depotDirectory';
/**
 * The master URLs travel beside the document in the same target's `custom` (signed by the targets key
 * with the rest of targets.json), not inside it: a client that predates them re-encodes the document it
 * knows and compares it with the target's SHA-256, which an extra field inside would break.
 */
export const MASTER_URLS_CUSTOM_KEY = 'masterUrls';

export const DIRECTORY_LIMITS = { maxDepots: 10_000, maxUrlChars: 512, maxMasterUrls: 16 } as const;

export interface DirectoryEntry {
  /** The depot's machine name: its certificate's common name. */
  name: string;
  /** Where agents reach it: https only, no query, fragment or user. */
  url: string;
  site?: string;
}

export interface DepotDirectory {
  format: 1;
  /** Raised by one on every change: an agent refuses a directory older than one it has adopted. */
  version: number;
  /** Sorted by name, names unique. */
  depots: DirectoryEntry[];
  /**
   * The URLs of the catalog's masters, in the operator's order (master.json `masterUrls`); machines try
   * them after the ones they were configured with. Absent: the directory lists none.
   */
  masterUrls?: string[];
}

export const EMPTY_DIRECTORY: DepotDirectory = { format: 1, version: 0, depots: [] };

/** Why `url` is not an acceptable depot URL, or undefined. */
export function directoryUrlProblem(url: string): string | undefined {
  if (url.length > DIRECTORY_LIMITS.maxUrlChars)
    return `is longer than ${DIRECTORY_LIMITS.maxUrlChars} characters`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'https:')
    return `must use https:// (agents talk to depots over mutual TLS only), not ${u.protocol}//`;
  if (u.username || u.password) return 'must not carry a user or password';
  if (u.search || u.hash || url.includes('?') || url.includes('#'))
    return 'must not carry a query or fragment';
  if (!u.hostname) return 'has no host';
  if (/\s/.test(url)) return 'contains white space';
  return undefined;
}

/** The URL as agents use it: trailing slashes removed (the read API paths start with /v1/). */
export function normalizeDirectoryUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

/** The host of a depot URL as a certificate must name it (IPv6 without brackets). */
export function urlHost(url: string): { host: string; ip: boolean } {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  return { host, ip: isIP(host) !== 0 };
}

/** Check one entry (operator input or a signed document): every bad field named at once. */
export function decodeDirectoryEntry(value: unknown, what: string): DirectoryEntry {
  const f = Fields.of(what, value);
  const name = f.string('name', { max: 64, pattern: MACHINE_NAME });
  const url = f.string('url', { max: DIRECTORY_LIMITS.maxUrlChars });
  const site = f.optionalString('site', { max: 64, pattern: MACHINE_NAME });
  f.done();
  const known = new Set(['name', 'url', 'site']);
  const extra = Object.keys(value as object).filter((k) => !known.has(k));
  if (extra.length)
    throw new DepotsyncError('bad-input', `${what}: unknown field ${JSON.stringify(extra[0])}`);
  const problem = directoryUrlProblem(url);
  if (problem)
    throw new DepotsyncError('bad-input', `${what}: url ${JSON.stringify(url)} ${problem}`, {
      hint: 'give the https:// URL agents use to reach this depot',
    });
  return { name, url: normalizeDirectoryUrl(url), ...(site ? { site } : {}) };
}

/** Check a list of master URLs (operator input or signed): https, distinct, at most 16. */
export function decodeMasterUrls(value: unknown, what: string): string[] {
  if (!Array.isArray(value))
    throw new DepotsyncError('bad-input', `${what}: expected an array of https URLs`);
  if (value.length > DIRECTORY_LIMITS.maxMasterUrls)
    throw new DepotsyncError(
      'too-large',
      `${what}: ${value.length} URLs; at most ${DIRECTORY_LIMITS.maxMasterUrls}`,
    );
  const out: string[] = [];
  value.forEach((u, i) => {
    const problem = typeof u === 'string' ? directoryUrlProblem(u) : 'is not a string';
    if (problem)
      throw new DepotsyncError('bad-input', `${what}[${i}]: ${JSON.stringify(u)} ${problem}`, {
        hint: 'give the https:// URLs depots and agents use to reach the masters',
      });
    const url = normalizeDirectoryUrl(u as string);
    if (out.includes(url))
      throw new DepotsyncError('bad-input', `${what}[${i}]: ${JSON.stringify(u)} is listed twice`);
    out.push(url);
  });
  return out;
}

/** Decode a directory document at the border (and `masterUrls`, where a stored copy carries them). */
export function decodeDirectory(value: unknown, what: string): DepotDirectory {
  const f = Fields.of(what, value);
  f.int('format', { min: 1, max: 1 });
  const version = f.int('version', { min: 0 });
  f.done();
  const v = value as Record<string, unknown>;
  const masterUrls =
    v.masterUrls === undefined ? undefined : decodeMasterUrls(v.masterUrls, `${what}: masterUrls`);
  if (!Array.isArray(v.depots)) throw new DepotsyncError('bad-input', `${what}: depots: expected an array`);
  if (v.depots.length > DIRECTORY_LIMITS.maxDepots)
    throw new DepotsyncError(
      'too-large',
      `${what}: ${v.depots.length} depots; at most ${DIRECTORY_LIMITS.maxDepots}`,
    );
  const depots = v.depots.map((d, i) => decodeDirectoryEntry(d, `${what}: depots[${i}]`));
  for (let i = 1; i < depots.length; i++) {
    if ((depots[i - 1] as DirectoryEntry).name >= (depots[i] as DirectoryEntry).name) {
      throw new DepotsyncError(
        'bad-input',
        `${what}: depots must be sorted by name without duplicates (at ${JSON.stringify(depots[i]?.name)})`,
      );
    }
  }
  return { format: 1, version, depots, ...(masterUrls?.length ? { masterUrls } : {}) };
}

/** The document as signed (the master URLs travel beside it, MASTER_URLS_CUSTOM_KEY). */
function documentOf(d: DepotDirectory): Omit<DepotDirectory, 'masterUrls'> {
  return { format: d.format, version: d.version, depots: d.depots };
}

/** The canonical bytes of a directory: what the target's length and SHA-256 describe. */
export function encodeDirectory(d: DepotDirectory): Buffer {
  return canonicalize(documentOf(d));
}

/** Whether two directories list the same master URLs in the same order. */
export function sameMasterUrls(a: DepotDirectory, b: DepotDirectory): boolean {
  return JSON.stringify(a.masterUrls ?? []) === JSON.stringify(b.masterUrls ?? []);
}

function withMasters(d: DepotDirectory, masterUrls: readonly string[] | undefined): DepotDirectory {
  const urls = masterUrls ?? d.masterUrls;
  return { ...documentOf(d), ...(urls?.length ? { masterUrls: [...urls] } : {}) };
}

/** The directory with `entry` added or replaced (sorted by name), version + 1. */
export function withEntry(
  d: DepotDirectory,
  entry: DirectoryEntry,
  masterUrls?: readonly string[],
): DepotDirectory {
  const depots = [...d.depots.filter((e) => e.name !== entry.name), entry].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  return withMasters({ ...d, format: 1, version: d.version + 1, depots }, masterUrls);
}

export function withoutEntry(
  d: DepotDirectory,
  name: string,
  masterUrls?: readonly string[],
): DepotDirectory {
  return withMasters(
    { ...d, format: 1, version: d.version + 1, depots: d.depots.filter((e) => e.name !== name) },
    masterUrls,
  );
}

/** The directory listing `masterUrls` (none when empty), version + 1. */
export function withMasterUrls(d: DepotDirectory, masterUrls: readonly string[]): DepotDirectory {
  const next = { ...documentOf(d), version: d.version + 1 };
  return masterUrls.length ? { ...next, masterUrls: [...masterUrls] } : next;
}

/** The TUF target describing a directory (for the repository to sign into targets.json). */
export function directoryTarget(d: DepotDirectory): {
  length: number;
  sha256: string;
  custom: Record<string, unknown>;
} {
  const bytes = encodeDirectory(d);
  return {
    length: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    custom: {
      [DIRECTORY_CUSTOM_KEY]: structuredClone(documentOf(d)),
      ...(d.masterUrls?.length ? { [MASTER_URLS_CUSTOM_KEY]: [...d.masterUrls] } : {}),
    },
  };
}

/**
 * The directory carried by a signed target: decoded at the border, and its canonical bytes must be
 * exactly the length and SHA-256 the target lists (the two signed descriptions must agree).
 */
export function directoryFromTarget(
  target: { length: number; hashes: Record<string, string>; custom: Record<string, unknown> },
  what: string,
): DepotDirectory {
  const raw = Object.prototype.hasOwnProperty.call(target.custom, DIRECTORY_CUSTOM_KEY)
    ? target.custom[DIRECTORY_CUSTOM_KEY]
    : undefined;
  if (raw === undefined)
    throw new DepotsyncError('bad-metadata', `${what}: the target carries no ${DIRECTORY_CUSTOM_KEY}`);
  let d: DepotDirectory;
  try {
    d = decodeDirectory(raw, what);
    // Only beside the document (a copy inside would not be covered by its SHA-256).
    delete d.masterUrls;
    const urls = Object.prototype.hasOwnProperty.call(target.custom, MASTER_URLS_CUSTOM_KEY)
      ? target.custom[MASTER_URLS_CUSTOM_KEY]
      : undefined;
    if (urls !== undefined) {
      const masterUrls = decodeMasterUrls(urls, `${what}: custom.${MASTER_URLS_CUSTOM_KEY}`);
      if (masterUrls.length) d.masterUrls = masterUrls;
    }
  } catch (e) {
    throw new DepotsyncError('bad-metadata', (e as Error).message, {
      hint: 'the master signed a malformed depot directory; report it to the master operator',
      cause: e,
    });
  }
  const bytes = encodeDirectory(d);
  const want = target.hashes.sha256 ?? '';
  const got = createHash('sha256').update(bytes).digest();
  if (
    bytes.length !== target.length ||
    !/^[0-9a-f]{64}$/.test(want) ||
    !timingSafeEqual(got, Buffer.from(want, 'hex'))
  ) {
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: the document does not match the length and SHA-256 its target lists`,
      {
        hint: 'the master signed an inconsistent depot directory; report it to the master operator',
      },
    );
  }
  return d;
}
