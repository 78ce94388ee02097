import { DepotsyncError } from '../errors.js';
import { blake3Hex } from '../hash/blake3.js';
import { canonicalize } from './canonical-json.js';
import { decodeChunkRecords, encodeChunkRecords, isChunkIdHex, type ChunkRef } from './chunk-records.js';
import { MerkleTree } from './hash-tree.js';
import {
  checkBody,
  expectInt,
  isObject,
  onlyKeys,
  type ChunkingParams,
  type FileMode,
  type ManifestFile,
} from './manifest-check.js';
import { printable } from './printable.js';
import { Problems } from './problems.js';
import { parseStrictJson } from './strict-json.js';

export {
  MAX_CHUNK_BYTES,
  MODE_EXECUTABLE,
  MODE_FILE,
  type ChunkingParams,
  type FileMode,
  type ManifestFile,
} from './manifest-check.js';
export type { ChunkRef } from './chunk-records.js';

/**
 * The package manifest (docs/wire-formats.md), format 1. Canonical JSON (canonical-json.ts); the manifest id
 * is the BLAKE3 hex of those bytes. Keys are shown here in their canonical (sorted) order:
 *
 *   {"chunking":{"avgBytes":65536,"maxBytes":262144,"minBytes":16384},
 *    "files":[{"chunks":"<base64>","mode":493,"path":"bin/setup.exe","size":1048576}, …],
 *    "format":1,"name":"firefox","totalBytes":1048576,
 *    "tree":{"count":16,"root":"<64 hex>"},"version":"128.0.1"}
 *
 * - files: sorted by path (UTF-16 code units), at least one; `path` is relative and "/"-separated
 *   (paths.ts rules), `mode` is 420 (0o644) or 493 (0o755), `size` in bytes.
 * - chunks: ONE base64 string per file of 36-byte records, 32-byte BLAKE3 id ‖ 4-byte big-endian length
 *   (chunk-records.ts), in file order. 16,384 chunks take 786,432 bytes of base64.
 * - tree: the Merkle tree (hash-tree.ts) over every chunk id of every file in order: `count` leaves and
 *   its `root`, so one chunk can be proven with an inclusion proof.
 * - totalBytes: the sum of the file sizes.
 * Unknown fields are refused; a change of shape is a new `format`.
 */
export const MANIFEST_FORMAT = 1;
export const MANIFEST_DEFAULTS = {
  /** ~80 MB of base64 is 1.7 M chunks, ~100 GiB at 64 KiB chunks; larger documents are refused unread. */
  maxBytes: 96 * 1024 * 1024,
};

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  version: string;
  chunking: ChunkingParams;
  files: ManifestFile[];
  totalBytes: number;
  tree: { count: number; root: string };
}

export interface BuildManifestInput {
  name: string;
  version: string;
  chunking: ChunkingParams;
  files: Array<{ path: string; mode: number; size: number; chunks: ChunkRef[] }>;
}

/** The manifest mode for a file of `statMode`: executable when any execute bit is set. */
export function normalizeMode(statMode: number): FileMode {
  return (statMode & 0o111) !== 0 ? 0o755 : 0o644;
}

