import { createHash, timingSafeEqual } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import {
  bad,
  BUNDLE_LIMITS,
  CHUNK_RECORD_HEADER_BYTES,
  decodeHeader,
  decodePreamble,
  PREAMBLE_BYTES,
  RecordHeaderHash,
  type BundleSection,
  type DecodedHeader,
  type SectionKind,
} from '../../src/wire/bundle.js';

/** Bytes read per call while streaming chunk sections. */
export const READ_BLOCK_BYTES = 4 * 1024 * 1024;

async function readAt(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export interface ChunkRecord {
  id: string;
  /**
   * Present for the records `want` selected; NOT verified yet, and a view into a read buffer that is
   * reused: valid only until the iteration continues (copy what you keep). Fresh memory for every read
   * costs a page fault per 4 KiB, which made imports several times slower than the disk.
   */
  data?: Buffer;
  /** Bytes of the record, header included. */
  recordBytes: number;
}

/**
 * An offline bundle opened for reading (src/wire/bundle.ts). `open` reads and decodes the preamble and
 * the header (capped, schema, layout, size against the file) but trusts nothing: the caller verifies
 * the signatures. Byte sections are read by position and checked against the table's SHA-256; chunk
 * sections are streamed front to back in large reads, with memory bounded by the read size.
 */
export class BundleFile {
  private readonly index = new Map<string, BundleSection>();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly header: DecodedHeader,
  ) {
    for (const s of header.signed.sections) {
      const key = `${s.kind}/${s.name}`;
      if (this.index.has(key)) throw bad(this.what, `section ${s.kind} ${s.name} appears twice`);
      this.index.set(key, s);
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
      const h = pre.readUInt32BE(12);
      // Threat: a header length larger than the file (a truncated copy, or a lie): refuse before allocating.
      if (PREAMBLE_BYTES + h > size) throw bad(what, `the header declares ${h} bytes, the file holds ${size - PREAMBLE_BYTES} after the preamble`, 'truncated');
      const header = Buffer.alloc(h);
      if ((await readAt(fh, header, PREAMBLE_BYTES)) !== h) throw bad(what, 'the header is cut short', 'truncated');
      return new BundleFile(path, fh, decodeHeader(header, what, size));
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  section(kind: SectionKind, name: string): BundleSection | undefined {
    return this.index.get(`${kind}/${name}`);
  }

  sections(kind: SectionKind): BundleSection[] {
    return this.header.signed.sections.filter((s) => s.kind === kind);
  }

  /** A byte section's bytes, checked against the signed table (length and SHA-256, constant time). */
  async readSection(s: BundleSection): Promise<Buffer> {
    if (s.kind === 'chunks') throw new DepotsyncError('internal', `readSection: ${s.name} is a chunk section`);
    const buf = Buffer.alloc(s.length);
    const got = await readAt(this.fh, buf, this.header.dataStart + s.offset);
    if (got !== s.length) throw bad(this.what, `section ${s.name} is cut short (${got} of ${s.length} bytes)`, 'truncated');
    const digest = createHash('sha256').update(buf).digest();
    // Threat: a section altered after signing (tampering, a damaged disk): its hash is in the signed table.
    if (!timingSafeEqual(digest, Buffer.from(s.sha256, 'hex'))) {
      throw new DepotsyncError('hash-mismatch', `${this.what}: section ${s.kind} ${s.name} does not match the SHA-256 in the signed table of contents`, {
        hint: 'the file was damaged or altered after the master signed it; export and copy it again',
      });
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
    const start = this.header.dataStart + s.offset;
    const end = start + s.length;
    let pos = start;
    let block = Buffer.allocUnsafe(READ_BLOCK_BYTES);
    let buf = block.subarray(0, 0);
    let bufStart = start;
    const take = async (n: number): Promise<Buffer> => {
      const off = pos - bufStart;
      if (off >= 0 && off + n <= buf.length) {
        pos += n;
        return buf.subarray(off, off + n);
      }
      if (pos + n > end) throw bad(this.what, `chunk section ${s.name}: a record runs past the section's end`);
      if (n > block.length) block = Buffer.allocUnsafe(n); // a chunk larger than a read block (rare)
      const b = block.subarray(0, Math.min(block.length, end - pos));
      const got = await readAt(this.fh, b, pos);
      if (got < n) throw bad(this.what, `chunk section ${s.name} is cut short at byte ${pos + got}`, 'truncated');
      buf = b.subarray(0, got);
      bufStart = pos;
      pos += n;
      return buf.subarray(0, n);
    };
    const hash = new RecordHeaderHash();
    let count = 0;
    while (pos < end) {
      const head = await take(CHUNK_RECORD_HEADER_BYTES);
      hash.update(head);
      const id = head.toString('hex', 0, 32);
      const length = head.readUInt32BE(32);
      count++;
      if (count > (s.chunks ?? 0)) throw bad(this.what, `chunk section ${s.name} holds more than the ${s.chunks} records its table entry declares`);
      if (length === 0 || length > BUNDLE_LIMITS.chunkMaxBytes) throw bad(this.what, `chunk section ${s.name}: record ${count} declares ${length} bytes`);
      if (want(id)) {
        yield { id, data: await take(length), recordBytes: CHUNK_RECORD_HEADER_BYTES + length };
      } else {
        if (pos + length > end) throw bad(this.what, `chunk section ${s.name}: a record runs past the section's end`);
        pos += length;
        yield { id, recordBytes: CHUNK_RECORD_HEADER_BYTES + length };
      }
    }
    const digest = Buffer.from(hash.digest(), 'hex');
    if (count !== s.chunks || !timingSafeEqual(digest, Buffer.from(s.sha256, 'hex'))) {
      throw new DepotsyncError('hash-mismatch', `${this.what}: chunk section ${s.name} does not match its signed table entry (${count} of ${s.chunks} records, record headers ${digest.equals(Buffer.from(s.sha256, 'hex')) ? 'match' : 'differ'})`, {
        hint: 'the file was damaged or altered after the master signed it; export and copy it again',
      });
    }
  }
}
