import { createCipheriv, createDecipheriv, createHash, type CipherGCM } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { Fields } from './decode.js';

/**
 * Encrypted ("sealed") offline bundles (format version 2 of src/wire/bundle.ts).
 *
 * The preamble and the signed header stay plaintext, so a depot can say at once which depot and which
 * certificate a bundle is for. The header's `encryption` names the certificate serial and carries the
 * bundle's random 256-bit content key, wrapped with RSA-OAEP-SHA256 for that certificate's public key
 * (src/pki/key-wrap.ts). Every section is then stored sealed: cut into blocks of `blockBytes` plaintext,
 * each block AES-256-GCM encrypted and followed by its 16-byte tag:
 *
 *   nonce  u32 BE section index ‖ u64 BE block index (unique per key: the key is random per bundle)
 *   AAD    SHA-256 of the header bytes as stored (binds every block to this header: a block or section
 *          moved from another bundle, or a changed header, fails authentication)
 *
 * The table of contents keeps plaintext offsets, lengths and SHA-256s, so the usual checks run after
 * decryption; a section's stored length follows from its plaintext length (`sealedLength`). A block is
 * authenticated (GCM tag) before any of its bytes is used, so a reader streams with memory bounded by
 * its read size and never acts on a damaged block.
 */
export const BUNDLE_SEAL_ALGORITHM = 'AES-256-GCM+RSA-OAEP-SHA256';

export const SEAL_DEFAULTS = {
  /** Plaintext bytes per sealed block: 16 tag bytes per MiB (0.0015 %), one block resident per read. */
  blockBytes: 1024 * 1024,
} as const;

export const SEAL_LIMITS = {
  keyBytes: 32,
  tagBytes: 16,
  nonceBytes: 12,
  blockBytesMin: 4096,
  blockBytesMax: 16 * 1024 * 1024,
  /** RSA 2048 to 8192 bits. */
  wrappedKeyBytesMin: 256,
  wrappedKeyBytesMax: 1024,
} as const;

export interface BundleEncryption {
  algorithm: typeof BUNDLE_SEAL_ALGORITHM;
  /** Serial (lowercase hex) of the depot certificate whose key `wrappedKey` is wrapped for. */
  certificateSerial: string;
  /** The content key, RSA-OAEP-SHA256 wrapped, base64. */
  wrappedKey: string;
  blockBytes: number;
}

