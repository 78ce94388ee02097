import { describe, expect, it } from 'vitest';
import { checkFileChunks } from '../../agent/fetch/staging.js';
import { blake3Hex } from '../../src/hash/blake3.js';
import { pseudoRandomBytes } from '../helpers/tmp.js';

/** A file entry cut into chunks of the given lengths, and a reader over `bytes` (short reads of at most `maxRead`). */
function setup(bytes: Buffer, lengths: number[], maxRead = Infinity) {
  const chunks: Array<{ id: string; length: number }> = [];
  let at = 0;
  for (const n of lengths) {
    chunks.push({ id: blake3Hex(bytes.subarray(at, at + n)), length: n });
    at += n;
  }
  const f = { path: 'x.bin', mode: 0o644, size: at, chunks };
  return {
    f,
    reader: (data: Buffer) => async (into: Buffer, length: number, position: number) => {
      const n = Math.max(0, Math.min(length, maxRead, data.length - position));
      data.copy(into, 0, position, position + n);
      return n;
    },
  };
}

describe('checkFileChunks (the whole-file check, reading ahead)', () => {
  const data = pseudoRandomBytes(300_000, 4);
  // Chunks of many sizes, most of them across the 8 KiB blocks used here, one longer than a block.
  const lengths: number[] = [];
  for (let left = data.length, i = 0; left > 0; i++) {
    const n = Math.min(left, i === 5 ? 20_000 : 1 + ((i * 7919) % 9000));
    lengths.push(n);
    left -= n;
  }

  it('passes the file as written, whatever the block size and however short the reads', async () => {
    for (const [block, maxRead] of [
      [8192, Infinity],
      [8192, 1000],
      [4096, 5000],
      [1 << 20, Infinity],
    ] as const) {
      const { f, reader } = setup(data, lengths, maxRead);
      await expect(checkFileChunks(reader(data), f, block)).resolves.toBeUndefined();
    }
  });

  it('names the chunk and offset of a changed byte, also in a chunk across two blocks', async () => {
    const { f, reader } = setup(data, lengths);
    let at = 0;
    for (const [i, n] of lengths.entries()) {
      if (Math.floor(at / 8192) !== Math.floor((at + n - 1) / 8192) && i > 2) {
        const bad = Buffer.from(data);
        bad[at + n - 1] ^= 0x01; // the last byte: in the second block
        await expect(checkFileChunks(reader(bad), f, 8192)).rejects.toThrow(
          `bytes at offset ${at} do not match chunk ${f.chunks[i]!.id}`,
        );
        return;
      }
      at += n;
    }
    throw new Error('no chunk across a block boundary in the test data');
  });

  it('refuses a short file and a longer one', async () => {
    const { f, reader } = setup(data, lengths);
    await expect(checkFileChunks(reader(data.subarray(0, data.length - 1)), f, 8192)).rejects.toThrow(
      /do not match chunk/,
    );
    await expect(checkFileChunks(reader(Buffer.concat([data, Buffer.from([0])])), f, 8192)).rejects.toThrow(
      'is longer than 300000 bytes',
    );
    // A file that ends exactly on a block boundary, with one more block after it.
    const exact = data.subarray(0, 8192 * 4);
    const e = setup(exact, [8192, 8192, 16384]);
    await expect(checkFileChunks(e.reader(exact), e.f, 8192)).resolves.toBeUndefined();
    await expect(
      checkFileChunks(e.reader(Buffer.concat([exact, Buffer.alloc(8192)])), e.f, 8192),
    ).rejects.toThrow(/longer than/);
  });

  it('an empty file: no chunks and no bytes', async () => {
    const { f, reader } = setup(Buffer.alloc(0), []);
    await expect(checkFileChunks(reader(Buffer.alloc(0)), f, 8192)).resolves.toBeUndefined();
    await expect(checkFileChunks(reader(Buffer.from('x')), f, 8192)).rejects.toThrow(/longer than 0 bytes/);
  });
});
