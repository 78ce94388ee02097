import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { applyDelta, compress, decompress, delta, ZSTD_VERSION } from '../../../src/compress/zstd.js';
import { isDepotsyncError, type ErrorCode } from '../../../src/errors.js';

/** Text-like, compressible bytes that differ by seed (a shifted word list). */
function text(bytes: number, seed = 1): Buffer {
  const words = [
    'depot',
    'chunk',
    'manifest',
    'agent',
    'master',
    'signed',
    'verify',
    'window',
    'delta',
    'frame',
  ];
  let x = seed;
  let s = '';
  while (s.length < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += words[x % words.length] + (x & 16 ? '\n' : ' ');
  }
  return Buffer.from(s.slice(0, bytes));
}

function codeOf(fn: () => unknown): ErrorCode | 'no error' | 'untyped' {
  try {
    fn();
    return 'no error';
  } catch (e) {
    return isDepotsyncError(e) ? e.code : 'untyped';
  }
}

/** A zstd frame header declaring `size` bytes of content (single segment, 8-byte size), then garbage. */
function frameDeclaring(size: number): Buffer {
  const h = Buffer.alloc(4 + 1 + 8 + 16);
  h.writeUInt32LE(0xfd2fb528, 0);
  h[4] = 0b1110_0000; // frame content size flag 3 (8 bytes), single segment
  h.writeBigUInt64LE(BigInt(size), 5);
  return h;
}

