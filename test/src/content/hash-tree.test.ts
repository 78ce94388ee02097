import { hash } from 'blake3';
import { describe, expect, it } from 'vitest';
import {
  inclusionProof,
  leafHash,
  MerkleTree,
  nodeHash,
  treeRoot,
  verifyInclusion,
} from '../../../src/content/hash-tree.js';
import { errorOf } from './helpers.js';

// Reference hashing straight from the blake3 package, independent of src/hash.
const H = (...parts: Uint8Array[]): Buffer => hash(Buffer.concat(parts)) as Buffer;
const leaf = (id: Uint8Array): Buffer => H(Uint8Array.of(0), id);
const node = (l: Uint8Array, r: Uint8Array): Buffer => H(Uint8Array.of(1), l, r);
const ids = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => H(Buffer.from(`chunk ${i}`)));

/** RFC 6962 §2.1 MTH, written recursively as in the RFC. */
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return H(new Uint8Array(0));
  if (d.length === 1) return leaf(d[0] as Buffer);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return node(mth(d.slice(0, k)), mth(d.slice(k)));
}

describe('treeRoot', () => {
  it('matches trees computed by hand', () => {
    const [a, b, c, d, e] = ids(5) as [Buffer, Buffer, Buffer, Buffer, Buffer];
    expect(treeRoot([])).toEqual(
      Buffer.from('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', 'hex'),
    ); // BLAKE3("")
    expect(treeRoot([a])).toEqual(leaf(a));
    expect(treeRoot([a, b])).toEqual(node(leaf(a), leaf(b)));
    expect(treeRoot([a, b, c])).toEqual(node(node(leaf(a), leaf(b)), leaf(c)));
    expect(treeRoot([a, b, c, d])).toEqual(node(node(leaf(a), leaf(b)), node(leaf(c), leaf(d))));
    expect(treeRoot([a, b, c, d, e])).toEqual(
      node(node(node(leaf(a), leaf(b)), node(leaf(c), leaf(d))), leaf(e)),
    );
    expect(leafHash(a)).toEqual(leaf(a));
    expect(nodeHash(a, b)).toEqual(node(a, b));
  });

  it('equals the recursive RFC 6962 definition for 0..70 leaves', () => {
    const all = ids(70);
    for (let n = 0; n <= 70; n++) expect(treeRoot(all.slice(0, n)), `n=${n}`).toEqual(mth(all.slice(0, n)));
  });

  it('separates leaves from nodes (second-preimage resistance)', () => {
    const [a, b] = ids(2) as [Buffer, Buffer];
    // A "leaf" whose id is the inner node of [a, b] must not give the root of [a, b].
    expect(treeRoot([node(leaf(a), leaf(b))])).not.toEqual(treeRoot([a, b]));
  });

  it('accepts one buffer of concatenated ids, and refuses ids that are not 32 bytes', () => {
    const list = ids(17);
    expect(treeRoot(Buffer.concat(list))).toEqual(treeRoot(list));
    expect(treeRoot(new Uint8Array(0))).toEqual(treeRoot([]));
    const e = errorOf(() => treeRoot(Buffer.alloc(33)));
    expect(e.code).toBe('bad-input');
    expect(e.message).toBe('hash tree: 33 bytes of chunk ids is not a multiple of 32');
    expect(errorOf(() => treeRoot([Buffer.alloc(32), Buffer.alloc(31)])).message).toBe(
      'hash tree: chunk id 1 is not 32 bytes',
    );
  });

  it('handles a 1 GiB package worth of leaves (16,384)', () => {
    const list = ids(16_384);
    const tree = MerkleTree.build(Buffer.concat(list));
    expect(tree.count).toBe(16_384);
    expect(tree.root).toEqual(mth(list));
    expect(verifyInclusion(tree.root, 12_345, 16_384, list[12_345] as Buffer, tree.proof(12_345))).toBe(true);
  });
});

