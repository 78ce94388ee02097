import { timingSafeEqual } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { blake3 } from '../hash/blake3.js';
import { blake3Small, blake3SmallInto } from './blake3-small.js';

/**
 * The package hash tree (docs/wire-formats.md): a Merkle tree over the ordered chunk ids of a package, shaped
 * and hashed as RFC 6962 §2.1 (Certificate Transparency) with BLAKE3 in place of SHA-256:
 *
 *   leaf(id)          = BLAKE3(0x00 ‖ id)              id: a 32-byte chunk id
 *   node(left, right) = BLAKE3(0x01 ‖ left ‖ right)
 *   MTH([])           = BLAKE3("")                     (the hash of empty input, as RFC 6962)
 *   MTH([d])          = leaf(d)
 *   MTH(D[0:n])       = node(MTH(D[0:k]), MTH(D[k:n]))  k = the largest power of two < n
 *
 * Distinct leaf and node prefixes stop a second-preimage attack where an inner node is presented as a
 * leaf (or two chunk ids as one node). The RFC 6962 shape equals building level by level and carrying
 * an unpaired last node up unchanged, which is what `MerkleTree` does: 2n hashes, no recursion.
 *
 * Inclusion proofs are RFC 6962 audit paths (siblings from the leaf upwards) and are checked with the
 * RFC 9162 §2.1.3.2 algorithm; the final root comparison is constant-time.
 * The 33- and 65-byte inputs are hashed by blake3-small.ts (same BLAKE3, without the per-call cost of
 * the native addon; it checks itself against ../hash/blake3.js when loaded).
 */
export const ID_BYTES = 32;
const LEAF = 0x00;
const NODE = 0x01;

/** Chunk ids as an array of 32-byte values or as one buffer of concatenated 32-byte ids. */
export type ChunkIds = readonly Uint8Array[] | Uint8Array;

export function leafHash(id: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(1 + ID_BYTES);
  buf[0] = LEAF;
  buf.set(id, 1);
  return blake3Small(buf);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(1 + 2 * ID_BYTES);
  buf[0] = NODE;
  buf.set(left, 1);
  buf.set(right, 1 + ID_BYTES);
  return blake3Small(buf);
}

export class MerkleTree {
  /** levels[0] holds the leaf hashes, 32 bytes each, back to back; the last level is the root alone. */
  private constructor(
    private readonly levels: Buffer[],
    /** Number of leaves (chunk ids). */
    readonly count: number,
  ) {}

  static build(ids: ChunkIds): MerkleTree {
    const leaves = leafLevel(ids);
    const count = leaves.length / ID_BYTES;
    if (count === 0) return new MerkleTree([blake3(new Uint8Array(0))], 0);
    const levels = [leaves];
    const scratch = Buffer.allocUnsafe(1 + 2 * ID_BYTES);
    scratch[0] = NODE;
    for (let level = leaves, n = count; n > 1;) {
      const up = Buffer.allocUnsafe(Math.ceil(n / 2) * ID_BYTES);
      let i = 0;
      for (; i + 1 < n; i += 2) {
        level.copy(scratch, 1, i * ID_BYTES, (i + 2) * ID_BYTES);
        blake3SmallInto(scratch, 0, scratch.length, up, (i / 2) * ID_BYTES);
      }
      if (i < n) level.copy(up, (i / 2) * ID_BYTES, i * ID_BYTES); // unpaired: carried up unchanged
      levels.push(up);
      level = up;
      n = up.length / ID_BYTES;
    }
    return new MerkleTree(levels, count);
  }

  get root(): Buffer {
    return Buffer.from((this.levels[this.levels.length - 1] as Buffer).subarray(0, ID_BYTES));
  }

  /** The audit path of leaf `index`: sibling hashes from the leaf up to the root. */
  proof(index: number): Buffer[] {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.count) {
      throw new DepotsyncError(
        'bad-input',
        `hash tree: leaf index ${index} is outside the ${this.count} leaves`,
      );
    }
    const path: Buffer[] = [];
    let i = index;
    for (let l = 0; l < this.levels.length - 1; l++) {
      const level = this.levels[l] as Buffer;
      const sibling = i ^ 1;
      if (sibling < level.length / ID_BYTES) {
        path.push(Buffer.from(level.subarray(sibling * ID_BYTES, (sibling + 1) * ID_BYTES)));
      } // else: unpaired at this level, carried up
      i >>= 1;
    }
    return path;
  }
}

/** The root of the hash tree over `ids` (32 bytes). */
export function treeRoot(ids: ChunkIds): Buffer {
  return MerkleTree.build(ids).root;
}

/** The inclusion proof of `ids[index]`. To prove many leaves, build one `MerkleTree` and call `proof`. */
export function inclusionProof(ids: ChunkIds, index: number): Buffer[] {
  return MerkleTree.build(ids).proof(index);
}

/**
 * Check that chunk `id` is leaf `index` of a tree of `count` leaves whose root is `root`
 * (RFC 9162 §2.1.3.2). Returns false, never throws, for any malformed argument.
 * Threat: a depot serves a chunk that is not the one the signed manifest lists at that place.
 */
export function verifyInclusion(
  root: Uint8Array,
  index: number,
  count: number,
  id: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (root.length !== ID_BYTES || id.length !== ID_BYTES) return false;
  if (!Number.isSafeInteger(count) || !Number.isSafeInteger(index) || index < 0 || index >= count)
    return false;
  // Bit operations below would wrap past 2^31 leaves; no package comes near (that is 128 TiB at 64 KiB).
  if (count > 0x7fffffff) return false;
  let fn = index;
  let sn = count - 1;
  let r: Buffer = leafHash(id);
  for (const p of proof) {
    if (p.length !== ID_BYTES || sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  // Constant-time root comparison: no timing oracle on how many leading bytes of a forged root match.
  return sn === 0 && timingSafeEqual(r, root);
}

/** The leaf hashes of `ids`, back to back in one buffer. */
function leafLevel(ids: ChunkIds): Buffer {
  const scratch = Buffer.allocUnsafe(1 + ID_BYTES);
  scratch[0] = LEAF;
  if (!Array.isArray(ids)) {
    const buf = ids as Uint8Array;
    if (buf.length % ID_BYTES !== 0) {
      throw new DepotsyncError(
        'bad-input',
        `hash tree: ${buf.length} bytes of chunk ids is not a multiple of ${ID_BYTES}`,
      );
    }
    const out = Buffer.allocUnsafe(buf.length);
    for (let at = 0; at < buf.length; at += ID_BYTES) {
      scratch.set(buf.subarray(at, at + ID_BYTES), 1);
      blake3SmallInto(scratch, 0, scratch.length, out, at);
    }
    return out;
  }
  const list = ids as readonly Uint8Array[];
  const out = Buffer.allocUnsafe(list.length * ID_BYTES);
  for (let i = 0; i < list.length; i++) {
    const id = list[i];
    if (!(id instanceof Uint8Array) || id.length !== ID_BYTES) {
      throw new DepotsyncError('bad-input', `hash tree: chunk id ${i} is not ${ID_BYTES} bytes`);
    }
    scratch.set(id, 1);
    blake3SmallInto(scratch, 0, scratch.length, out, i * ID_BYTES);
  }
  return out;
}
