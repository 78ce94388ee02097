import { constants, publicEncrypt, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { createCa, issueMachineCertificate, loadCa } from '../../../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { unwrapKey, wrapKeyForCertificate } from '../../../src/pki/key-wrap.js';
import {
  decodeEncryption,
  headerAad,
  openBlock,
  sealedLength,
  SectionSealer,
  BUNDLE_SEAL_ALGORITHM,
} from '../../../src/wire/bundle-crypto.js';
import { SealedCursor } from '../../../depot/offline/section-cursor.js';

const dir = mkdtempSync(join(tmpdir(), 'bundle-crypto-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic pseudo-random piece sizes. */
function sizes(seed: number, max: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return 1 + (x % max);
  };
}

function seal(key: Buffer, aad: Buffer, blockBytes: number, sections: Buffer[], pieceMax: number): Buffer {
  const s = new SectionSealer(key, aad, blockBytes);
  const out: Buffer[] = [];
  const next = sizes(7, pieceMax);
  sections.forEach((plain, i) => {
    s.begin(i, plain.length);
    for (let at = 0; at < plain.length;) {
      const n = Math.min(next(), plain.length - at);
      s.update(plain.subarray(at, at + n), out);
      at += n;
    }
    s.end();
  });
  return Buffer.concat(out);
}

describe('sealed bundle sections (AES-256-GCM blocks)', () => {
  const key = randomBytes(32);
  const aad = headerAad(Buffer.from('{"signed":{}}'));
  const B = 4096;

  it('seals in pieces of any size and reads back through the cursor with any take/skip pattern', async () => {
    const a = randomBytes(3 * B + 123);
    const b = randomBytes(B);
    const stored = seal(key, aad, B, [a, b], 5000);
    expect(stored.length).toBe(sealedLength(a.length, B) + sealedLength(b.length, B));
    const path = join(dir, 'sealed.bin');
    writeFileSync(path, Buffer.concat([Buffer.alloc(10), stored]));
    const fh = await open(path, 'r');
    try {
      for (const readBytes of [1, B, 3 * B, 1 << 20]) {
        const c = new SealedCursor(
          { fh, base: 10, length: a.length, what: 'a', readBytes },
          { key, aad, blockBytes: B, section: 0 },
        );
        const next = sizes(readBytes, 2 * B + 17);
        let at = 0;
        let k = 0;
        while (at < a.length) {
          const n = Math.min(next(), a.length - at);
          if (k++ % 3 === 2) c.skip(n);
          else expect((await c.take(n)).equals(a.subarray(at, at + n))).toBe(true);
          at += n;
        }
        await expect(c.take(1)).rejects.toThrow(/runs past the section's end/);
      }
      const c2 = new SealedCursor(
        { fh, base: 10 + sealedLength(a.length, B), length: b.length, what: 'b', readBytes: B },
        { key, aad, blockBytes: B, section: 1 },
      );
      expect((await c2.take(b.length)).equals(b)).toBe(true);
      // The nonce names the section: read as section 0, section 1's block fails.
      const wrong = new SealedCursor(
        { fh, base: 10 + sealedLength(a.length, B), length: b.length, what: 'b', readBytes: B },
        { key, aad, blockBytes: B, section: 0 },
      );
      await expect(wrong.take(1)).rejects.toThrow(/block 0 fails its AES-256-GCM authentication/);
    } finally {
      await fh.close();
    }
  });

  it('authenticates each block against key, header, section and block index', () => {
    const plain = randomBytes(2 * B);
    const stored = seal(key, aad, B, [plain], B);
    const blk = (i: number) => stored.subarray(i * (B + 16), (i + 1) * (B + 16));
    expect(openBlock(key, aad, 0, 1, blk(1), 'x').equals(plain.subarray(B))).toBe(true);
    const fails = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DepotsyncError);
        expect((e as DepotsyncError).code).toBe('hash-mismatch');
        return;
      }
      throw new Error('expected a refusal');
    };
    fails(() => openBlock(key, aad, 0, 0, blk(1), 'x')); // blocks swapped
    fails(() => openBlock(key, headerAad(Buffer.from('other header')), 0, 1, blk(1), 'x'));
    fails(() => openBlock(randomBytes(32), aad, 0, 1, blk(1), 'x'));
    const flippedTag = Buffer.from(blk(0));
    flippedTag[flippedTag.length - 1]! ^= 1;
    fails(() => openBlock(key, aad, 0, 0, flippedTag, 'x'));
  });

  it('decodes the header entry strictly', () => {
    const ok = {
      algorithm: BUNDLE_SEAL_ALGORITHM,
      certificateSerial: 'ab12',
      wrappedKey: randomBytes(256).toString('base64'),
      blockBytes: B,
    };
    expect(decodeEncryption(ok, 'h')).toEqual(ok);
    expect(() => decodeEncryption({ ...ok, algorithm: 'AES-128-CBC' }, 'h')).toThrow(/algorithm/);
    expect(() => decodeEncryption({ ...ok, blockBytes: 10 }, 'h')).toThrow(/blockBytes/);
    expect(() => decodeEncryption({ ...ok, wrappedKey: randomBytes(16).toString('base64') }, 'h')).toThrow(
      /wrappedKey/,
    );
    expect(() => decodeEncryption({ ...ok, certificateSerial: '../x' }, 'h')).toThrow(/certificateSerial/);
  });
});

describe('key wrapping for a machine certificate (RSA-OAEP-SHA256)', () => {
  it('unwraps only with that machine key, and only a key wrapped for this purpose', () => {
    const m = createCa({ commonName: 'test CA' });
    const ca = loadCa(m.keyPem, m.certPem);
    const mine = createMachineKeyAndCsr({ machineName: 'ship', role: 'depot' });
    const theirs = createMachineKeyAndCsr({ machineName: 'dock', role: 'depot' });
    const certPem = issueMachineCertificate(ca, mine.csrPem, { machineName: 'ship', role: 'depot' });
    const key = randomBytes(32);
    const w = wrapKeyForCertificate(key, certPem, 'ship certificate');
    expect(w.certificateSerial).toBe(
      new X509Certificate(certPem).serialNumber.toLowerCase().replace(/^0+/, ''),
    );
    expect(unwrapKey(w.wrapped, mine.keyPem, 'w', 32).equals(key)).toBe(true);
    expect(() => unwrapKey(w.wrapped, theirs.keyPem, 'w', 32)).toThrow(
      /does not unwrap with this machine's private key/,
    );
    const damaged = Buffer.from(w.wrapped);
    damaged[7]! ^= 1;
    expect(() => unwrapKey(damaged, mine.keyPem, 'w', 32)).toThrow(/does not unwrap/);
    // The same key wrapped without the depotsync label (another purpose) does not unwrap here.
    const unlabeled = publicEncrypt(
      {
        key: new X509Certificate(certPem).publicKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
      },
      key,
    );
    expect(() => unwrapKey(unlabeled, mine.keyPem, 'w', 32)).toThrow(/does not unwrap/);
  });
});