describe('inclusion proofs', () => {
  it('prove and verify every index of trees of 1..33 leaves', () => {
    const all = ids(33);
    for (let n = 1; n <= 33; n++) {
      const list = all.slice(0, n);
      const tree = MerkleTree.build(list);
      expect(tree.root).toEqual(treeRoot(list));
      for (let i = 0; i < n; i++) {
        const proof = tree.proof(i);
        expect(proof).toEqual(inclusionProof(list, i));
        expect(verifyInclusion(tree.root, i, n, list[i] as Buffer, proof), `n=${n} i=${i}`).toBe(true);
      }
    }
  });

  it('gives the RFC 6962 audit path for a small tree', () => {
    const [a, b, c, d, e, f, g] = ids(7) as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
    // RFC 6962 §2.1.3, the example tree of 7 leaves: PATH(3, D7) = [c, k, j] and PATH(6, D7) = [i, l].
    expect(inclusionProof([a, b, c, d, e, f, g], 3)).toEqual([
      leaf(c),
      node(leaf(a), leaf(b)),
      node(node(leaf(e), leaf(f)), leaf(g)),
    ]);
    expect(inclusionProof([a, b, c, d, e, f, g], 6)).toEqual([node(leaf(e), leaf(f)), mth([a, b, c, d])]);
  });

  it('fails for a wrong id, index, proof element, proof length or root', () => {
    const all = ids(33);
    for (let n = 2; n <= 33; n++) {
      const list = all.slice(0, n);
      const tree = MerkleTree.build(list);
      for (let i = 0; i < n; i++) {
        const id = list[i] as Buffer;
        const proof = tree.proof(i);
        const root = tree.root;
        expect(verifyInclusion(root, i, n, list[(i + 1) % n] as Buffer, proof)).toBe(false); // wrong id
        expect(verifyInclusion(root, (i + 1) % n, n, id, proof)).toBe(false); // wrong index
        for (let j = 0; j < proof.length; j++) {
          const bad = proof.map((p) => Buffer.from(p));
          const flipped = bad[j] as Buffer;
          flipped.writeUInt8(flipped.readUInt8(0) ^ 1, 0);
          expect(verifyInclusion(root, i, n, id, bad)).toBe(false); // wrong proof element
        }
        expect(verifyInclusion(root, i, n, id, proof.slice(0, -1))).toBe(false); // short proof
        expect(verifyInclusion(root, i, n, id, [...proof, root])).toBe(false); // long proof
        const badRoot = Buffer.from(root);
        badRoot.writeUInt8(badRoot.readUInt8(31) ^ 0x80, 31);
        expect(verifyInclusion(badRoot, i, n, id, proof)).toBe(false);
      }
    }
  });

  it('returns false for malformed arguments instead of throwing', () => {
    const list = ids(4);
    const tree = MerkleTree.build(list);
    const id = list[0] as Buffer;
    const proof = tree.proof(0);
    expect(verifyInclusion(tree.root.subarray(0, 31), 0, 4, id, proof)).toBe(false);
    expect(verifyInclusion(tree.root, 0, 4, id.subarray(1), proof)).toBe(false);
    expect(verifyInclusion(tree.root, -1, 4, id, proof)).toBe(false);
    expect(verifyInclusion(tree.root, 4, 4, id, proof)).toBe(false);
    expect(verifyInclusion(tree.root, 0.5, 4, id, proof)).toBe(false);
    expect(verifyInclusion(tree.root, 0, 0, id, proof)).toBe(false);
    expect(verifyInclusion(tree.root, 0, 4, id, [proof[0] as Buffer, Buffer.alloc(16)])).toBe(false);
    const one = MerkleTree.build([id]);
    expect(one.proof(0)).toEqual([]);
    expect(verifyInclusion(one.root, 0, 1, id, [])).toBe(true);
    expect(verifyInclusion(one.root, 0, 1, id, [id])).toBe(false);
    expect(errorOf(() => tree.proof(4)).message).toBe('hash tree: leaf index 4 is outside the 4 leaves');
    expect(errorOf(() => MerkleTree.build([]).proof(0)).code).toBe('bad-input');
  });
});