const SERIAL = /^[0-9a-f]{1,80}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function decodeEncryption(raw: unknown, what: string): BundleEncryption {
  const f = Fields.of(what, raw);
  const e: BundleEncryption = {
    algorithm: f.oneOf('algorithm', [BUNDLE_SEAL_ALGORITHM] as const),
    certificateSerial: f.string('certificateSerial', { pattern: SERIAL }),
    wrappedKey: f.string('wrappedKey', { max: 2048, pattern: BASE64 }),
    blockBytes: f.int('blockBytes', { min: SEAL_LIMITS.blockBytesMin, max: SEAL_LIMITS.blockBytesMax }),
  };
  f.done();
  const n = wrappedKeyBytes(e).length;
  if (
    n < SEAL_LIMITS.wrappedKeyBytesMin ||
    n > SEAL_LIMITS.wrappedKeyBytesMax ||
    Buffer.from(e.wrappedKey, 'base64').toString('base64') !== e.wrappedKey
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: wrappedKey is not the base64 of ${SEAL_LIMITS.wrappedKeyBytesMin}-${SEAL_LIMITS.wrappedKeyBytesMax} bytes`,
    );
  }
  return e;
}

export function wrappedKeyBytes(e: BundleEncryption): Buffer {
  return Buffer.from(e.wrappedKey, 'base64');
}

/** Stored bytes of a section of `length` plaintext bytes: each started block adds its tag. */
export function sealedLength(length: number, blockBytes: number): number {
  return length + Math.ceil(length / blockBytes) * SEAL_LIMITS.tagBytes;
}

export function blockNonce(section: number, block: number): Buffer {
  const n = Buffer.alloc(SEAL_LIMITS.nonceBytes);
  n.writeUInt32BE(section, 0);
  n.writeBigUInt64BE(BigInt(block), 4);
  return n;
}

/** The additional data of every block: the header's SHA-256. */
export function headerAad(header: Uint8Array): Buffer {
  return createHash('sha256').update(header).digest();
}

/**
 * Seals sections in table order for the writer: `begin(index, length)`, then the section's plaintext in
 * pieces of any size (`update`, which appends what to write to `out`), then `end()`.
 */
export class SectionSealer {
  private cipher: CipherGCM | undefined;
  private section = -1;
  private block = 0;
  private inBlock = 0;
  private remaining = 0;

  constructor(
    private readonly key: Uint8Array,
    private readonly aad: Uint8Array,
    readonly blockBytes: number,
  ) {
    if (key.length !== SEAL_LIMITS.keyBytes)
      throw new DepotsyncError(
        'internal',
        `section sealer: key of ${key.length} bytes, expected ${SEAL_LIMITS.keyBytes}`,
      );
  }

  begin(section: number, length: number): void {
    if (this.remaining !== 0 || this.cipher)
      throw new DepotsyncError('internal', `section sealer: section ${this.section} is not finished`);
    this.section = section;
    this.block = 0;
    this.remaining = length;
  }

  update(plain: Uint8Array, out: Buffer[]): void {
    if (plain.length > this.remaining)
      throw new DepotsyncError(
        'internal',
        `section sealer: section ${this.section} got ${plain.length - this.remaining} bytes more than its length`,
      );
    let at = 0;
    while (at < plain.length) {
      if (!this.cipher) {
        this.cipher = createCipheriv('aes-256-gcm', this.key, blockNonce(this.section, this.block));
        this.cipher.setAAD(this.aad);
        this.inBlock = 0;
      }
      const n = Math.min(plain.length - at, this.blockBytes - this.inBlock);
      out.push(this.cipher.update(plain.subarray(at, at + n)));
      at += n;
      this.inBlock += n;
      this.remaining -= n;
      if (this.inBlock === this.blockBytes || this.remaining === 0) {
        const last = this.cipher.final();
        if (last.length) out.push(last);
        out.push(this.cipher.getAuthTag());
        this.cipher = undefined;
        this.block++;
      }
    }
  }

  end(): void {
    if (this.remaining !== 0 || this.cipher)
      throw new DepotsyncError(
        'internal',
        `section sealer: section ${this.section} ended ${this.remaining} bytes short`,
      );
  }
}

/**
 * Decrypt and authenticate one sealed block (ciphertext ‖ tag). The plaintext is returned only after
 * the tag checked out: a damaged block is never used, not even in part.
 */
export function openBlock(
  key: Uint8Array,
  aad: Uint8Array,
  section: number,
  block: number,
  sealed: Uint8Array,
  what: string,
): Buffer {
  if (sealed.length <= SEAL_LIMITS.tagBytes)
    throw new DepotsyncError('truncated', `${what}: block ${block} is cut short`);
  const ct = sealed.subarray(0, sealed.length - SEAL_LIMITS.tagBytes);
  const d = createDecipheriv('aes-256-gcm', key, blockNonce(section, block));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - SEAL_LIMITS.tagBytes));
  const plain = d.update(ct);
  try {
    d.final();
  } catch (e) {
    // Threat: a bundle altered or damaged on the way (or a block spliced in from another bundle, or a
    // changed header): GCM authentication fails, the block's bytes are dropped unused.
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: block ${block} fails its AES-256-GCM authentication (damaged or altered after export); none of its bytes were used`,
      {
        hint: 'the file was damaged or altered after export; export and copy it again',
        cause: e,
      },
    );
  }
  return plain;
}
