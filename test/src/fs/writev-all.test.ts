import type { FileHandle } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { writevAll } from '../../../src/fs/writev-all.js';

/** A file handle whose writev writes at most `max` bytes per call (a short write), into memory. */
function shortWriter(max: number) {
  const file = Buffer.alloc(64);
  let cursor = 0;
  const calls: Array<number | undefined> = [];
  const fh = {
    async writev(buffers: Uint8Array[], position?: number) {
      calls.push(position);
      let at = position ?? cursor;
      let n = 0;
      for (const b of buffers) {
        const part = Math.min(b.length, max - n);
        file.set(b.subarray(0, part), at);
        at += part;
        n += part;
        if (n === max) break;
      }
      if (position === undefined) cursor += n;
      return { bytesWritten: n, buffers };
    },
  } as unknown as FileHandle;
  return { fh, file, calls };
}

describe('writevAll', () => {
  const parts = [Buffer.from('abc'), Buffer.from(''), Buffer.from('defghij'), Buffer.from('kl')];

  it('finishes short writes from the first unwritten byte, at a position', async () => {
    const w = shortWriter(5);
    expect(await writevAll(w.fh, parts, 10)).toBe(12);
    expect(w.file.subarray(10, 22).toString()).toBe('abcdefghijkl');
    expect(w.calls).toEqual([10, 15, 20]);
  });

  it('finishes short writes at the current position when none is given', async () => {
    const w = shortWriter(4);
    await writevAll(w.fh, parts);
    expect(w.file.subarray(0, 12).toString()).toBe('abcdefghijkl');
    expect(w.calls).toEqual([undefined, undefined, undefined]);
  });

  it('fails instead of looping when a write makes no progress', async () => {
    const w = shortWriter(0);
    await expect(writevAll(w.fh, parts, 0)).rejects.toThrow(/no progress/);
  });
});
