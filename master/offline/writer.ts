import { createHash, randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import type { Signer } from '../../src/tuf/keys.js';
import { headerAad, sealedLength, SectionSealer, type BundleEncryption } from '../../src/wire/bundle-crypto.js';
import {
  BUNDLE_FORMAT_VERSION_SEALED,
  CHUNK_RECORD_HEADER_BYTES,
  checkSectionName,
  encodeChunkRecordHeader,
  encodeHeader,
  encodePreamble,
  RecordHeaderHash,
  type BundleSection,
  type BundleSigned,
  type SectionKind,
} from '../../src/wire/bundle.js';

export interface ByteSection {
  kind: Exclude<SectionKind, 'chunks'>;
  name: string;
  bytes: Uint8Array;
}

export interface PlannedChunk {
  id: string;
  length: number;
}

export const WRITER_DEFAULTS = {
  /** Chunk data per chunk section (the table stays small; resuming is per chunk anyway). */
  chunkSectionMaxBytes: 256 * 1024 * 1024,
  /** Chunks read from the store ahead of the one being written. */
  readAhead: 16,
  /** Bytes gathered before one write call. */
  writeBufferBytes: 4 * 1024 * 1024,
} as const;

export interface WriteBundleInput {
  out: string;
  /** Everything of the signed header but the table of contents. */
  head: Omit<BundleSigned, 'sections' | 'sectionBytes'>;
  byteSections: readonly ByteSection[];
  chunks: readonly PlannedChunk[];
  /** Chunk bytes by id (the master's store, verified on read). */
  readChunk?: (id: string) => Promise<Buffer>;
  signers: readonly Signer[];
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  chunkSectionMaxBytes?: number;
  /** Seal every section (format version 2): the content key and its header entry (bundle-crypto.ts). */
  seal?: { key: Buffer; encryption: BundleEncryption };
}

/** The buffers after the first `skip` bytes (a short writev continues where it stopped). */
function sliceFrom(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** The table of contents, computed before any chunk is read: chunk sections commit to their record headers. */
export function layoutSections(byteSections: readonly ByteSection[], chunks: readonly PlannedChunk[], chunkSectionMaxBytes: number): { sections: BundleSection[]; groups: PlannedChunk[][] } {
  const sections: BundleSection[] = [];
  let at = 0;
  for (const s of byteSections) {
    checkSectionName(s.name, `bundle section ${s.kind}`);
    sections.push({ kind: s.kind, name: s.name, offset: at, length: s.bytes.length, sha256: createHash('sha256').update(s.bytes).digest('hex') });
    at += s.bytes.length;
  }
  const groups: PlannedChunk[][] = [];
  let cur: PlannedChunk[] = [];
  let curBytes = 0;
  const close = () => {
    if (!cur.length) return;
    const h = new RecordHeaderHash();
    for (const c of cur) h.update(encodeChunkRecordHeader(c.id, c.length));
    const length = curBytes + cur.length * CHUNK_RECORD_HEADER_BYTES;
    sections.push({ kind: 'chunks', name: `chunks-${String(groups.length + 1).padStart(4, '0')}`, offset: at, length, sha256: h.digest(), chunks: cur.length });
    at += length;
    groups.push(cur);
    cur = [];
    curBytes = 0;
  };
  for (const c of chunks) {
    if (cur.length && curBytes + c.length > chunkSectionMaxBytes) close();
    cur.push(c);
    curBytes += c.length;
  }
  close();
  return { sections, groups };
}

/**
 * Write a bundle: temporary name beside `out`, every section streamed in table order (chunks read
 * ahead from the store, written in large pieces), fsync, rename, fsync of the folder. A failure removes
 * the temporary file: nothing partial is ever at `out`. Returns the file's size.
 */
export async function writeBundle(input: WriteBundleInput): Promise<number> {
  const { sections, groups } = layoutSections(input.byteSections, input.chunks, input.chunkSectionMaxBytes ?? WRITER_DEFAULTS.chunkSectionMaxBytes);
  const sectionBytes = sections.reduce((n, s) => n + s.length, 0);
  const signed: BundleSigned = { ...input.head, sectionBytes, sections };
  if (input.seal) {
    signed.formatVersion = BUNDLE_FORMAT_VERSION_SEALED;
    signed.encryption = input.seal.encryption;
  }
  const header = encodeHeader(signed, input.signers);
  const blockBytes = input.seal?.encryption.blockBytes;
  const storedBytes = blockBytes ? sections.reduce((n, s) => n + sealedLength(s.length, blockBytes), 0) : sectionBytes;
  const total = 16 + header.length + storedBytes;
  // Sealed: every section's plaintext goes through the sealer, bound to this header (its SHA-256 is the AAD).
  const sealer = input.seal ? new SectionSealer(input.seal.key, headerAad(header), input.seal.encryption.blockBytes) : undefined;
  const tmp = join(dirname(input.out), `.${basename(input.out)}.${randomBytes(6).toString('hex')}.partial`);
  let fh;
  try {
    fh = await open(tmp, 'wx', 0o644);
  } catch (e) {
    throw fromSystemError(e, `bundle ${input.out}`);
  }
  let done = 0;
  try {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (!pendingBytes) return;
      const bufs = pending;
      const n = pendingBytes;
      pending = [];
      pendingBytes = 0;
      // writev: no copy into one large buffer (fresh memory costs a page fault per 4 KiB).
      let written = 0;
      while (written < n) {
        const r = await fh!.writev(written === 0 ? bufs : sliceFrom(bufs, written));
        written += r.bytesWritten;
      }
      done += n;
      input.onProgress?.(done, total);
    };
    const put = async (b: Uint8Array) => {
      pending.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      pendingBytes += b.length;
      if (pendingBytes >= WRITER_DEFAULTS.writeBufferBytes || pending.length >= 512) await flush();
    };
    const sealed: Buffer[] = [];
    const putPlain = async (b: Uint8Array) => {
      if (!sealer) return put(b);
      sealer.update(b, sealed);
      for (const c of sealed) await put(c);
      sealed.length = 0;
    };
    let section = 0;
    const begin = () => sealer?.begin(section, sections[section]!.length);
    const end = () => {
      sealer?.end();
      section++;
    };
    await put(encodePreamble(header.length, signed.formatVersion));
    await put(header);
    for (const s of input.byteSections) {
      begin();
      await putPlain(s.bytes);
      end();
    }
    const all = groups.flat();
    if (all.length && !input.readChunk) throw new DepotsyncError('internal', 'bundle writer: chunks planned but no chunk reader');
    const reads: Array<Promise<Buffer>> = [];
    let next = 0;
    const ahead = () => {
      while (next < all.length && reads.length < WRITER_DEFAULTS.readAhead) {
        const p = input.readChunk!(all[next++]!.id);
        p.catch(() => undefined); // awaited in order below; avoid an unhandled rejection meanwhile
        reads.push(p);
      }
    };
    for (const group of groups) {
      begin();
      for (const c of group) {
        ahead();
        const data = await reads.shift()!;
        if (data.length !== c.length) {
          throw new DepotsyncError('corrupt', `chunk ${c.id}: the store holds ${data.length} bytes, the manifest says ${c.length}`, { hint: 'run a scrub of the master store' });
        }
        await putPlain(encodeChunkRecordHeader(c.id, c.length));
        await putPlain(data);
      }
      end();
    }
    await flush();
    if (done !== total) throw new DepotsyncError('internal', `bundle writer: wrote ${done} bytes, planned ${total}`);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, input.out);
    await fsyncDir(dirname(input.out));
    return total;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e instanceof DepotsyncError ? e : fromSystemError(e, `write bundle ${input.out}`);
  }
}
