import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { APPEND_PIECE_BYTES, appendDurably, PackAppender } from '../../../src/store/pack-files.js';
import { errorOf, tempDir } from './helpers.js';

describe('appendDurably', () => {
  it('writes a large append in pieces (with early flushes) exactly where asked, and drops an old tail', async () => {
    const path = join(tempDir(), 'pack.dat');
    const head = Buffer.alloc(100, 0x11);
    writeFileSync(path, Buffer.concat([head, Buffer.alloc(5000, 0xee)])); // 5000 bytes of uncommitted tail
    // More than two pieces, in buffers of uneven sizes (some larger than a piece's remainder).
    const buffers = Array.from({ length: 40 }, (_, i) =>
      randomBytes(i % 7 === 0 ? 3 * 1024 * 1024 : 100_003),
    );
    const total = buffers.reduce((n, b) => n + b.length, 0);
    expect(total).toBeGreaterThan(2 * APPEND_PIECE_BYTES);
    const end = await appendDurably(path, false, head.length, buffers);
    expect(end).toBe(head.length + total);
    expect(readFileSync(path).equals(Buffer.concat([head, ...buffers]))).toBe(true);
  });

  it('a pack that cannot be opened is an error naming it', async () => {
    const path = join(tempDir(), 'no-such-folder', 'pack.dat');
    const err = await errorOf(appendDurably(path, true, 0, [Buffer.from('x')]));
    expect(err.code).toBe('not-found');
    expect(err.message).toContain(path);
  });
});

describe('PackAppender', () => {
  it('drops an old tail when it opens, so a shorter append leaves the file at exactly its new end', async () => {
    const path = join(tempDir(), 'pack.dat');
    const head = Buffer.alloc(100, 0x11);
    writeFileSync(path, Buffer.concat([head, Buffer.alloc(50_000, 0xee)])); // an interrupted append's tail
    const w = await PackAppender.open(path, false, head.length, 16 * 1024);
    expect(readFileSync(path).equals(head)).toBe(true); // gone before anything is written
    const parts = [randomBytes(20_000), randomBytes(9_000)];
    for (const b of parts) {
      w.position += b.length;
      await w.write([b]); // crosses writebackBytes: an early fdatasync runs alongside
    }
    expect(await w.finish(true)).toBe(head.length + 29_000);
    await w.close();
    expect(readFileSync(path).equals(Buffer.concat([head, ...parts]))).toBe(true);
  });

  it('a failed write is an error naming the pack, and finish reports it too', async () => {
    const path = join(tempDir(), 'pack.dat');
    const w = await PackAppender.open(path, true, 0, 0);
    await w.close(); // the descriptor is gone: the next write fails
    w.position += 10;
    const err = await errorOf(w.write([Buffer.alloc(10)]));
    expect(err.message).toContain(path);
  });
});