/** Build (and validate) a manifest from the publisher's file list. Files are sorted by path here. */
export function buildManifest(input: BuildManifestInput): Manifest {
  const p = new Problems(`manifest for ${printable(input?.name)}@${printable(input?.version)}`);
  if (!isObject(input)) throw new DepotsyncError('bad-input', 'manifest: expected an object');
  onlyKeys(p, '', input, ['name', 'version', 'chunking', 'files']);
  const files = Array.isArray(input.files)
    ? [...input.files].sort((a, b) => comparePaths(a?.path, b?.path))
    : input.files;
  const body = checkBody({ ...input, files }, p, (v, field, probs) => {
    if (!Array.isArray(v) || !v.every(isObject)) {
      probs.add(field, 'expected an array of {id, length}');
      return undefined;
    }
    const before = probs.count;
    v.forEach((c, j) => {
      if (!isChunkIdHex(c.id))
        probs.add(`${field}[${j}].id`, `expected 64 lower-case hex digits, got ${printable(c.id)}`);
    });
    return probs.count === before ? (v as unknown as ChunkRef[]) : undefined;
  });
  p.throwIfAny('bad-input', 'fix the package source (names, paths, modes) and publish again');
  const b = body as NonNullable<typeof body>;
  const totalBytes = b.files.reduce((s, f) => s + f.size, 0);
  if (!Number.isSafeInteger(totalBytes))
    throw new DepotsyncError('bad-input', `manifest: total size ${totalBytes} is over 2^53 − 1 bytes`);
  const tree = MerkleTree.build(chunkIdBuffer(b.files));
  return {
    format: MANIFEST_FORMAT,
    name: b.name,
    version: b.version,
    chunking: { ...b.chunking },
    files: b.files.map((f) => ({
      path: f.path,
      mode: f.mode,
      size: f.size,
      chunks: f.chunks.map((c) => ({ id: c.id, length: c.length })),
    })),
    totalBytes,
    tree: { count: tree.count, root: tree.root.toString('hex') },
  };
}

/** The canonical bytes of a manifest: what is stored, served, hashed and listed as a TUF target. */
export function encodeManifest(m: Manifest): Buffer {
  return canonicalize({
    format: m.format,
    name: m.name,
    version: m.version,
    chunking: { minBytes: m.chunking.minBytes, avgBytes: m.chunking.avgBytes, maxBytes: m.chunking.maxBytes },
    files: m.files.map((f) => ({
      path: f.path,
      mode: f.mode,
      size: f.size,
      chunks: encodeChunkRecords(f.chunks),
    })),
    totalBytes: m.totalBytes,
    tree: { count: m.tree.count, root: m.tree.root },
  });
}

/** The manifest id: BLAKE3 of its canonical bytes, 64 hex digits. */
export function manifestId(bytes: Uint8Array): string {
  return blake3Hex(bytes);
}

/**
 * Decode an untrusted manifest at the border. Steps, each with the threat it blocks:
 * 1. size limit before parsing (endless data, memory exhaustion): 'too-large';
 * 2. strict JSON: duplicate keys, non-integers, bad UTF-8 (parser differential): 'bad-json';
 * 3. format 1 only, then every field checked, every problem listed (path traversal, case
 *    collisions, setuid modes, oversized chunks, sizes that do not add up): 'bad-input';
 * 4. the tree root recomputed from the chunk lists (a chunk list that is not what the tree commits to,
 *    so per-chunk proofs and whole-file checks would disagree): 'hash-mismatch';
 * 5. re-encoding gives the same bytes (one manifest, one id: no malleable second form): 'bad-input'.
 */
