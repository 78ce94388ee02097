import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { APPEND_PIECE_BYTES, appendDurably } from '../../../src/store/pack-files.js';
import { errorOf, tempDir } from './helpers.js';

describe('appendDurably', () => {
  it('writes a large append in pieces (with early flushes) exactly where asked, and drops an old tail', async () => {
    const path = join(tempDir(), 'pack.dat');
    const head = Buffer.alloc(100, 0x11);
    writeFileSync(path, Buffer.concat([head, Buffer.alloc(5000, 0xee)])); // 5000 bytes of uncommitted tail
    // More than two pieces, in buffers of uneven sizes (some larger than a piece's remainder).
    const buffers = Array.from({ length: 40 }, (_, i) => randomBytes(i % 7 === 0 ? 3 * 1024 * 1024 : 100_003));
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
