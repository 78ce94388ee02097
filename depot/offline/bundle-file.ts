import { createHash, timingSafeEqual } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { unwrapKey } from '../../src/pki/key-wrap.js';
import { encodingFromCode, type ChunkEncoding } from '../../src/store/encoding.js';
import { SEAL_LIMITS, wrappedKeyBytes, type BundleEncryption } from '../../src/wire/bundle-crypto.js';
import {
  bad,
  BUNDLE_LIMITS,
  CHUNK_RECORD_HEADER_BYTES,
  CHUNK_RECORD_HEADER_BYTES_V2,
  decodeHeader,
  decodePreamble,
  PREAMBLE_BYTES,
  RecordHeaderHash,
  type BundleSection,
  type DecodedHeader,
  type SectionKind,
  type StoredPlace,
} from '../../src/wire/bundle.js';
import { PlainCursor, readAt, SealedCursor, type SectionCursor } from './section-cursor.js';

/** Bytes read per call while streaming chunk sections. */
export const READ_BLOCK_BYTES = 4 * 1024 * 1024;

export interface ChunkRecord {
  id: string;
  /**
   * Present for the records `want` selected; NOT verified yet, and a view into a read buffer that is
   * reused: valid only until the iteration continues (copy what you keep). Fresh memory for every read
   * costs a page fault per 4 KiB, which made imports several times slower than the disk.
   */
  data?: Buffer;
  /** How `data` is encoded ('plain' in sections of plain records). */
  encoding: ChunkEncoding;
  /** The plain length the record declares (its own length for plain records); NOT verified yet. */
  plainLength: number;
  /** Bytes of the record, header included. */
  recordBytes: number;
}

/**
 * An offline bundle opened for reading (src/wire/bundle.ts). `open` reads and decodes the preamble and
 * the header (capped, schema, layout, size against the file) but trusts nothing: the caller verifies
 * the signatures. Byte sections are read by position and checked against the table's SHA-256; chunk
 * sections are streamed front to back in large reads, with memory bounded by the read size.
 *
 * A sealed bundle (format version 2, `master export --encrypt`) is read the same way once `unlock`
 * unwrapped its content key with this depot's machine key: every block is authenticated (AES-256-GCM)
 * and decrypted before its bytes are used, and the table's SHA-256 checks run on the plaintext as usual.
 */