export function decodeManifest(bytes: Uint8Array, opts: { maxBytes?: number; what?: string } = {}): Manifest {
  const what = opts.what ?? 'manifest';
  const hint =
    'the manifest is damaged or was not made by a depotsync master; do not install from this source';
  const value = parseStrictJson(bytes, { maxBytes: opts.maxBytes ?? MANIFEST_DEFAULTS.maxBytes, what });
  if (!isObject(value)) throw new DepotsyncError('bad-input', `${what}: expected a JSON object`, { hint });
  if (value.format !== MANIFEST_FORMAT) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: format ${printable(value.format)} is not supported (this depotsync reads format ${MANIFEST_FORMAT})`,
      {
        hint: 'upgrade depotsync on this machine',
      },
    );
  }
  const p = new Problems(what);
  onlyKeys(p, '', value, ['format', 'name', 'version', 'chunking', 'files', 'totalBytes', 'tree']);
  const body = checkBody(value, p, (v, field, probs) => {
    const chunks = decodeChunkRecords(v);
    if (typeof chunks === 'string') probs.add(field, chunks);
    return typeof chunks === 'string' ? undefined : chunks;
  });
  const totalBytes = expectInt(p, 'totalBytes', value.totalBytes, 0, Number.MAX_SAFE_INTEGER, '0..2^53 − 1');
  let count: number | undefined;
  let root: string | undefined;
  if (!isObject(value.tree)) p.add('tree', `expected an object, got ${printable(value.tree)}`);
  else {
    onlyKeys(p, 'tree', value.tree, ['count', 'root']);
    count = expectInt(p, 'tree.count', value.tree.count, 0, Number.MAX_SAFE_INTEGER, '0..2^53 − 1');
    if (typeof value.tree.root === 'string' && /^[0-9a-f]{64}$/.test(value.tree.root)) root = value.tree.root;
    else p.add('tree.root', `expected 64 lower-case hex digits, got ${printable(value.tree.root)}`);
  }
  if (body) {
    const sum = body.files.reduce((s, f) => s + f.size, 0);
    if (totalBytes !== undefined && sum !== totalBytes)
      p.add('totalBytes', `${totalBytes} is not the sum of the file sizes (${sum})`);
    const chunks = body.files.reduce((s, f) => s + f.chunks.length, 0);
    if (count !== undefined && chunks !== count)
      p.add('tree.count', `${count} is not the number of chunks (${chunks})`);
  }
  p.throwIfAny('bad-input', hint);
  const m = body as NonNullable<typeof body>;
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    ...m,
    totalBytes: totalBytes as number,
    tree: { count: count as number, root: root as string },
  };
  // Threat: a chunk list the signed tree root does not commit to.
  const actual = MerkleTree.build(chunkIdBuffer(manifest.files)).root;
  if (!actual.equals(Buffer.from(manifest.tree.root, 'hex'))) {
    throw new DepotsyncError(
      'hash-mismatch',
      `${what} ${printable(manifest.name)}@${printable(manifest.version)}: manifest tree root does not match its chunk list`,
      { hint },
    );
  }
  // Threat: a second byte form of the same manifest (key order, whitespace, escapes) with another id.
  const again = encodeManifest(manifest);
  if (!again.equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: not in canonical JSON form (sorted keys, no whitespace, minimal escapes)`,
      { hint },
    );
  }
  return manifest;
}

/** Every chunk of the package in order, with the file it belongs to and its offset in that file. */
export function manifestChunks(
  m: Manifest,
): Array<{ id: string; length: number; fileIndex: number; offset: number }> {
  const out: Array<{ id: string; length: number; fileIndex: number; offset: number }> = [];
  m.files.forEach((f, fileIndex) => {
    let offset = 0;
    for (const c of f.chunks) {
      out.push({ id: c.id, length: c.length, fileIndex, offset });
      offset += c.length;
    }
  });
  return out;
}

/** The distinct chunk ids of the package, in order of first appearance. */
export function uniqueChunkIds(m: Manifest): string[] {
  const seen = new Set<string>();
  for (const f of m.files) for (const c of f.chunks) seen.add(c.id);
  return [...seen];
}

/** The hash tree of a manifest, to make inclusion proofs for its chunks (leaf i = manifestChunks(m)[i]). */
export function manifestTree(m: Manifest): MerkleTree {
  return MerkleTree.build(chunkIdBuffer(m.files));
}

function chunkIdBuffer(files: readonly ManifestFile[]): Buffer {
  const n = files.reduce((s, f) => s + f.chunks.length, 0);
  const buf = Buffer.allocUnsafe(n * 32);
  let at = 0;
  for (const f of files) for (const c of f.chunks) at += buf.write(c.id, at, 32, 'hex');
  return buf;
}

function comparePaths(a: unknown, b: unknown): number {
  const x = typeof a === 'string' ? a : '';
  const y = typeof b === 'string' ? b : '';
  return x < y ? -1 : x > y ? 1 : 0;
}
