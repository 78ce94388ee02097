import { hash } from 'blake3';
import { describe, expect, it } from 'vitest';
import { blake3Small, blake3SmallInto } from '../../../src/content/blake3-small.js';

describe('blake3Small', () => {
  it('equals the blake3 package for every length 0..1024', () => {
    const data = Uint8Array.from({ length: 1024 }, (_, i) => (i * 251 + 7) & 0xff);
    for (let n = 0; n <= 1024; n++) {
      expect(blake3Small(data.subarray(0, n)).toString('hex'), `n=${n}`).toBe(
        (hash(data.subarray(0, n)) as Buffer).toString('hex'),
      );
    }
  });

  it('matches the official empty-input vector and writes at an offset', () => {
    expect(blake3Small(new Uint8Array(0)).toString('hex')).toBe(
      'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    );
    const input = Buffer.from('xxabcxx');
    const out = Buffer.alloc(40, 0xee);
    blake3SmallInto(input, 2, 3, out, 4);
    expect(out.subarray(4, 36)).toEqual(hash(Buffer.from('abc')));
    expect(out.subarray(0, 4)).toEqual(Buffer.alloc(4, 0xee));
    expect(out.subarray(36)).toEqual(Buffer.alloc(4, 0xee));
  });

  it('refuses more than one chunk', () => {
    expect(() => blake3Small(new Uint8Array(1025))).toThrow(RangeError);
  });
});