export class BundleFile {
  private readonly index = new Map<string, BundleSection>();
  private readonly position = new Map<BundleSection, number>();
  private contentKey: Buffer | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly header: DecodedHeader,
  ) {
    for (const s of header.signed.sections) {
      const key = `${s.kind}/${s.name}`;
      if (this.index.has(key)) throw bad(this.what, `section ${s.kind} ${s.name} appears twice`);
      this.index.set(key, s);
      this.position.set(s, this.position.size);
    }
  }

  get what(): string {
    return `bundle ${this.path}`;
  }

  static async open(path: string): Promise<BundleFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw fromSystemError(e, `bundle ${path}`);
    }
    try {
      const what = `bundle ${path}`;
      const size = (await fh.stat()).size;
      const pre = Buffer.alloc(PREAMBLE_BYTES);
      decodePreamble(pre.subarray(0, await readAt(fh, pre, 0)), what);
      const version = pre.readUInt32BE(8);
      const h = pre.readUInt32BE(12);
      // Threat: a header length larger than the file (a truncated copy, or a lie): refuse before allocating.
      if (PREAMBLE_BYTES + h > size)
        throw bad(
          what,
          `the header declares ${h} bytes, the file holds ${size - PREAMBLE_BYTES} after the preamble`,
          'truncated',
        );
      const header = Buffer.alloc(h);
      if ((await readAt(fh, header, PREAMBLE_BYTES)) !== h)
        throw bad(what, 'the header is cut short', 'truncated');
      const decoded = decodeHeader(header, what, size);
      if (decoded.signed.formatVersion !== version)
        throw bad(
          what,
          `the preamble says format version ${version}, the header ${decoded.signed.formatVersion}`,
        );
      return new BundleFile(path, fh, decoded);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /** How the sections are sealed (format version 2), or undefined for a plain bundle. */
  get encryption(): BundleEncryption | undefined {
    return this.header.signed.encryption;
  }

  /**
   * A sealed bundle: unwrap its content key with the private key of this depot's certificate (the one
   * the header names: the caller checks the serial first, for a clear message). A plain one: no-op.
   */
  unlock(keyPem: string): void {
    const e = this.encryption;
    if (!e) return;
    this.contentKey = unwrapKey(
      wrappedKeyBytes(e),
      keyPem,
      `${this.what}: content key (wrapped for certificate serial ${e.certificateSerial})`,
      SEAL_LIMITS.keyBytes,
    );
  }

  /** Where a section's bytes are stored in the file (absolute offset and stored length). */
  storedPlace(s: BundleSection): StoredPlace {
    const i = this.position.get(s);
    const p = i === undefined ? undefined : this.header.stored[i];
    if (!p) throw new DepotsyncError('internal', `${this.what}: section ${s.name} is not in its table`);
    return { offset: this.header.dataStart + p.offset, length: p.length };
  }

  private cursor(s: BundleSection, readBytes: number): SectionCursor {
    const place = {
      fh: this.fh,
      base: this.storedPlace(s).offset,
      length: s.length,
      what: `${this.what}: section ${s.name}`,
      readBytes,
    };
    const e = this.encryption;
    if (!e) return new PlainCursor(place);
    if (!this.contentKey)
      throw new DepotsyncError(
        'internal',
        `${this.what} is encrypted and was not unlocked before reading section ${s.name}`,
      );
    return new SealedCursor(place, {
      key: this.contentKey,
      aad: this.header.aad!,
      blockBytes: e.blockBytes,
      section: this.position.get(s)!,
    });
  }

  section(kind: SectionKind, name: string): BundleSection | undefined {
    return this.index.get(`${kind}/${name}`);
  }

  sections(kind: SectionKind): BundleSection[] {
    return this.header.signed.sections.filter((s) => s.kind === kind);
  }

  /** A byte section's bytes, checked against the signed table (length and SHA-256, constant time). */
  async readSection(s: BundleSection): Promise<Buffer> {
    if (s.kind === 'chunks')
      throw new DepotsyncError('internal', `readSection: ${s.name} is a chunk section`);
    let buf: Buffer;
    if (this.encryption) {
      buf = s.length ? await this.cursor(s, s.length).take(s.length) : Buffer.alloc(0);
    } else {
      buf = Buffer.alloc(s.length);
      const got = await readAt(this.fh, buf, this.header.dataStart + s.offset);
      if (got !== s.length)
        throw bad(this.what, `section ${s.name} is cut short (${got} of ${s.length} bytes)`, 'truncated');
    }
    const digest = createHash('sha256').update(buf).digest();
    // Threat: a section altered after signing (tampering, a damaged disk): its hash is in the signed table.
    if (!timingSafeEqual(digest, Buffer.from(s.sha256, 'hex'))) {
      throw new DepotsyncError(
        'hash-mismatch',
        `${this.what}: section ${s.kind} ${s.name} does not match the SHA-256 in the signed table of contents`,
        {
          hint: 'the file was damaged or altered after the master signed it; export and copy it again',
        },
      );
    }
    return buf;
  }

  /**
   * The records of a chunk section in order. `want(id)` selects records whose data is read (others are
   * skipped without reading their bytes: a resumed import reads only what it still lacks). After the
   * last record: the record count, the exact section length and the SHA-256 of the record headers
   * must match the signed table, else 'corrupt'.
   */
  async *chunkRecords(s: BundleSection, want: (id: string) => boolean): AsyncGenerator<ChunkRecord> {
    const c = this.cursor(s, READ_BLOCK_BYTES);
    const hash = new RecordHeaderHash();
    let count = 0;
    const v2 = s.records === 2;
    const headerBytes = v2 ? CHUNK_RECORD_HEADER_BYTES_V2 : CHUNK_RECORD_HEADER_BYTES;
    while (c.pos < s.length) {
      const head = await c.take(headerBytes);
      hash.update(head);
      const id = head.toString('hex', 0, 32);
      const length = head.readUInt32BE(32);
      count++;
      const encoding = v2 ? encodingFromCode(head[36]!, `${this.what}: chunk section ${s.name}`) : 'plain';
      const plainLength = v2 ? head.readUInt32BE(37) : length;
      if (plainLength > BUNDLE_LIMITS.chunkMaxBytes)
        throw bad(this.what, `chunk section ${s.name}: record ${count} declares ${plainLength} plain bytes`);
      if (count > (s.chunks ?? 0))
        throw bad(
          this.what,
          `chunk section ${s.name} holds more than the ${s.chunks} records its table entry declares`,
        );
      if (length === 0 || length > BUNDLE_LIMITS.chunkMaxBytes)
        throw bad(this.what, `chunk section ${s.name}: record ${count} declares ${length} bytes`);
      if (want(id)) {
        yield { id, data: await c.take(length), encoding, plainLength, recordBytes: headerBytes + length };
      } else {
        c.skip(length);
        yield { id, encoding, plainLength, recordBytes: headerBytes + length };
      }
    }
    const digest = Buffer.from(hash.digest(), 'hex');
    if (count !== s.chunks || !timingSafeEqual(digest, Buffer.from(s.sha256, 'hex'))) {
      throw new DepotsyncError(
        'hash-mismatch',
        `${this.what}: chunk section ${s.name} does not match its signed table entry (${count} of ${s.chunks} records, record headers ${digest.equals(Buffer.from(s.sha256, 'hex')) ? 'match' : 'differ'})`,
        {
          hint: 'the file was damaged or altered after the master signed it; export and copy it again',
        },
      );
    }
  }
}