describe('zstd codec', () => {
  it('loads libzstd and reports its version', () => {
    expect(ZSTD_VERSION).toMatch(/^1\.\d+\.\d+$/);
  });

  it('round-trips empty, small, text and random inputs at every level used', () => {
    for (const plain of [Buffer.alloc(0), Buffer.from('x'), text(300_000), randomBytes(70_000)]) {
      for (const level of [1, 3, 9, 19]) {
        const frame = compress(plain, level);
        expect(decompress(frame, { maxBytes: plain.length, exact: true }).equals(plain)).toBe(true);
      }
    }
    const t = text(1_000_000);
    expect(compress(t, 3).length).toBeLessThan(t.length / 3);
  });

  it('compresses at the fast (negative) levels down to -7, less tightly than level 1', () => {
    const t = text(1_000_000, 5);
    const sizes = [-7, -3, -1, 1].map((level) => {
      const frame = compress(t, level);
      expect(decompress(frame, { maxBytes: t.length, exact: true }).equals(t)).toBe(true);
      return frame.length;
    });
    expect(sizes[0]).toBeLessThan(t.length / 2);
    expect(sizes[0]).toBeGreaterThan(sizes[3]!);
    expect(codeOf(() => compress(t, -8))).toBe('bad-input');
    // Deltas keep 1..19.
    expect(codeOf(() => delta(t, t, -1))).toBe('bad-input');
  });

  it('refuses levels outside -7..19 (and 0) and a maxBytes that is not a byte count', () => {
    expect(codeOf(() => compress(Buffer.from('a'), 0))).toBe('bad-input');
    expect(codeOf(() => compress(Buffer.from('a'), 22))).toBe('bad-input');
    expect(codeOf(() => compress(Buffer.from('a'), 2.5))).toBe('bad-input');
    const f = compress(Buffer.from('a'));
    expect(codeOf(() => decompress(f, { maxBytes: -1 }))).toBe('bad-input');
    expect(codeOf(() => decompress(f, { maxBytes: Number.NaN }))).toBe('bad-input');
  });

  it('reads frames of the reference zstd tool, and the tool reads ours', () => {
    const plain = text(200_000, 7);
    const ours = compress(plain, 9);
    let theirs: Buffer;
    try {
      theirs = execFileSync('zstd', ['-q', '-c', '-9'], { input: plain });
    } catch {
      return; // the zstd tool is a benchmark dependency (scripts/bench-deps.sh), not a test one
    }
    expect(decompress(theirs, { maxBytes: plain.length }).equals(plain)).toBe(true);
    expect(execFileSync('zstd', ['-q', '-d', '-c'], { input: ours }).equals(plain)).toBe(true);
  });

  it('a decompression bomb is refused from its header, before any allocation of its size', () => {
    // 1 GiB of zeros compresses to ~40 KB; with a 64 KiB cap it must be refused, not decoded.
    const bomb = compress(Buffer.alloc(64 * 1024 * 1024), 19);
    const before = process.memoryUsage().arrayBuffers;
    expect(codeOf(() => decompress(bomb, { maxBytes: 65536 }))).toBe('too-large');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    // A header that claims 2^50 bytes is refused as well (no allocation of that size is attempted).
    expect(codeOf(() => decompress(frameDeclaring(2 ** 50), { maxBytes: 262144 }))).toBe('too-large');
  });

  it('a frame that produces more than declared is stopped at the cap (no content size in the header)', () => {
    // The reference tool writes no content size when it reads from a pipe: only the output length tells.
    let streamed: Buffer;
    const plain = text(500_000, 3);
    try {
      streamed = execFileSync('sh', ['-c', 'cat | zstd -q -c -3 --no-content-size'], { input: plain });
    } catch {
      return;
    }
    expect(codeOf(() => decompress(streamed, { maxBytes: 100_000 }))).toBe('too-large');
    expect(decompress(streamed, { maxBytes: plain.length }).equals(plain)).toBe(true);
  });

  it('an output longer than declared is refused, a shorter one only when the length must be exact', () => {
    const plain = text(100_000, 2);
    const frame = compress(plain);
    expect(codeOf(() => decompress(frame, { maxBytes: plain.length - 1 }))).toBe('too-large');
    expect(decompress(frame, { maxBytes: plain.length + 10 }).length).toBe(plain.length);
    expect(codeOf(() => decompress(frame, { maxBytes: plain.length + 10, exact: true }))).toBe('corrupt');
  });

  it('truncated input is refused as truncated, at every cut', () => {
    const plain = text(200_000, 4);
    const frame = compress(plain, 9);
    for (const cut of [0, 3, 5, 12, frame.length >> 1, frame.length - 4, frame.length - 1]) {
      const code = codeOf(() => decompress(frame.subarray(0, cut), { maxBytes: plain.length }));
      expect([cut, code]).toEqual([cut, cut < 4 ? 'corrupt' : 'truncated']);
    }
  });

  it('corrupted input is refused (checksum or structure), never returned', () => {
    const plain = text(200_000, 5);
    const frame = compress(plain, 3);
    for (let i = 0; i < 40; i++) {
      const bad = Buffer.from(frame);
      const at = 4 + Math.floor(((i + 0.5) / 40) * (bad.length - 4));
      bad[at]! ^= 1 << (i % 8);
      const code = codeOf(() => decompress(bad, { maxBytes: plain.length, exact: true }));
      expect(['corrupt', 'truncated', 'too-large']).toContain(code);
    }
    expect(codeOf(() => decompress(Buffer.from('not zstd at all'), { maxBytes: 100 }))).toBe('corrupt');
    expect(
      codeOf(() => decompress(Buffer.concat([frame, Buffer.from([0])]), { maxBytes: plain.length })),
    ).toBe('corrupt');
    // Two frames back to back are not one chunk's encoding.
    expect(codeOf(() => decompress(Buffer.concat([frame, frame]), { maxBytes: 2 * plain.length }))).toBe(
      'corrupt',
    );
  });

  it('a delta against the old version is small and rebuilds the new one', () => {
    const base = Buffer.concat([randomBytes(300_000), text(300_000, 6)]);
    // The new version: a block inserted near the start (everything after it shifts), a few edits.
    const target = Buffer.concat([base.subarray(0, 1000), randomBytes(2000), base.subarray(1000)]);
    for (let i = 0; i < 10; i++) target[50_000 + i * 40_000] ^= 0xff;
    const d = delta(base, target, 9);
    expect(d.length).toBeLessThan(6000);
    expect(d.length).toBeLessThan(compress(target, 9).length / 20);
    expect(applyDelta(base, d, { maxBytes: target.length, exact: true }).equals(target)).toBe(true);
  });

  it('a large base is used whole at a fast level (loaded as history, with long-distance matching)', () => {
    // Plain dictionary use at level 3 indexes an 8 MiB base in small tables and finds little of it.
    const base = randomBytes(8 * 1024 * 1024);
    const parts: Buffer[] = [];
    for (let at = 0; at < base.length; at += 512 * 1024)
      parts.push(Buffer.from('sixteen new byte'), base.subarray(at, at + 512 * 1024));
    const target = Buffer.concat(parts);
    const d = delta(base, target, 3);
    expect(d.length).toBeLessThan(16 * 1024);
    expect(applyDelta(base, d, { maxBytes: target.length, exact: true }).equals(target)).toBe(true);
  });

  it('a delta applied to the wrong base does not yield the target', () => {
    const base = Buffer.concat([randomBytes(200_000), text(100_000, 8)]);
    const target = Buffer.concat([
      base.subarray(0, 150_000),
      Buffer.from('new bytes'),
      base.subarray(150_000),
    ]);
    const d = delta(base, target, 3);
    const wrongBases = [
      randomBytes(base.length), // another file of the same size
      base.subarray(0, 100_000), // the base cut short: the delta reaches past its end
      Buffer.concat([Buffer.from([base[0]! ^ 1]), base.subarray(1)]), // one bit off
      Buffer.alloc(0), // no base at all
    ];
    for (const wrong of wrongBases) {
      let out: Buffer | undefined;
      let code: string | undefined;
      try {
        out = applyDelta(wrong, d, { maxBytes: target.length });
      } catch (e) {
        code = isDepotsyncError(e) ? e.code : 'untyped';
      }
      if (out) expect(out.equals(target)).toBe(false);
      else expect(['corrupt', 'too-large']).toContain(code);
    }
  });

  it('a delta is capped like a frame: longer than declared, truncated, bomb', () => {
    const base = text(100_000, 9);
    const target = Buffer.concat([base, text(50_000, 10)]);
    const d = delta(base, target);
    expect(codeOf(() => applyDelta(base, d, { maxBytes: target.length - 1 }))).toBe('too-large');
    expect(codeOf(() => applyDelta(base, d.subarray(0, d.length - 2), { maxBytes: target.length }))).toBe(
      'truncated',
    );
    const bomb = delta(base, Buffer.alloc(32 * 1024 * 1024), 3);
    expect(codeOf(() => applyDelta(base, bomb, { maxBytes: 1 << 20 }))).toBe('too-large');
  });

  it('a base that looks like a trained zstd dictionary is not parsed as one: the delta still round-trips', () => {
    const base = Buffer.concat([Buffer.from([0x37, 0xa4, 0x30, 0xec]), randomBytes(50_000)]);
    const target = Buffer.concat([base, Buffer.from('tail')]);
    const d = delta(base, target);
    expect(applyDelta(base, d, { maxBytes: target.length, exact: true }).equals(target)).toBe(true);
  });

  it('patch-from frames of the reference tool apply', () => {
    const base = Buffer.concat([randomBytes(100_000), text(100_000, 11)]);
    const target = Buffer.concat([text(5000, 12), base]);
    const dir = execFileSync('mktemp', ['-d'], { encoding: 'utf8' }).trim();
    try {
      execFileSync('sh', ['-c', `cat > ${dir}/base`], { input: base });
      execFileSync('sh', ['-c', `cat > ${dir}/target`], { input: target });
      execFileSync('zstd', [
        '-q',
        '-f',
        '-3',
        `--patch-from=${dir}/base`,
        `${dir}/target`,
        '-o',
        `${dir}/p.zst`,
      ]);
    } catch {
      execFileSync('rm', ['-rf', dir]);
      return;
    }
    const p = execFileSync('cat', [`${dir}/p.zst`]);
    execFileSync('rm', ['-rf', dir]);
    expect(applyDelta(base, p, { maxBytes: target.length }).equals(target)).toBe(true);
  });
});
