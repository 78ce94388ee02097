import { describe, expect, it } from 'vitest';
import { DELTA_WINDOW_BYTES } from '../../../src/content/delta-pairs.js';
import type { Manifest, ManifestFile } from '../../../src/content/manifest.js';
import { AnchorIndex, ContentBases, oldFileOf } from '../../../src/deltas/content-bases.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { pseudoRandomBytes } from '../../helpers/tmp.js';

const KIB = 1024;

/** A file cut into fixed 64 KiB chunks, and a reader of them. */
function fileOf(path: string, bytes: Buffer, chunks: Map<string, Buffer>): ManifestFile {
  const refs = [];
  for (let at = 0; at < bytes.length; at += 64 * KIB) {
    const c = bytes.subarray(at, at + 64 * KIB);
    const id = blake3Hex(c);
    chunks.set(id, c);
    refs.push({ id, length: c.length });
  }
  return { path, mode: 'file', size: bytes.length, chunks: refs } as unknown as ManifestFile;
}

describe('delta bases chosen by content', () => {
  // The old build: 4 MiB. The new one: its second half first, with an edit every 7 KiB, so every chunk
  // is new and its code sits 2 MiB away from the same relative position.
  const old = pseudoRandomBytes(4 * 1024 * KIB, 1);
  const now = Buffer.concat([old.subarray(2 * 1024 * KIB), old.subarray(0, 2 * 1024 * KIB)]);
  for (let i = 3000; i < now.length; i += 7 * KIB) now[i]! ^= 0x5a;
  const chunks = new Map<string, Buffer>();
  const oldFile = fileOf('tool', old, chunks);
  const newFile = fileOf('tool', now, chunks);
  const read = async (id: string) => chunks.get(id);

  it('finds where a new chunk came from in the old file, wherever it moved', async () => {
    const index = (await AnchorIndex.build(oldFile, read))!;
    expect(index.step).toBe(32);
    // New offset 128 KiB came from old offset 2 MiB + 128 KiB.
    const target = now.subarray(128 * KIB, 192 * KIB);
    expect(index.vote(target)).toBe(2 * 1024 * KIB + 128 * KIB);
    const bases = index.window(2 * 1024 * KIB + 128 * KIB, target.length);
    // The window's chunks: DELTA_WINDOW_BYTES, and one more where its ends cut chunks.
    expect(bases.length).toBe(DELTA_WINDOW_BYTES / (64 * KIB) + 1);
    const from = oldFile.chunks.findIndex((c) => c.id === bases[0]);
    expect(from * 64 * KIB).toBeLessThanOrEqual(2 * 1024 * KIB + 128 * KIB);
    expect((from + bases.length) * 64 * KIB).toBeGreaterThanOrEqual(2 * 1024 * KIB + 192 * KIB);
    // Bytes the old file never had get no vote: the window the manifests give stays.
    expect(index.vote(pseudoRandomBytes(64 * KIB, 99))).toBeUndefined();
  });

  it('chooses per chunk of the new version, from the file it replaces; none for a file it cannot read', async () => {
    const m = (f: ManifestFile): Manifest => ({ files: [f] }) as unknown as Manifest;
    const wanted = new Set(newFile.chunks.map((c) => c.id));
    const files = oldFileOf(m(newFile), m(oldFile), wanted);
    expect(files.size).toBe(newFile.chunks.length);
    const chooser = new ContentBases(files, read);
    const third = newFile.chunks[3]!;
    const bases = (await chooser.choose(third.id, chunks.get(third.id)!))!;
    const first = oldFile.chunks.findIndex((c) => c.id === bases[0]);
    // New chunk 3 (192 KiB) is old offset 2 MiB + 192 KiB: old chunk 35, inside the chosen run.
    expect(first).toBeLessThanOrEqual(35);
    expect(first + bases.length).toBeGreaterThan(35);
    const blind = new ContentBases(files, async () => undefined);
    expect(await blind.choose(third.id, chunks.get(third.id)!)).toBeUndefined();
    expect(await chooser.choose('f'.repeat(64), chunks.get(third.id)!)).toBeUndefined();
  });
});

describe('delta bases chosen by content, for an edit in place', () => {
  it("keeps the pair's window when the chunk came from inside it (no ids need to travel)", async () => {
    const old = pseudoRandomBytes(1024 * KIB, 3);
    const now = Buffer.from(old);
    for (let i = 1000; i < now.length; i += 9 * KIB) now[i]! ^= 0x11;
    const chunks = new Map<string, Buffer>();
    const oldFile = fileOf('lib.js', old, chunks);
    const newFile = fileOf('lib.js', now, chunks);
    const m = (f: ManifestFile): Manifest => ({ files: [f] }) as unknown as Manifest;
    const chooser = new ContentBases(
      oldFileOf(m(newFile), m(oldFile), new Set(newFile.chunks.map((c) => c.id))),
      async (id) => chunks.get(id),
    );
    const c = newFile.chunks[5]!;
    const window = oldFile.chunks.slice(3, 8).map((x) => x.id);
    expect(await chooser.choose(c.id, chunks.get(c.id)!, window)).toBeUndefined();
    // A window elsewhere does not hold it: the content's window is chosen.
    const elsewhere = oldFile.chunks.slice(10, 14).map((x) => x.id);
    const bases = (await chooser.choose(c.id, chunks.get(c.id)!, elsewhere))!;
    expect(bases).toContain(oldFile.chunks[5]!.id);
  });
});
