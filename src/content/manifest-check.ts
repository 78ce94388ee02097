import type { ChunkRef } from './chunk-records.js';
import { nameProblem, pathListProblems, pathProblem } from './paths.js';
import { printable } from './printable.js';
import type { Problems } from './problems.js';

/**
 * Field checks shared by `buildManifest` (input from the publisher) and `decodeManifest` (input from
 * the network): each problem is recorded with its field name and the checks go on, so one error lists
 * every bad field. Security-relevant limits and the threat each one blocks:
 * - chunk lengths ≤ chunking.maxBytes ≤ MAX_CHUNK_BYTES: a receiver buffers one chunk in memory, so a
 *   hostile manifest must not announce a 4 GiB chunk (memory exhaustion).
 * - sizes are safe integers equal to the sum of their chunk lengths: a file cannot be announced
 *   smaller than the bytes written for it (endless data) or larger (truncation passed off as complete).
 * - paths: see paths.ts (path traversal, case collisions on Windows and macOS).
 * - modes are 0o644 or 0o755 only (as git does): no setuid/setgid/sticky bits and no group/world
 *   write, so a package cannot install a setuid binary or a file others may tamper with.
 */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
export const MODE_FILE = 0o644;
export const MODE_EXECUTABLE = 0o755;
export type FileMode = typeof MODE_FILE | typeof MODE_EXECUTABLE;

export interface ChunkingParams {
  minBytes: number;
  avgBytes: number;
  maxBytes: number;
}

export interface ManifestFile {
  /** Relative, "/"-separated; see paths.ts. */
  path: string;
  mode: FileMode;
  size: number;
  chunks: ChunkRef[];
}

export interface ManifestBody {
  name: string;
  version: string;
  chunking: ChunkingParams;
  files: ManifestFile[];
}

/**
 * Turns a file's `chunks` field into chunk records with well-formed ids, or records a problem and
 * returns undefined. Lengths are checked by `checkBody`.
 */
export type ChunkReader = (value: unknown, field: string, p: Problems) => ChunkRef[] | undefined;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function expectInt(
  p: Problems,
  field: string,
  v: unknown,
  min: number,
  max: number,
  range: string,
): number | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max) return v;
  p.add(field, `expected integer ${range}, got ${printable(v)}`);
  return undefined;
}

/** Unknown fields are refused: a manifest has one byte form, and format changes bump `format`. */
export function onlyKeys(
  p: Problems,
  field: string,
  obj: Record<string, unknown>,
  keys: readonly string[],
): void {
  for (const k of Object.keys(obj))
    if (!keys.includes(k)) p.add(field ? `${field}.${k}` : k, 'unknown field');
}

export function checkBody(
  input: Record<string, unknown>,
  p: Problems,
  readChunks: ChunkReader,
): ManifestBody | undefined {
  const before = p.count;
  const name = input.name;
  const nameBad = nameProblem(name);
  if (nameBad) p.add('name', `${printable(name)}: ${nameBad}`);
  const version = input.version;
  const versionBad = nameProblem(version);
  if (versionBad) p.add('version', `${printable(version)}: ${versionBad}`);
  const chunking = checkChunking(p, input.chunking);
  const files: ManifestFile[] = [];
  if (!Array.isArray(input.files)) p.add('files', `expected an array, got ${printable(input.files)}`);
  else if (input.files.length === 0) p.add('files', 'a package needs at least one file');
  else
    input.files.forEach((f, i) => {
      const file = checkFile(p, `files[${i}]`, f, chunking, readChunks);
      if (file) files.push(file);
    });
  if (p.count > before) return undefined;
  const paths = files.map((f) => f.path);
  for (const [i, msg] of pathListProblems(paths)) p.add(`files[${i}].path`, msg);
  for (let i = 1; i < paths.length; i++) {
    if ((paths[i - 1] as string) > (paths[i] as string))
      p.add(`files[${i}].path`, `${printable(paths[i])} is out of order (files are sorted by path)`);
  }
  if (p.count > before) return undefined;
  return { name: name as string, version: version as string, chunking: chunking as ChunkingParams, files };
}

function checkChunking(p: Problems, v: unknown): ChunkingParams | undefined {
  if (!isObject(v)) {
    p.add('chunking', `expected an object, got ${printable(v)}`);
    return undefined;
  }
  onlyKeys(p, 'chunking', v, ['minBytes', 'avgBytes', 'maxBytes']);
  const range = `1..${MAX_CHUNK_BYTES}`;
  const minBytes = expectInt(p, 'chunking.minBytes', v.minBytes, 1, MAX_CHUNK_BYTES, range);
  const avgBytes = expectInt(p, 'chunking.avgBytes', v.avgBytes, 1, MAX_CHUNK_BYTES, range);
  const maxBytes = expectInt(p, 'chunking.maxBytes', v.maxBytes, 1, MAX_CHUNK_BYTES, range);
  if (minBytes === undefined || avgBytes === undefined || maxBytes === undefined) return undefined;
  if (!(minBytes <= avgBytes && avgBytes <= maxBytes)) {
    p.add('chunking', `expected minBytes ≤ avgBytes ≤ maxBytes, got ${minBytes}, ${avgBytes}, ${maxBytes}`);
    return undefined;
  }
  return { minBytes, avgBytes, maxBytes };
}

function checkFile(
  p: Problems,
  at: string,
  f: unknown,
  chunking: ChunkingParams | undefined,
  readChunks: ChunkReader,
): ManifestFile | undefined {
  if (!isObject(f)) {
    p.add(at, `expected an object, got ${printable(f)}`);
    return undefined;
  }
  const before = p.count;
  onlyKeys(p, at, f, ['path', 'mode', 'size', 'chunks']);
  const pathBad = pathProblem(f.path);
  if (pathBad) p.add(`${at}.path`, typeof f.path === 'string' ? `${printable(f.path)}: ${pathBad}` : pathBad);
  if (f.mode !== MODE_FILE && f.mode !== MODE_EXECUTABLE) {
    p.add(
      `${at}.mode`,
      `expected ${MODE_FILE} (0o644) or ${MODE_EXECUTABLE} (0o755), got ${printable(f.mode)}`,
    );
  }
  const size = expectInt(p, `${at}.size`, f.size, 0, Number.MAX_SAFE_INTEGER, '0..2^53 − 1');
  const chunks = readChunks(f.chunks, `${at}.chunks`, p);
  if (chunks) {
    let sum = 0;
    const limit = chunking?.maxBytes ?? MAX_CHUNK_BYTES;
    let bad = 0;
    chunks.forEach((c, j) => {
      if (!Number.isSafeInteger(c.length) || c.length < 1 || c.length > limit) {
        if (bad++ < 3)
          p.add(
            `${at}.chunks[${j}].length`,
            `expected integer 1..${limit} (chunking.maxBytes), got ${printable(c.length)}`,
          );
      } else sum += c.length;
    });
    if (bad > 3) p.add(`${at}.chunks`, `${bad - 3} more chunks with a bad length`);
    if (bad === 0 && size !== undefined && sum !== size)
      p.add(`${at}.size`, `${size} is not the sum of its chunk lengths (${sum})`);
  }
  if (p.count > before) return undefined;
  return {
    path: f.path as string,
    mode: f.mode as FileMode,
    size: size as number,
    chunks: chunks as ChunkRef[],
  };
}
